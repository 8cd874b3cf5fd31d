package applier

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
)

// TestBroadcastReachesEveryStackInTheStatesOnce: a broadcast (a nightly schedule's drift check
// of every running stack) goes to the machine's stacks in the given states only, and a firing
// delivered twice is applied once per stack.
func TestBroadcastReachesEveryStackInTheStatesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"run-a", "run-b", "busy"} {
		require.NoError(t, b.handle(t, id, `{"stackId":"`+id+`","event":"LAUNCH","machine":"pair"}`, nil))
	}
	_, err := b.store.Pool().Exec(t.Context(), `UPDATE stacks SET state = 'RUN', tasks = '[]' WHERE id IN ('run-a', 'run-b')`)
	require.NoError(t, err)

	nightly := message.Broadcast{Stackseam: message.BroadcastKind, Name: "nightly", Machine: "pair", States: []string{"RUN"}, Event: "DESTROY", ID: "firing-1"}
	for range 2 { // EventBridge may deliver one firing twice
		n, err := b.app.Broadcast(t.Context(), nightly)
		require.NoError(t, err)
		require.Equal(t, 2, n, "the two stacks in RUN")
	}
	require.Len(t, b.events.sent, 4)
	for _, row := range b.events.sent {
		var ev message.Event
		require.NoError(t, json.Unmarshal([]byte(row.Body), &ev))
		require.Equal(t, "DESTROY", ev.Event)
		require.True(t, strings.HasPrefix(ev.EventID, "ttl-b-"), "the state manager's own event id: %s", ev.EventID)
		require.NotNil(t, ev.IfVersion)
		require.NoError(t, b.handle(t, row.StackID, row.Body, nil))
	}
	for _, id := range []string{"run-a", "run-b"} {
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'event' AND event = 'DESTROY'`, id),
			"%s got the event once", id)
		st, err := b.store.GetStack(t.Context(), id)
		require.NoError(t, err)
		require.Nil(t, st, "%s reached GONE", id)
	}
	st, err := b.store.GetStack(t.Context(), "busy")
	require.NoError(t, err)
	require.Equal(t, "PROVISION", st.State, "a stack in another state is left alone")

	_, err = message.ParseBroadcast([]byte(`{"stackseam":"broadcast","name":"n","machine":"pair","states":["RUN"],"event":"NEXT","id":"x"}`))
	require.ErrorContains(t, err, "cannot be sent")
}
