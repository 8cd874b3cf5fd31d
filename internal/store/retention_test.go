package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
)

func TestPruneProcessedEventsAndRejectionsInBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "k1", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	b.apply(t, "k2", message.Event{StackID: "s1", Event: "DESTROY"}) // rejected: in history and rejections
	for _, r := range []Rejection{
		{Key: "m1", MessageID: "m1", Reason: "malformed JSON", Body: `{`},
		{Key: "m2", MessageID: "m2", StackID: "s1", Reason: "metadata.x is an object", Body: `{"stackId":"s1"}`},
	} {
		require.NoError(t, b.store.RecordRejection(b.ctx, r))
	}
	// Age everything but k1 and one rejection by 40 days; their keys and rows are what prunes.
	old := time.Now().Add(-40 * 24 * time.Hour)
	_, err := b.store.Pool().Exec(b.ctx, "UPDATE processed_events SET processed_at = $1 WHERE key <> 'k1'", old)
	require.NoError(t, err)
	_, err = b.store.Pool().Exec(b.ctx, "UPDATE rejections SET at = $1 WHERE message_id <> 'm2'", old)
	require.NoError(t, err)
	require.Equal(t, 4, b.count(t, "SELECT count(*) FROM processed_events"))
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM rejections"))
	historyBefore := b.count(t, "SELECT count(*) FROM history")

	cutoff := time.Now().Add(-30 * 24 * time.Hour)
	n, err := b.store.PruneProcessedEvents(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n, "a batch is bounded by its limit")
	n, err = b.store.PruneProcessedEvents(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = b.store.PruneProcessedEvents(b.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Zero(t, n, "nothing old is left")
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM processed_events WHERE key = 'k1'"), "a recent key stays")

	n, err = b.store.PruneRejections(b.ctx, cutoff, 1)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = b.store.PruneRejections(b.ctx, cutoff, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM rejections WHERE message_id = 'm2'"), "a recent rejection stays")
	require.Equal(t, historyBefore, b.count(t, "SELECT count(*) FROM history"), "history is kept")
	require.Equal(t, 2, b.count(t, "SELECT count(*) FROM history WHERE kind = 'rejected'"))

	// What pruning must never break: a key within its retention still marks a redelivery.
	res := b.apply(t, "k1", message.Event{StackID: "s1", Event: "TOUCH"})
	require.True(t, res.Duplicate, "a key within its retention still marks a duplicate")
}
