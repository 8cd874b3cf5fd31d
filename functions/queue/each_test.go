package queue_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/queue"
)

func TestEachFailureStaysWithItsMessage(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.fail["a2"] = errors.New("terraform failed")
	h := queue.Each(r.handle, 2)
	// Same group and no group alike: Each never links messages.
	batch := []queue.Message{msg("a1", "A"), msg("a2", "A"), msg("a3", "A"), msg("t1", ""), msg("t2", "")}

	failed := h(context.Background(), batch)

	require.Equal(t, []string{"a2"}, failed)
	require.ElementsMatch(t, []string{"a1", "a2", "a3", "t1", "t2"}, r.handled)
}

func TestEachRunsSameGroupConcurrently(t *testing.T) {
	t.Parallel()
	// Both messages wait until the other has started: that can only finish if they overlap, which
	// InOrderByGroup would never allow for one group.
	var started atomic.Int32
	both := make(chan struct{})
	handle := func(ctx context.Context, m queue.Message) error {
		if started.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both:
			return nil
		case <-time.After(waitLimit):
			return errors.New("the other message never started")
		}
	}

	failed := queue.Each(handle, 2)(context.Background(), []queue.Message{msg("a1", "A"), msg("a2", "A")})

	require.Empty(t, failed)
}

func TestEachLimitsParallelism(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		parallelism, want int
	}{{parallelism: 3, want: 3}, {parallelism: 0, want: 1}, {parallelism: -1, want: 1}} {
		var running, peak atomic.Int32
		handle := func(ctx context.Context, m queue.Message) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond) // give other workers the chance to overlap
			return nil
		}
		var batch []queue.Message
		for _, id := range []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"} {
			batch = append(batch, msg(id, ""))
		}

		require.Empty(t, queue.Each(handle, tc.parallelism)(context.Background(), batch))
		require.LessOrEqual(t, int(peak.Load()), tc.want, "parallelism %d", tc.parallelism)
		require.GreaterOrEqual(t, int(peak.Load()), 1)
	}
}

func TestEachRecoversPanic(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.panics["m2"] = true
	h := queue.Each(r.handle, 1)

	failed := h(context.Background(), []queue.Message{msg("m1", ""), msg("m2", ""), msg("m3", "")})

	require.Equal(t, []string{"m2"}, failed)
	require.Equal(t, []string{"m1", "m2", "m3"}, r.handled, "one worker handles the batch in order")
}

func TestEachDoesNotStartAfterContextDone(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	failed := queue.Each(r.handle, 2)(ctx, []queue.Message{msg("m1", ""), msg("m2", "G"), msg("m3", "")})

	require.Equal(t, []string{"m1", "m2", "m3"}, failed)
	require.Empty(t, r.handled)
}

func TestEachReportsDuplicateIDOnce(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.fail["m1"] = errors.New("failed")

	failed := queue.Each(r.handle, 2)(context.Background(), []queue.Message{msg("m1", ""), msg("m1", "")})

	require.Equal(t, []string{"m1"}, failed)
}

func TestEachEmptyBatch(t *testing.T) {
	t.Parallel()
	require.Empty(t, queue.Each(newRecorder().handle, 3)(context.Background(), nil))
}
