package queue_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/queue"
)

// waitLimit bounds every wait in these tests; it is far above what any step needs, so only a
// real deadlock reaches it.
const waitLimit = 30 * time.Second

// recorder is a message handler that records what it handled, per group and in order.
type recorder struct {
	mu      sync.Mutex
	handled []string
	byGroup map[string][]string
	fail    map[string]error // message ID → error to return
	panics  map[string]bool  // message ID → panic instead
}

func newRecorder() *recorder {
	return &recorder{byGroup: map[string][]string{}, fail: map[string]error{}, panics: map[string]bool{}}
}

func (r *recorder) handle(_ context.Context, m queue.Message) error {
	r.mu.Lock()
	r.handled = append(r.handled, m.ID)
	r.byGroup[m.GroupID] = append(r.byGroup[m.GroupID], m.ID)
	err, panics := r.fail[m.ID], r.panics[m.ID]
	r.mu.Unlock()
	if panics {
		panic("boom in " + m.ID)
	}
	return err
}

func msg(id, group string) queue.Message {
	return queue.Message{ID: id, Body: "body of " + id, GroupID: group, ReceiveCount: 1}
}

func TestInOrderByGroupKeepsOrderWithinGroup(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	h := queue.InOrderByGroup(r.handle, 4)
	batch := []queue.Message{
		msg("a1", "A"), msg("b1", "B"), msg("a2", "A"), msg("c1", "C"),
		msg("b2", "B"), msg("a3", "A"), msg("b3", "B"), msg("a4", "A"),
	}

	failed := h(context.Background(), batch)

	require.Empty(t, failed)
	require.Len(t, r.handled, len(batch))
	require.Equal(t, []string{"a1", "a2", "a3", "a4"}, r.byGroup["A"])
	require.Equal(t, []string{"b1", "b2", "b3"}, r.byGroup["B"])
	require.Equal(t, []string{"c1"}, r.byGroup["C"])
}

func TestInOrderByGroupFailureCascadesOnlyWithinGroup(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.fail["a2"] = errors.New("database unavailable")
	h := queue.InOrderByGroup(r.handle, 2)
	batch := []queue.Message{
		msg("a1", "A"), msg("b1", "B"), msg("a2", "A"), msg("b2", "B"),
		msg("a3", "A"), msg("b3", "B"), msg("a4", "A"),
	}

	failed := h(context.Background(), batch)

	// Reported in batch order; a3 and a4 are failed without being handled.
	require.Equal(t, []string{"a2", "a3", "a4"}, failed)
	require.Equal(t, []string{"a1", "a2"}, r.byGroup["A"])
	require.Equal(t, []string{"b1", "b2", "b3"}, r.byGroup["B"])
}

func TestInOrderByGroupMessagesWithoutGroupAreIndependent(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.fail["t2"] = errors.New("terraform failed")
	h := queue.InOrderByGroup(r.handle, 1)
	batch := []queue.Message{msg("t1", ""), msg("t2", ""), msg("t3", ""), msg("t4", "")}

	failed := h(context.Background(), batch)

	require.Equal(t, []string{"t2"}, failed)
	require.ElementsMatch(t, []string{"t1", "t2", "t3", "t4"}, r.handled)
}

func TestInOrderByGroupRunsGroupsConcurrently(t *testing.T) {
	t.Parallel()
	// Each group's first message waits until the other group's first message has started: that
	// can only finish if the two run at the same time.
	started := map[string]chan struct{}{"A": make(chan struct{}), "B": make(chan struct{})}
	other := map[string]string{"A": "B", "B": "A"}
	var once sync.Map
	handle := func(ctx context.Context, m queue.Message) error {
		if _, loaded := once.LoadOrStore(m.GroupID, true); loaded {
			return nil
		}
		close(started[m.GroupID])
		select {
		case <-started[other[m.GroupID]]:
			return nil
		case <-time.After(waitLimit):
			return errors.New("the other group never started")
		}
	}
	h := queue.InOrderByGroup(handle, 2)

	failed := h(context.Background(), []queue.Message{msg("a1", "A"), msg("a2", "A"), msg("b1", "B")})

	require.Empty(t, failed)
}

