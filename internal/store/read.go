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
	// After keeps only stacks whose id sorts after it, so a caller pages
	// through the list by passing the last id it saw. Defaults to the start.
	After string
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
	if opts.After != "" {
		args = append(args, opts.After)
		where = append(where, fmt.Sprintf("id > $%d", len(args)))
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
	return queryAll(ctx, s, "listing stacks", scanStack, q, args...)
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
	return queryAll(ctx, s, fmt.Sprintf("reading history of stack %s", stackID), scanHistoryRecord, q, args...)
}

func scanHistoryRecord(row pgx.CollectableRow) (HistoryRecord, error) {
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
	return queryAll(ctx, s, fmt.Sprintf("reading rejections of stack %s", stackID), scanRejectionRecord,
		`SELECT id, at, message_id, stack_id, event, reason, body
		FROM rejections WHERE stack_id = $1 AND id > $2 ORDER BY id`, stackID, afterID)
}

func scanRejectionRecord(row pgx.CollectableRow) (RejectionRecord, error) {
	var r RejectionRecord
	err := row.Scan(&r.ID, &r.At, &r.MessageID, &r.StackID, &r.Event, &r.Reason, &r.Body)
	r.At = r.At.UTC()
	return r, err
}

// StrayRejections returns, oldest first, up to limit (all when limit ≤ 0) of
// the rejected messages that named a stack and have no row in its history —
// those that arrived when the stack did not exist — with IDs above afterID.
// A rejection of an existing stack is in both tables (same message id); a
// caller reading History and StrayRejections sees each once, however it pages.
func (s *Store) StrayRejections(ctx context.Context, stackID string, afterID int64, limit int) ([]RejectionRecord, error) {
	q := `SELECT r.id, r.at, r.message_id, r.stack_id, r.event, r.reason, r.body
		FROM rejections r WHERE r.stack_id = $1 AND r.id > $2
		AND NOT (r.message_id <> '' AND EXISTS (SELECT 1 FROM history h
			WHERE h.stack_id = r.stack_id AND h.kind = 'rejected' AND h.message_id = r.message_id))
		ORDER BY r.id`
	args := []any{stackID, afterID}
	if limit > 0 {
		q += " LIMIT $3"
		args = append(args, limit)
	}
	return queryAll(ctx, s, fmt.Sprintf("reading rejections of stack %s", stackID), scanRejectionRecord, q, args...)
}

// Absence says what is known about a stack that does not exist.
type Absence struct {
	// RemovedAt is when its latest life ended; nil when it never existed.
	RemovedAt *time.Time
	// Rejected counts the rejected messages that named it.
	Rejected int
	// LastRejectedAt and LastReason describe the latest of them.
	LastRejectedAt *time.Time
	LastReason     string
}

// Absent reads what explains that a stack is not there, in two bounded
// index reads however long its history.
func (s *Store) Absent(ctx context.Context, stackID string) (Absence, error) {
	var a Absence
	err := s.pool.QueryRow(ctx, `SELECT max(at) FROM history WHERE stack_id = $1 AND kind = 'removed'`, stackID).Scan(&a.RemovedAt)
	if err != nil {
		return a, s.noteErr(fmt.Errorf("error reading the removal of stack %s: %w", stackID, err))
	}
	err = s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM rejections WHERE stack_id = $1),
		r.at, coalesce(r.reason, '') FROM (SELECT 1) one
		LEFT JOIN LATERAL (SELECT at, reason FROM rejections WHERE stack_id = $1 ORDER BY id DESC LIMIT 1) r ON true`,
		stackID).Scan(&a.Rejected, &a.LastRejectedAt, &a.LastReason)
	if err != nil {
		return a, s.noteErr(fmt.Errorf("error reading the rejections of stack %s: %w", stackID, err))
	}
	if a.RemovedAt != nil {
		t := a.RemovedAt.UTC()
		a.RemovedAt = &t
	}
	if a.LastRejectedAt != nil {
		t := a.LastRejectedAt.UTC()
		a.LastRejectedAt = &t
	}
	return a, nil
}

// MachineSummary is one machine the database knows: live stacks run on it,
// or a stack once ran on one of its versions.
type MachineSummary struct {
	Name string
	// LiveStacks counts the live stacks on it.
	LiveStacks int
	// LatestVersion is the hash of the version a stack was most recently
	// pinned to first, and LatestStoredAt when; empty and nil when none is
	// stored.
	LatestVersion  string
	LatestStoredAt *time.Time
}

// Machines lists the machines of live stacks and of stored versions, by name.
func (s *Store) Machines(ctx context.Context) ([]MachineSummary, error) {
	return queryAll(ctx, s, "listing machines", scanMachineSummary, `
		SELECT n.name, coalesce(c.live, 0), coalesce(v.hash, ''), v.stored_at
		FROM (SELECT machine AS name FROM stacks UNION SELECT name FROM machine_versions) n
		LEFT JOIN (SELECT machine, count(*) AS live FROM stacks GROUP BY machine) c ON c.machine = n.name
		LEFT JOIN LATERAL (SELECT hash, stored_at FROM machine_versions WHERE name = n.name
			ORDER BY stored_at DESC, hash LIMIT 1) v ON true
		ORDER BY n.name`)
}

func scanMachineSummary(row pgx.CollectableRow) (MachineSummary, error) {
	var m MachineSummary
	err := row.Scan(&m.Name, &m.LiveStacks, &m.LatestVersion, &m.LatestStoredAt)
	if m.LatestStoredAt != nil {
		t := m.LatestStoredAt.UTC()
		m.LatestStoredAt = &t
	}
	return m, err
}
