package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrPaused is wrapped by the error of a message that failed because the dependency the gate
// probes is unavailable: one not handled because consumption is paused, or one whose failure the
// probe confirmed as the outage. The message is delivered again once the dependency is back; it
// is never the message's own fault.
var ErrPaused = errors.New("consumption is paused while a dependency is unavailable")

// Gate pauses a consumer while something every message needs (the database) is unavailable, so
// that an outage of any length never uses up the messages' receive counts and moves them to the
// dead-letter queue. SQS counts receives, not failures: the only way not to spend a message's
// maxReceiveCount is not to receive it. So when a handler fails and the probe confirms the
// dependency is down, the gate closes:
//
//   - in local mode the Poller stops receiving and probes every ProbeEvery until it succeeds;
//   - in Lambda, Pauser disables the function's own event-source mapping, and the scheduled tick
//     (Check) probes and enables it again once the probe succeeds.
//
// While closed, messages already received fail at once with ErrPaused. Each outage costs a message
// at most the receives that were in flight when it began, however long it lasts (docs/design.md
// §"Guarantees"). A failure the probe does not confirm (a poison message) leaves the gate open, so
// such a message still reaches the dead-letter queue after maxReceiveCount receives.
//
// The zero Gate is not usable; Probe is required. It is safe for concurrent use.
type Gate struct {
	// Probe reports whether the dependency is available (nil error). Required. It is called with
	// a context bounded by ProbeTimeout.
	Probe func(ctx context.Context) error
	// Transient, when set, says which handler errors are the dependency's rather than the
	// message's (a connection lost, a server shutting down, a read-only database): such a
	// failure is marked ErrPaused even when the probe passes, so it is never dead-lettered as if
	// the message were poison. Defaults to nil: only the probe decides.
	Transient func(error) bool
	// ProbeEvery is the wait between probes while the gate is closed, and between attempts to
	// pause delivery that failed. Defaults to 5s.
	ProbeEvery time.Duration
	// ProbeTimeout bounds one probe. Defaults to 5s.
	ProbeTimeout time.Duration
	// Pauser stops and restarts delivery where the platform delivers (Lambda's event-source
	// mapping). Nil in local mode, where the Poller itself stops receiving.
	Pauser Pauser
	// OnUnavailable is called after every probe that failed (to record a metric an alarm watches).
	OnUnavailable func(ctx context.Context, err error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	mu         sync.Mutex
	closed     bool
	paused     bool // Pauser.Pause succeeded for this outage
	lastPause  time.Time
	since      time.Time
	probeStart time.Time // when the last finished probe began
	lastErr    error
	reopened   chan struct{} // closed and replaced when the gate opens
	inflight   *probeCall
}

// Pauser stops and resumes a platform's delivery of messages to this function. Both must be
// idempotent: several containers may pause at once.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Pausers pauses and resumes several deliveries together (the event queue's and the approvals
// queue's event-source mappings): each is tried, and the errors are joined.
type Pausers []Pauser

// Pause pauses every delivery.
func (ps Pausers) Pause(ctx context.Context) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Pause(ctx))
	}
	return errors.Join(errs...)
}

// Resume resumes every delivery.
func (ps Pausers) Resume(ctx context.Context) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Resume(ctx))
	}
	return errors.Join(errs...)
}

// pauserTimeout bounds one Pause or Resume call, made with a context of its own: the message's
// may be at its deadline.
const pauserTimeout = 10 * time.Second

func (g *Gate) logger() *slog.Logger {
	return cmp.Or(g.Logger, slog.Default())
}

func (g *Gate) probeEvery() time.Duration {
	if g.ProbeEvery > 0 {
		return g.ProbeEvery
	}
	return 5 * time.Second
}

// Closed reports whether consumption is paused.
func (g *Gate) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// probe runs Probe with its timeout and reports a failure to OnUnavailable.
func (g *Gate) probe(ctx context.Context) error {
	timeout := g.ProbeTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	began := time.Now()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := g.Probe(pctx)
	g.mu.Lock()
	if began.After(g.probeStart) {
		g.probeStart, g.lastErr = began, err
	}
	g.mu.Unlock()
	if err != nil && g.OnUnavailable != nil {
		g.OnUnavailable(ctx, err)
	}
	return err
}

// probeAfter returns the result of a probe that began after t: a finished one, one in flight, or
// a new one. Ten messages of one batch failing together so cost one or two probes, not ten, and
// a failure is never judged by a probe that began before it.
func (g *Gate) probeAfter(ctx context.Context, t time.Time) error {
	for {
		g.mu.Lock()
		if g.probeStart.After(t) {
			err := g.lastErr
			g.mu.Unlock()
			return err
		}
		if c := g.inflight; c != nil {
			g.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if c.began.After(t) {
				return c.err
			}
			continue
		}
		c := &probeCall{began: time.Now(), done: make(chan struct{})}
		g.inflight = c
		g.mu.Unlock()
		c.err = g.probe(ctx)
		g.mu.Lock()
		g.inflight = nil
		g.mu.Unlock()
		close(c.done)
		return c.err
	}
}

