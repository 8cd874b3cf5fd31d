package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
)

func TestListStacksFiltersAndOrders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "k1", message.Event{StackID: "zeta", Event: "LAUNCH", Machine: "env"})
	b.apply(t, "k2", message.Event{StackID: "alpha", Event: "LAUNCH", Machine: "env"})
	// A stack the machine rejects is never created, so it is not listed.
	b.apply(t, "k3", message.Event{StackID: "beta", Event: "DESTROY", Machine: "env"})

	all, err := b.store.ListStacks(b.ctx, ListOptions{})
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, "alpha", all[0].ID)
	require.Equal(t, "zeta", all[1].ID)
	require.Equal(t, "BUILD", all[0].State)
	require.Len(t, all[0].Tasks, 2)

	building, err := b.store.ListStacks(b.ctx, ListOptions{Machine: "env", State: "BUILD", Limit: 1})
	require.NoError(t, err)
	require.Len(t, building, 1)
	require.Equal(t, "alpha", building[0].ID)

	none, err := b.store.ListStacks(b.ctx, ListOptions{State: "RUN"})
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestHistoryAndRejectionsOfAStack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.apply(t, "k1", message.Event{StackID: "s", Event: "LAUNCH", Machine: "env",
		Metadata: message.Metadata{"owner": "alice"}})
	require.Len(t, res.Decision.Stack.Tasks, 2)
	run := res.Decision.Stack.Tasks[0].RunID
	b.apply(t, "k2", message.Event{StackID: "s", Event: message.EventTaskError, TaskRunID: run, Description: "boom"})
	b.apply(t, "k3", message.Event{StackID: "s", Event: "TOUCH"}) // not allowed in BUILD
	require.NoError(t, b.store.RecordRejection(b.ctx, Rejection{Key: "k4", MessageID: "m4", StackID: "s",
		Event: "LAUNCH", Reason: "malformed", Body: "{"}))
	require.NoError(t, b.store.RecordRejection(b.ctx, Rejection{Key: "k5", MessageID: "m5", StackID: "other",
		Event: "LAUNCH", Reason: "no machine"}))

	rows, err := b.store.History(b.ctx, "s", HistoryOptions{})
	require.NoError(t, err)
	var kinds []string
	for _, r := range rows {
		kinds = append(kinds, r.Kind)
		require.Equal(t, "s", r.StackID)
		require.Equal(t, "env", r.Machine)
	}
	require.Equal(t, []string{engine.KindCreated, engine.KindEvent, engine.KindTransition, engine.KindDispatched,
		engine.KindDispatched, engine.KindTaskFailed, engine.KindRejected, engine.KindRejected}, kinds)
	require.Equal(t, map[string]any{"metadata": map[string]any{"owner": "alice"}}, rows[1].Detail)
	require.Equal(t, "INIT", rows[2].FromState)
	require.Equal(t, "BUILD", rows[2].ToState)
	require.NotNil(t, rows[2].Duration, "a transition says how long the stack was in its old state")
	require.Nil(t, rows[3].Duration)
	require.Equal(t, float64(1), rows[3].Detail["attempt"])
	require.Equal(t, "boom", rows[5].Reason)
	require.Equal(t, run, rows[5].TaskRunID)
	require.NotNil(t, rows[5].Duration)
	for i := 1; i < len(rows); i++ {
		require.Greater(t, rows[i].ID, rows[i-1].ID)
	}

	newer, err := b.store.History(b.ctx, "s", HistoryOptions{AfterID: rows[5].ID})
	require.NoError(t, err)
	require.Len(t, newer, 2)
	limited, err := b.store.History(b.ctx, "s", HistoryOptions{Limit: 3})
	require.NoError(t, err)
	require.Len(t, limited, 3)
	nothing, err := b.store.History(b.ctx, "never", HistoryOptions{})
	require.NoError(t, err)
	require.Empty(t, nothing)

	rejected, err := b.store.Rejections(b.ctx, "s", 0)
	require.NoError(t, err)
	require.Len(t, rejected, 2)
	require.Equal(t, "TOUCH", rejected[0].Event)
	require.Contains(t, rejected[0].Reason, "not allowed in state BUILD")
	require.Equal(t, "m4", rejected[1].MessageID)
	require.Equal(t, "{", rejected[1].Body)
	later, err := b.store.Rejections(b.ctx, "s", rejected[0].ID)
	require.NoError(t, err)
	require.Len(t, later, 1)

	// Both rejections of s are in its history too; only other's, which never existed, is stray.
	stray, err := b.store.StrayRejections(b.ctx, "s", 0, 0)
	require.NoError(t, err)
	require.Empty(t, stray)
	stray, err = b.store.StrayRejections(b.ctx, "other", 0, 10)
	require.NoError(t, err)
	require.Len(t, stray, 1)
	require.Equal(t, "no machine", stray[0].Reason)
	absent, err := b.store.Absent(b.ctx, "other")
	require.NoError(t, err)
	require.Nil(t, absent.RemovedAt)
	require.Equal(t, 1, absent.Rejected)
	require.Equal(t, "no machine", absent.LastReason)
	require.NotNil(t, absent.LastRejectedAt)
}
