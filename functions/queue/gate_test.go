package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakePauser records the pauses and resumes a gate asks for.
type fakePauser struct {
	mu    sync.Mutex
	calls []string
}

func (p *fakePauser) Pause(context.Context) error  { p.record("pause"); return nil }
func (p *fakePauser) Resume(context.Context) error { p.record("resume"); return nil }
func (p *fakePauser) record(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, s)
}

// dependency is a probe whose answer the test switches.
type dependency struct {
	down   atomic.Bool
	probes atomic.Int32
}

func (d *dependency) probe(context.Context) error {
	d.probes.Add(1)
	if d.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func TestGateClosesOnlyWhenTheProbeConfirmsTheOutage(t *testing.T) {
	t.Parallel()
	dep := &dependency{}
	pauser := &fakePauser{}
	var unavailable atomic.Int32
	g := &Gate{Probe: dep.probe, Pauser: pauser, ProbeEvery: time.Hour,
		OnUnavailable: func(context.Context, error) { unavailable.Add(1) }}
	poison := errors.New("poison")
	handled := 0
	guarded := g.Guard(func(context.Context, Message) error { handled++; return poison })

	// A failure the probe does not confirm (a poison message) leaves the gate open, so such a
	// message is received again and reaches the dead-letter queue in the end.
	require.ErrorIs(t, guarded(t.Context(), Message{ID: "p"}), poison)
	require.False(t, g.Closed())
	require.Empty(t, pauser.calls)

	// The same failure while the dependency is down closes the gate and pauses delivery once.
	dep.down.Store(true)
	err := guarded(t.Context(), Message{ID: "a"})
	require.ErrorIs(t, err, poison)
	require.ErrorIs(t, err, ErrPaused, "a failure the probe confirms is marked as the outage")
	require.True(t, g.Closed())
	require.Equal(t, []string{"pause"}, pauser.calls)
	require.EqualValues(t, 1, unavailable.Load())

	// While closed (and within ProbeEvery of the last probe) messages fail at once, unhandled.
	require.ErrorIs(t, guarded(t.Context(), Message{ID: "b"}), ErrPaused)
	require.Equal(t, 2, handled, "a paused message is not handled")

	// The scheduled check finds the dependency back: the gate opens and delivery resumes.
	dep.down.Store(false)
	require.NoError(t, g.Check(t.Context()))
	require.False(t, g.Closed())
	require.Equal(t, []string{"pause", "resume"}, pauser.calls)
}

func TestGateProbesOnceForFailuresThatStartedBeforeIt(t *testing.T) {
	t.Parallel()
	dep := &dependency{}
	dep.down.Store(true)
	g := &Gate{Probe: dep.probe, ProbeEvery: time.Hour}
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(10)
	guarded := g.Guard(func(context.Context, Message) error { started.Done(); <-release; return errors.New("down") })
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { _ = guarded(t.Context(), Message{}) })
	}
	started.Wait() // all ten began before the first probe
	close(release)
	wg.Wait()
	require.True(t, g.Closed())
	require.Less(t, dep.probes.Load(), int32(10), "failures that began before a probe share its answer")
}

func TestGateWaitBlocksUntilTheProbeSucceeds(t *testing.T) {
	t.Parallel()
	dep := &dependency{}
	dep.down.Store(true)
	g := &Gate{Probe: dep.probe, ProbeEvery: 10 * time.Millisecond}
	require.Error(t, g.Start(t.Context()))
	require.True(t, g.Closed(), "a dependency down at start closes the gate")

	opened := make(chan bool, 1)
	go func() { opened <- g.wait(t.Context()) }()
	require.Eventually(t, func() bool { return dep.probes.Load() >= 3 }, 10*time.Second, 5*time.Millisecond,
		"wait keeps probing while the dependency is down")
	select {
	case <-opened:
		t.Fatal("wait returned while the dependency was down")
	default:
	}
	dep.down.Store(false)
	require.True(t, <-opened)
	require.False(t, g.Closed())

	ctx, cancel := context.WithCancel(t.Context())
	dep.down.Store(true)
	require.Error(t, g.Check(ctx))
	cancel()
	require.False(t, g.wait(ctx), "a cancelled wait reports the gate still closed")
}
