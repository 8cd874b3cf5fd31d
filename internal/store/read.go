package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackseam/stackseam/internal/engine"
)

// The read queries below serve the operator CLI (stacks, show, history).
// They never lock anything: what they return may be a moment old, which is
// what an operator looking at a stack expects.

// ListOptions narrows ListStacks. The zero value lists every stack.
type ListOptions struct {
	// Machine keeps only stacks of this machine. Defaults to every machine.
	Machine string
	// State keeps only stacks in this state. Defaults to every state.
	State string
	// Limit caps the number of stacks returned. Defaults to no limit.
	Limit int
}

// ListStacks returns the live stacks, ordered by id.
func (s *Store) ListStacks(ctx context.Context, opts ListOptions) ([]*engine.Stack, error) {
	var where []string
	var args []any
	if opts.Machine != "" {
		args = append(args, opts.Machine)
		where = append(where, fmt.Sprintf("machine = $%d", len(args)))
	}
	if opts.State != "" {
		args = append(args, opts.State)
		where = append(where, fmt.Sprintf("state = $%d", len(args)))
	}
	q := `SELECT ` + stackColumns + ` FROM stacks`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if opts.Limit > 0 {
		args = append(args, opts.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	rows, _ := s.pool.Query(ctx, q, args...)
	stacks, err := pgx.CollectRows(rows, scanStack)
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error listing stacks: %w", err))
	}
	return stacks, nil
}

// HistoryRecord is one stored history row of a stack: an event applied,
// rejected or ignored, a transition, a task dispatched or settled, the stack
// created or removed (the Kind* constants of package engine).
type HistoryRecord struct {
	// ID orders the rows; a later row has a larger ID.
	ID        int64
	StackID   string
	Machine   string
	At        time.Time
	Kind      string
	Event     string
	FromState string
	ToState   string
	Task      string
	TaskRunID string
	// Duration is the time spent in FromState (transition), the task run's
	// time (task results) or the stack's life (removed); nil when the row
	// kind has none.
	Duration *time.Duration
	Reason   string
	// Detail holds kind-specific extras (event metadata, output names, the
	// attempt of a dispatch, the task log); nil when there are none.
	Detail    map[string]any
	MessageID string
}

// HistoryOptions narrows History. The zero value returns every row.
type HistoryOptions struct {
	// AfterID returns only rows with a larger ID, so a caller following a
	// stack asks for what is new since the last row it saw.
	AfterID int64
	// Limit caps the number of rows returned (the oldest first). Defaults to
	// no limit.
	Limit int
}

// History returns the history rows of a stack, oldest first. A stack that
// never existed has none; a removed stack keeps its rows.
func (s *Store) History(ctx context.Context, stackID string, opts HistoryOptions) ([]HistoryRecord, error) {
	q := `SELECT id, stack_id, machine, at, kind, event, from_state, to_state, task, task_run_id, duration_ms,
		reason, detail, message_id FROM history WHERE stack_id = $1 AND id > $2 ORDER BY id`
	args := []any{stackID, opts.AfterID}
	if opts.Limit > 0 {
		q += " LIMIT $3"
		args = append(args, opts.Limit)
	}
	rows, _ := s.pool.Query(ctx, q, args...)
	records, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryRecord, error) {
		var r HistoryRecord
		var ms *int64
		var detail []byte
		if err := row.Scan(&r.ID, &r.StackID, &r.Machine, &r.At, &r.Kind, &r.Event, &r.FromState, &r.ToState,
			&r.Task, &r.TaskRunID, &ms, &r.Reason, &detail, &r.MessageID); err != nil {
			return r, err
		}
		if ms != nil {
			d := time.Duration(*ms) * time.Millisecond
			r.Duration = &d
		}
		if len(detail) > 0 && string(detail) != "null" {
			if err := json.Unmarshal(detail, &r.Detail); err != nil {
				return r, fmt.Errorf("error decoding detail of history row %d: %w", r.ID, err)
			}
		}
		r.At = r.At.UTC()
		return r, nil
	})
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error reading history of stack %s: %w", stackID, err))
	}
	return records, nil
}

// RejectionRecord is one stored rejected message.
type RejectionRecord struct {
	ID        int64
	At        time.Time
	MessageID string
	StackID   string
	Event     string
	Reason    string
	// Body is the message as received, at most 4 KiB of it.
	Body string
}

// Rejections returns the rejected messages that named a stack, oldest
// first, with IDs above afterID. They include the ones that never reached the
// stack's history because the stack did not exist when they arrived (a first
// event without a machine, an unknown machine…).
func (s *Store) Rejections(ctx context.Context, stackID string, afterID int64) ([]RejectionRecord, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, at, message_id, stack_id, event, reason, body
		FROM rejections WHERE stack_id = $1 AND id > $2 ORDER BY id`, stackID, afterID)
	records, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RejectionRecord, error) {
		var r RejectionRecord
		err := row.Scan(&r.ID, &r.At, &r.MessageID, &r.StackID, &r.Event, &r.Reason, &r.Body)
		r.At = r.At.UTC()
		return r, err
	})
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error reading rejections of stack %s: %w", stackID, err))
	}
	return records, nil
}
