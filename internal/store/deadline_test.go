package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
)

func TestOverdueRunsFindsPendingRunsPastTheirDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	run := 0
	apply := func(ev message.Event) engine.Decision {
		res, err := b.store.Apply(b.ctx, ApplyInput{Key: fmt.Sprintf("deadline-key-%d-%d", now.UnixNano(), next(&run)), StackID: ev.StackID, Event: ev},
			func(cur *engine.Stack) (engine.Decision, error) {
				return engine.Apply(engine.Input{Stack: cur, Machine: b.m, Event: ev, Now: now,
					NewRunID:  func() string { return fmt.Sprintf("deadline-run-%d-%d", now.UnixNano(), next(&run)) },
					Deadlines: engine.Deadlines{DefaultTimeout: time.Second, Visibility: time.Second, Receives: 2}}), nil
			})
		require.NoError(t, err)
		return res.Decision
	}
	d := apply(message.Event{StackID: "overdue-1", Event: "LAUNCH", Machine: "env"})
	require.Len(t, d.Stack.Tasks, 2)

	runs, err := b.store.OverdueRuns(b.ctx, now.Add(3*time.Second), 10)
	require.NoError(t, err)
	require.Empty(t, only(runs, "overdue-1"), "not yet: the deadline is 2 × (1 s + 1 s) after dispatch")

	runs, err = b.store.OverdueRuns(b.ctx, now.Add(4*time.Second+time.Millisecond), 10)
	require.NoError(t, err)
	runs = only(runs, "overdue-1")
	require.Len(t, runs, 2)
	require.Equal(t, "env", runs[0].Machine)
	require.WithinDuration(t, now.Add(4*time.Second), runs[0].Deadline, time.Millisecond)
	require.WithinDuration(t, now, runs[0].DispatchedAt, time.Millisecond)

	// A settlement by deadline that left the run pending (its machine could not be loaded, say)
	// takes the run out of the list, so it cannot hold up the runs behind it.
	_, err = b.store.Pool().Exec(b.ctx, `INSERT INTO processed_events (key, stack_id, processed_at) VALUES ($1, $2, now())`,
		SettleKeyPrefix(message.SettledByDeadline)+"overdue-1:"+d.Stack.Tasks[1].RunID, "overdue-1")
	require.NoError(t, err)
	runs, err = b.store.OverdueRuns(b.ctx, now.Add(time.Hour), 10)
	require.NoError(t, err)
	runs = only(runs, "overdue-1")
	require.Len(t, runs, 1)
	require.Equal(t, d.Stack.Tasks[0].RunID, runs[0].RunID)
	_, err = b.store.Pool().Exec(b.ctx, `DELETE FROM processed_events WHERE key = $1`,
		SettleKeyPrefix(message.SettledByDeadline)+"overdue-1:"+d.Stack.Tasks[1].RunID)
	require.NoError(t, err)

	apply(message.Event{StackID: "overdue-1", Event: message.EventTaskError, TaskRunID: d.Stack.Tasks[0].RunID})
	runs, err = b.store.OverdueRuns(b.ctx, now.Add(time.Hour), 10)
	require.NoError(t, err)
	runs = only(runs, "overdue-1")
	require.Len(t, runs, 1, "a settled run is no longer overdue")
	require.Equal(t, d.Stack.Tasks[1].RunID, runs[0].RunID)
	require.Equal(t, "b", runs[0].Task)
}

func only(runs []OverdueRun, stackID string) []OverdueRun {
	var out []OverdueRun
	for _, r := range runs {
		if r.StackID == stackID {
			out = append(out, r)
		}
	}
	return out
}

func next(n *int) int {
	*n++
	return *n
}