// probeCall is a probe in flight that others may wait for.
type probeCall struct {
	began time.Time
	done  chan struct{}
	err   error
}

// close closes the gate and pauses delivery. A pause that failed (Lambda API throttled, a
// mapping update in progress) is tried again by later calls, at most once per ProbeEvery.
func (g *Gate) close(ctx context.Context, cause error) {
	g.mu.Lock()
	first := !g.closed
	if first {
		g.closed = true
		g.since = time.Now()
	}
	tryPause := g.Pauser != nil && !g.paused && (first || time.Since(g.lastPause) >= g.probeEvery())
	if tryPause {
		g.lastPause = time.Now()
	}
	g.mu.Unlock()
	if first {
		g.logger().ErrorContext(ctx, "dependency unavailable: pausing consumption until it is back",
			"error", cause.Error(), "outcome", "paused")
	}
	if !tryPause {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pauserTimeout)
	defer cancel()
	if err := g.Pauser.Pause(pctx); err != nil {
		g.logger().ErrorContext(ctx, "could not pause the event source yet; will try again", "error", err.Error())
		return
	}
	g.mu.Lock()
	g.paused = g.closed
	g.mu.Unlock()
}

// open opens the gate and resumes delivery. The gate opens here whatever Resume says, so a
// container is never stuck closed by the Lambda API; a failed Resume is logged and the next
// Check tries it again.
func (g *Gate) open(ctx context.Context) {
	g.mu.Lock()
	was, since := g.closed, g.since
	g.closed, g.paused = false, false
	if g.reopened != nil {
		close(g.reopened)
		g.reopened = nil
	}
	g.mu.Unlock()
	if g.Pauser != nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pauserTimeout)
		defer cancel()
		if err := g.Pauser.Resume(pctx); err != nil {
			g.logger().ErrorContext(ctx, "could not resume the event source; the next scheduled check tries again", "error", err.Error())
		}
	}
	if was {
		g.logger().InfoContext(ctx, "dependency available again: consumption resumed",
			"outcome", "resumed", "pausedMs", time.Since(since).Milliseconds())
	}
}

// Guard wraps a message handler: while the gate is closed a message fails with ErrPaused unless
// a probe (at most one per ProbeEvery) finds the dependency back; when handle fails and a probe
// that began after the failure confirms the dependency is down, the gate closes. A failure the
// probe confirms, or that Transient recognises, is marked ErrPaused. A failure after ctx ended
// (shutdown, the invocation's deadline) is returned as it is: it says nothing about the
// dependency.
func (g *Gate) Guard(handle func(ctx context.Context, m Message) error) func(ctx context.Context, m Message) error {
	return func(ctx context.Context, m Message) error {
		if g.Closed() {
			if err := g.probeAfter(ctx, time.Now().Add(-g.probeEvery())); err != nil {
				g.close(ctx, err) // retries a pause that failed
				return fmt.Errorf("not handled: %w", ErrPaused)
			}
			g.open(ctx)
		}
		err := handle(ctx, m)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if perr := g.probeAfter(ctx, time.Now()); perr != nil {
			g.close(ctx, perr)
			// Marked as the outage it is, so that nothing treats it as the message's own failure
			// (DeadLetter does not move it on a last receive).
			return fmt.Errorf("%w: %w", ErrPaused, err)
		}
		if g.Transient != nil && g.Transient(err) {
			return fmt.Errorf("%w: %w", ErrPaused, err)
		}
		return err
	}
}

// Check probes the dependency: when it is down the gate closes (and delivery is paused, or the
// pause tried again); when it is up the gate opens (and delivery resumes, if it was paused). It
// returns the probe's error only. Lambda's scheduled tick calls it, because a paused
// event-source mapping delivers nothing that could reopen the gate.
func (g *Gate) Check(ctx context.Context) error {
	if err := g.probe(ctx); err != nil {
		g.close(ctx, err)
		return err
	}
	g.open(ctx)
	return nil
}

// Start probes once as the consumer starts: when the dependency is down the gate starts closed
// (and delivery is paused); when it is up nothing else happens, so a cold start makes no call to
// the Pauser.
func (g *Gate) Start(ctx context.Context) error {
	if err := g.probe(ctx); err != nil {
		g.close(ctx, err)
		return err
	}
	return nil
}

// wait blocks while the gate is closed, probing every ProbeEvery, until the probe succeeds or ctx
// is done. It reports whether the gate is open.
func (g *Gate) wait(ctx context.Context) bool {
	for {
		g.mu.Lock()
		if !g.closed {
			g.mu.Unlock()
			return true
		}
		if g.reopened == nil {
			g.reopened = make(chan struct{})
		}
		reopened := g.reopened
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-reopened: // another receive loop's probe succeeded
		case <-time.After(g.probeEvery()):
			if g.probe(ctx) == nil {
				g.open(ctx)
			}
		}
	}
}
