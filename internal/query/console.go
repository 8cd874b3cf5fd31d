package query

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/store"
)

// The questions a live table of stacks asks (the web console): they read the tables with SQL of
// their own, so a page of thousands of stacks decodes no metadata.

// Summaries implements API.
func (r *Reader) Summaries(ctx context.Context, req SummariesRequest) (*SummariesPage, error) {
	limit, c, err := openPage("summaries", req.Paging, DefaultSummaryPageSize, MaxSummaryPageSize,
		append(req.fields(), "idContains", req.IDContains)...)
	if err != nil {
		return nil, err
	}
	now := timeOr(req.Now, r.now())
	// Total counts the whole selection, not what follows the cursor: an uncorrelated subquery,
	// evaluated once.
	rows, _ := r.st.Pool().Query(ctx, `
		SELECT id, machine, state, created_at, state_entered_at, last_activity_at,
			(SELECT count(*)::int FROM jsonb_array_elements(tasks) t WHERE t->>'status' = 'pending'),
			(SELECT count(*)::int FROM jsonb_array_elements(tasks) t WHERE t->>'status' = 'failed'),
			coalesce((SELECT array_agg(t->>'name') FROM jsonb_array_elements(tasks) t
				WHERE t->>'status' = 'pending' AND (t->>'deadline')::timestamptz <= $5), '{}'),
			(SELECT count(*)::int FROM stacks
				WHERE ($1 = '' OR machine = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR strpos(lower(id), lower($3)) > 0))
		FROM stacks
		WHERE ($1 = '' OR machine = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR strpos(lower(id), lower($3)) > 0)
			AND id > $6
		ORDER BY id LIMIT $4`, req.Machine, req.State, req.IDContains, limit+1, now, c.After)
	total := 0
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Summary, error) {
		var s Summary
		err := row.Scan(&s.ID, &s.Machine, &s.State, &s.CreatedAt, &s.StateEnteredAt, &s.LastActivityAt,
			&s.Pending, &s.Failed, &s.Overdue, &total)
		s.CreatedAt, s.StateEnteredAt, s.LastActivityAt = s.CreatedAt.UTC(), s.StateEnteredAt.UTC(), s.LastActivityAt.UTC()
		if len(s.Overdue) == 0 {
			s.Overdue = nil
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("error listing stack summaries: %w", err)
	}
	page := &SummariesPage{Total: total}
	var more bool
	if page.Summaries, more = fit(list, limit); more {
		page.NextCursor = cursor{Kind: "summaries", After: page.Summaries[len(page.Summaries)-1].ID}.encode()
	}
	return page, nil
}

