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
	took   time.Duration // how long a probe takes (a round trip to the database)
}

func (d *dependency) probe(context.Context) error {
	d.probes.Add(1)
	time.Sleep(d.took)
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
	dep := &dependency{took: 50 * time.Millisecond}
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
	require.Less(t, dep.probes.Load(), int32(10), "failures that end while a probe is in flight share the next one")

	// A probe that began before a failure never judges it: a poison message's passing probe
	// does not clear a later "connection refused".
	g2 := &Gate{Probe: dep.probe, ProbeEvery: time.Hour}
	dep.down.Store(false)
	require.NoError(t, g2.probeAfter(t.Context(), time.Now()))
	dep.down.Store(true)
	require.Error(t, g2.probeAfter(t.Context(), time.Now()), "the second failure gets a probe of its own")
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

// flakyPauser fails its first pauses, as a throttled Lambda API does, and may fail resumes.
type flakyPauser struct {
	fakePauser
	failPauses  atomic.Int32
	failResumes atomic.Bool
}

func (p *flakyPauser) Pause(ctx context.Context) error {
	if p.failPauses.Add(-1) >= 0 {
		p.record("pause failed")
		return errors.New("TooManyRequestsException")
	}
	return p.fakePauser.Pause(ctx)
}

func (p *flakyPauser) Resume(ctx context.Context) error {
	if p.failResumes.Load() {
		p.record("resume failed")
		return errors.New("ResourceNotFoundException")
	}
	return p.fakePauser.Resume(ctx)
}

func TestGateRetriesAFailedPauseAndOpensDespiteAFailedResume(t *testing.T) {
	t.Parallel()
	dep := &dependency{}
	dep.down.Store(true)
	pauser := &flakyPauser{}
	pauser.failPauses.Store(1)
	g := &Gate{Probe: dep.probe, Pauser: pauser, ProbeEvery: time.Nanosecond}
	require.Error(t, g.Check(t.Context()))
	require.Error(t, g.Check(t.Context()), "the next check tries the pause again")
	require.Equal(t, []string{"pause failed", "pause"}, pauser.calls)
	require.Error(t, g.Check(t.Context()))
	require.Equal(t, []string{"pause failed", "pause"}, pauser.calls, "once paused, not again")

	dep.down.Store(false)
	pauser.failResumes.Store(true)
	require.NoError(t, g.Check(t.Context()))
	require.False(t, g.Closed(), "a failed resume does not keep this container closed")
	pauser.failResumes.Store(false)
	require.NoError(t, g.Check(t.Context()))
	require.Equal(t, []string{"pause failed", "pause", "resume failed", "resume"}, pauser.calls, "the next check resumes")
}

func TestGateIgnoresFailuresAfterTheContextEnded(t *testing.T) {
	t.Parallel()
	dep := &dependency{}
	var unavailable atomic.Int32
	g := &Gate{Probe: func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return dep.probe(ctx)
	}, OnUnavailable: func(context.Context, error) { unavailable.Add(1) }}
	ctx, cancel := context.WithCancel(t.Context())
	guarded := g.Guard(func(ctx context.Context, _ Message) error { cancel(); return ctx.Err() })
	err := guarded(ctx, Message{})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrPaused, "a shutdown is not an outage")
	require.False(t, g.Closed())
	require.Zero(t, unavailable.Load(), "and writes no DatabaseUnavailable")
}

func TestGateMarksTransientFailuresAsTheDependencys(t *testing.T) {
	t.Parallel()
	readOnly := errors.New("SQLSTATE 25006: cannot execute INSERT in a read-only transaction")
	g := &Gate{Probe: (&dependency{}).probe, Transient: func(err error) bool { return errors.Is(err, readOnly) }}
	err := g.Guard(func(context.Context, Message) error { return readOnly })(t.Context(), Message{})
	require.ErrorIs(t, err, ErrPaused, "never dead-lettered as the message's fault, though the probe passes")
	poison := errors.New("poison")
	require.NotErrorIs(t, g.Guard(func(context.Context, Message) error { return poison })(t.Context(), Message{}), ErrPaused)
}
