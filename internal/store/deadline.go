package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackseam/stackseam/internal/message"
)

// OverdueRun is a pending task run whose deadline has passed (message.StackTask.Deadline).
type OverdueRun struct {
	StackID      string
	Machine      string
	Task         string
	RunID        string
	DispatchedAt time.Time
	Deadline     time.Time
}

// OverdueRuns lists up to limit pending task runs whose deadline is at or before now, the most
// overdue first, leaving out those a settlement by deadline was already applied for (a run that
// stays pending after it, because its stack's machine can no longer be loaded, must not keep the
// runs behind it waiting). It reads every live stack's task list: stacks are few (one per
// environment), and the sweep that calls it runs once a minute.
func (s *Store) OverdueRuns(ctx context.Context, now time.Time, limit int) ([]OverdueRun, error) {
	return queryAll(ctx, s, "reading overdue task runs", scanOverdueRun, `
		SELECT s.id, s.machine, t->>'name', t->>'runId', (t->>'dispatchedAt')::timestamptz, (t->>'deadline')::timestamptz
		FROM stacks s, jsonb_array_elements(s.tasks) AS t
		WHERE t->>'status' = 'pending' AND t ? 'deadline' AND (t->>'deadline')::timestamptz <= $1
		  AND NOT EXISTS (SELECT 1 FROM processed_events
		                  WHERE key = $3 || s.id || ':' || (t->>'runId'))
		ORDER BY 6 LIMIT $2`, now, limit, SettleKeyPrefix(message.SettledByDeadline))
}

func scanOverdueRun(row pgx.CollectableRow) (OverdueRun, error) {
	var r OverdueRun
	err := row.Scan(&r.StackID, &r.Machine, &r.Task, &r.RunID, &r.DispatchedAt, &r.Deadline)
	return r, err
}

// SettleKeyPrefix is the start of the idempotency key of a TASK_ERROR the state manager applies
// itself (how: message.SettledByDeadline or message.SettledByDeadLetter); the stack id, ":" and
// the run id follow.
func SettleKeyPrefix(how string) string { return "settle:" + how + ":" }

// SettledRun is a task run the state manager settled as failed itself (engine history detail
// settledBy), for `stackseam stacks --stuck`.
type SettledRun struct {
	StackID   string
	Task      string
	RunID     string
	At        time.Time
	SettledBy string
	Reason    string
}

// SettledRunsOf lists the runs of the given live stacks the state manager settled itself since
// since, oldest first; an operator read, it is not on any hot path.
func (s *Store) SettledRunsOf(ctx context.Context, stackIDs []string, since time.Time) ([]SettledRun, error) {
	return queryAll(ctx, s, "reading force-settled task runs", scanSettledRun, `
		SELECT h.stack_id, h.task, h.task_run_id, h.at, h.detail->>'settledBy', coalesce(h.reason, '')
		FROM history h JOIN stacks s ON s.id = h.stack_id
		WHERE h.stack_id = ANY($2) AND h.kind = 'task-failed' AND h.detail ? 'settledBy' AND h.at >= $1
		ORDER BY h.at, h.id`, since, stackIDs)
}

func scanSettledRun(row pgx.CollectableRow) (SettledRun, error) {
	var r SettledRun
	err := row.Scan(&r.StackID, &r.Task, &r.RunID, &r.At, &r.SettledBy, &r.Reason)
	r.At = r.At.UTC()
	return r, err
}
