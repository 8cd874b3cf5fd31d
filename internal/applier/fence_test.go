package applier

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/store"
)

// TestFencesGoFirstAndHoldBackTheirTasks: a decision that dispatches writes its fence (the runs
// now current) before its task messages; while the fence cannot be written, the stack's task
// messages stay in the outbox, so no task message is ever received before its fence.
func TestFencesGoFirstAndHoldBackTheirTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fences := &outlet{}
	down := errors.New("s3 down")
	fences.fail = func([]store.OutboxMessage) error { return down }
	b.app.Outlets[store.DestinationFence] = fences.send

	err := b.handle(t, "s1", `{"stackId":"s1","event":"LAUNCH","machine":"pair"}`, nil)
	require.NoError(t, err, "the event is applied; what it sends waits in the outbox")
	require.Empty(t, b.tasks.sent, "no task message without its fence")
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM outbox"), "the fence and both task messages wait")

	fences.fail = nil
	require.NoError(t, b.app.flush(t.Context(), b.outbox(t)))
	require.Len(t, fences.sent, 1)
	require.Len(t, b.tasks.sent, 2)
	require.Less(t, fences.sent[0].ID, b.tasks.sent[0].ID, "the fence was written by the same decision, first")
	var f struct{ Runs []string }
	require.NoError(t, json.Unmarshal([]byte(fences.sent[0].Body), &f))
	st, err := b.store.GetStack(t.Context(), "s1")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{st.Tasks[0].RunID, st.Tasks[1].RunID}, f.Runs)

	// Settling a task takes its run out of the fence (a redriven message of a settled run never
	// starts again); an event that changes no pending run writes none; DESTROY out of RUN leaves
	// an empty one (removed).
	require.NoError(t, b.handle(t, "s1", `{"stackId":"s1","event":"TASK_COMPLETED","taskRunId":"`+st.Tasks[0].RunID+`"}`, nil))
	require.Len(t, fences.sent, 2)
	require.JSONEq(t, `{"runs":["`+st.Tasks[1].RunID+`"]}`, fences.sent[1].Body)
	require.NoError(t, b.handle(t, "s1", `{"stackId":"s1","event":"TASK_COMPLETED","taskRunId":"`+st.Tasks[1].RunID+`"}`, nil))
	require.Len(t, fences.sent, 3, "the last run settled, leaving PROVISION for RUN")
	require.JSONEq(t, `{"runs":[]}`, fences.sent[2].Body)
	require.NoError(t, b.handle(t, "s1", `{"stackId":"s1","event":"ACCESS"}`, nil))
	require.Len(t, fences.sent, 3, "no pending run changed")
	require.NoError(t, b.handle(t, "s1", `{"stackId":"s1","event":"DESTROY"}`, nil))
	require.Len(t, fences.sent, 4, "removal")
	require.JSONEq(t, `{"runs":[]}`, fences.sent[3].Body)
}

func (b *bundle) outbox(t *testing.T) []store.OutboxMessage {
	t.Helper()
	rows, err := b.store.StaleOutbox(t.Context(), 0, 100)
	require.NoError(t, err)
	return rows
}