// Troubles implements API. A page is ordered by stack, kind and, for settled runs, history row;
// the cursor is the last of these returned.
func (r *Reader) Troubles(ctx context.Context, req TroublesRequest) (*TroublesPage, error) {
	if req.StackID != "" && !message.ValidStackID(req.StackID) {
		return nil, invalid("stackId: %q is not a valid stack id", cutForMessage(req.StackID))
	}
	limit, c, err := openPage("troubles", req.Paging, DefaultTroublePageSize, MaxTroublePageSize)
	if err != nil {
		return nil, err
	}
	since := timeOr(req.Since, r.now().Add(-defaultSince))
	// Settled runs of live stacks only (a removed stack's runs are its past); rejections that
	// name a stack, whether it exists or not; parked messages until someone deals with them.
	rows, _ := r.st.Pool().Query(ctx, `
		SELECT stack_id, kind, ord, at, task, run_id, settled_by, n, reason FROM (
			SELECT h.stack_id, 'settled' AS kind, h.id AS ord, h.at, h.task, h.task_run_id AS run_id,
				h.detail->>'settledBy' AS settled_by, 0 AS n, left(coalesce(h.reason, ''), $6) AS reason
			FROM history h JOIN stacks s ON s.id = h.stack_id
			WHERE h.kind = 'task-failed' AND h.detail ? 'settledBy' AND h.at >= $1
			UNION ALL
			SELECT stack_id, 'rejected', 0, max(at), '', '', '', count(*)::int, left((array_agg(reason ORDER BY id DESC))[1], $6)
			FROM rejections WHERE at >= $1 AND stack_id <> '' GROUP BY stack_id
			UNION ALL
			SELECT stack_id, 'parked', 0, max(parked_at), '', '', '', count(*)::int, left((array_agg(reason ORDER BY id DESC))[1], $6)
			FROM parked_outbox GROUP BY stack_id
		) t
		WHERE ($2 = '' OR stack_id = $2) AND (stack_id, kind, ord) > ($3, $4, $5)
		ORDER BY stack_id, kind, ord LIMIT $7`, since, req.StackID, c.After, c.Trouble, c.History, maxReasonBytes, limit+1)
	type row struct {
		Trouble
		ord int64
	}
	list, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var t row
		err := cr.Scan(&t.StackID, &t.Kind, &t.ord, &t.At, &t.Task, &t.RunID, &t.SettledBy, &t.Count, &t.Reason)
		t.At = t.At.UTC()
		t.Reason = message.CutUTF8(t.Reason, maxReasonBytes)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("error listing settled runs, rejected and parked messages: %w", err)
	}
	troubles := make([]Trouble, len(list))
	for i, t := range list {
		troubles[i] = t.Trouble
	}
	page := &TroublesPage{}
	var more bool
	if page.Troubles, more = fit(troubles, limit); more {
		last := list[len(page.Troubles)-1]
		page.NextCursor = cursor{Kind: "troubles", After: last.StackID, Trouble: last.Kind, History: last.ord}.encode()
	}
	return page, nil
}

// StateCounts implements API.
func (r *Reader) StateCounts(ctx context.Context, _ StateCountsRequest) (*StateCountsResult, error) {
	rows, _ := r.st.Pool().Query(ctx, `SELECT machine, state, count(*)::int FROM stacks GROUP BY machine, state ORDER BY machine, state`)
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StateCount])
	if err != nil {
		return nil, fmt.Errorf("error counting stacks per state: %w", err)
	}
	out := &StateCountsResult{}
	out.Counts, out.Cut = fit(list, len(list))
	return out, nil
}

// MachineVersion implements API.
func (r *Reader) MachineVersion(ctx context.Context, req MachineVersionRequest) (*MachineVersionResult, error) {
	if req.Hash == "" {
		return nil, invalid("hash: name a machine version")
	}
	if err := checkName("hash", req.Hash); err != nil {
		return nil, err
	}
	name, body, err := r.st.MachineVersion(ctx, req.Hash)
	switch {
	case errors.Is(err, store.ErrNoMachineVersion):
		return &MachineVersionResult{}, nil
	case err != nil:
		return nil, err
	case len(body) > MaxResponseBytes-envelope:
		return nil, fmt.Errorf("machine version %s: its file is %d bytes, more than an answer may hold", req.Hash, len(body))
	}
	return &MachineVersionResult{Name: name, Body: string(body)}, nil
}

// ChangeMark implements API. Every applied, ignored or removed event writes history; a
// rejection of an unknown stack only the rejections table: the two latest ids change with any
// of them.
func (r *Reader) ChangeMark(ctx context.Context, _ ChangeMarkRequest) (*ChangeMarkResult, error) {
	var h, rej int64
	err := r.st.Pool().QueryRow(ctx, `SELECT (SELECT coalesce(max(id), 0) FROM history), (SELECT coalesce(max(id), 0) FROM rejections)`).Scan(&h, &rej)
	if err != nil {
		return nil, fmt.Errorf("error reading the latest history row: %w", err)
	}
	return &ChangeMarkResult{Mark: fmt.Sprintf("%d.%d", h, rej)}, nil
}
