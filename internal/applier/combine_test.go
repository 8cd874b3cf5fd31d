package applier

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/queue"
)

// TestBatchCommitsItsStacksTogether hands a batch of six stacks' events to the batch handler the
// state manager runs: the events of different stacks are committed in one transaction, a stack
// whose lock another transaction holds waits alone without holding up the others, a stack's
// second event is applied after its first, and a malformed message is rejected as before.
func TestBatchCommitsItsStacksTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Waves start only when every handler of the batch waits, so which events share one does not
	// depend on how fast each handler is.
	b.app.combineWait = time.Hour
	ctx := t.Context()
	// Another transaction holds s5 until the other stacks are done.
	holder, err := b.store.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(context.Background()) }()
	_, err = holder.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('s5', 0))")
	require.NoError(t, err)

	var batch []queue.Message
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("s%d", i)
		batch = append(batch, queue.Message{ID: "launch-" + id, GroupID: id,
			Body: fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"pair"}`, id)})
	}
	batch = append(batch,
		queue.Message{ID: "garbage", GroupID: "s6", Body: `{"stackId":"s6",`},
		// s1's second event: not handled in PROVISION, so rejected by the engine — after its LAUNCH.
		queue.Message{ID: "again-s1", GroupID: "s1", Body: `{"stackId":"s1","event":"LAUNCH","machine":"pair"}`})

	handler := queue.InOrderByGroup(b.app.Handle, 10)
	done := make(chan []string, 1)
	go func() { done <- handler(ctx, batch) }()
	// The other stacks go through while s5 waits for its lock.
	for b.count(t, "SELECT count(*) FROM stacks WHERE id IN ('s1', 's2', 's3', 's4')") < 4 {
		select {
		case failed := <-done:
			t.Fatalf("the batch ended before s5's lock was free: failed %v", failed)
		case <-time.After(20 * time.Millisecond):
		}
	}
	require.Zero(t, b.count(t, "SELECT count(*) FROM stacks WHERE id = 's5'"))
	require.NoError(t, holder.Rollback(ctx))
	require.Empty(t, <-done, "no message failed")

	for i := 1; i <= 5; i++ {
		st, err := b.store.GetStack(ctx, fmt.Sprintf("s%d", i))
		require.NoError(t, err)
		require.Equal(t, "PROVISION", st.State)
	}
	// s1 to s4 were decided in one wave (one transaction: one processed_at); s5 alone after.
	require.Equal(t, 1, b.count(t, `SELECT count(DISTINCT processed_at) FROM processed_events
		WHERE key IN ('sqs:launch-s1', 'sqs:launch-s2', 'sqs:launch-s3', 'sqs:launch-s4')`))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM processed_events WHERE key = 'sqs:launch-s5'`))
	require.Equal(t, 10, len(b.tasks.sent), "two task messages for each stack")
	require.Zero(t, b.count(t, "SELECT count(*) FROM outbox"), "all of them deleted once sent")
	require.Equal(t, 2, b.count(t, "SELECT count(*) FROM rejections WHERE message_id IN ('garbage', 'again-s1')"))
	rows, _ := b.store.Pool().Query(ctx, "SELECT kind FROM history WHERE stack_id = 's1' ORDER BY id")
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, kinds, "transition")
	require.Equal(t, "rejected", kinds[len(kinds)-1], "s1's second event was decided after its LAUNCH: %v", kinds)
}