func TestInOrderByGroupLimitsParallelism(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		parallelism, want int
	}{{parallelism: 2, want: 2}, {parallelism: 0, want: 1}, {parallelism: -3, want: 1}} {
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
		h := queue.InOrderByGroup(handle, tc.parallelism)
		var batch []queue.Message
		for _, g := range []string{"A", "B", "C", "D", "E", "F"} {
			batch = append(batch, msg(g+"1", g), msg(g+"2", g))
		}

		require.Empty(t, h(context.Background(), batch))
		require.LessOrEqual(t, int(peak.Load()), tc.want, "parallelism %d", tc.parallelism)
		require.GreaterOrEqual(t, int(peak.Load()), 1)
	}
}

func TestInOrderByGroupRecoversPanic(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.panics["a1"] = true
	h := queue.InOrderByGroup(r.handle, 2)
	batch := []queue.Message{msg("a1", "A"), msg("b1", "B"), msg("a2", "A"), msg("b2", "B")}

	failed := h(context.Background(), batch)

	require.Equal(t, []string{"a1", "a2"}, failed)
	require.Equal(t, []string{"a1"}, r.byGroup["A"])
	require.Equal(t, []string{"b1", "b2"}, r.byGroup["B"])
}

func TestInOrderByGroupDoesNotStartAfterContextDone(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	h := queue.InOrderByGroup(r.handle, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	failed := h(ctx, []queue.Message{msg("a1", "A"), msg("a2", "A"), msg("t1", "")})

	require.Equal(t, []string{"a1", "a2", "t1"}, failed)
	require.Empty(t, r.handled)
}

func TestInOrderByGroupEmptyBatch(t *testing.T) {
	t.Parallel()
	h := queue.InOrderByGroup(newRecorder().handle, 3)
	require.Empty(t, h(context.Background(), nil))
}

// TestCohortCountsTheWorkersOfABatch: every handler of a batch sees the same cohort, which counts
// the workers still going through the batch and tells its watchers when one leaves; outside a
// batch there is none.
func TestCohortCountsTheWorkersOfABatch(t *testing.T) {
	t.Parallel()
	require.Nil(t, queue.CohortOf(context.Background()))
	var mu sync.Mutex
	cohorts := map[*queue.Cohort]bool{}
	var running []int
	lastOne := -1
	left := make(chan struct{}, 10)
	release := make(chan struct{})
	h := queue.InOrderByGroup(func(ctx context.Context, m queue.Message) error {
		c := queue.CohortOf(ctx)
		c.Shared("watch", func() any {
			c.OnChange(func() { left <- struct{}{} })
			return true
		})
		mu.Lock()
		cohorts[c] = true
		running = append(running, c.Running())
		mu.Unlock()
		if m.GroupID == "slow" {
			<-release
			mu.Lock()
			lastOne = c.Running()
			mu.Unlock()
		}
		return nil
	}, 3)
	done := make(chan []string, 1)
	go func() {
		done <- h(context.Background(), []queue.Message{{ID: "1", GroupID: "a"}, {ID: "2", GroupID: "slow"},
			{ID: "3", GroupID: "b"}, {ID: "4", GroupID: "c"}, {ID: "5", GroupID: "a"}})
	}()
	// Four stacks on three workers: a worker that finishes a stack takes the next; once the stacks
	// run out, the two not holding "slow" leave.
	for range 2 {
		select {
		case <-left:
		case <-time.After(waitLimit):
			t.Fatal("no worker left")
		}
	}
	close(release)
	select {
	case failed := <-done:
		require.Empty(t, failed)
	case <-time.After(waitLimit):
		t.Fatal("the batch did not end")
	}
	require.Len(t, cohorts, 1, "one cohort per batch")
	for c := range cohorts {
		require.Zero(t, c.Running(), "every worker left")
	}
	require.Len(t, running, 5)
	for _, n := range running {
		require.True(t, n >= 1 && n <= 3, "at most three workers, and this one: %d", n)
	}
	require.Equal(t, 1, lastOne, "once the others left, only the worker holding \"slow\" runs")
}
