package queue

import (
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
	// ProbeEvery is the wait between probes while the gate is closed. Defaults to 5s.
	ProbeEvery time.Duration
	// ProbeTimeout bounds one probe. Defaults to 10s.
	ProbeTimeout time.Duration
	// Pauser stops and restarts delivery where the platform delivers (Lambda's event-source
	// mapping). Nil in local mode, where the Poller itself stops receiving.
	Pauser Pauser
	// OnUnavailable is called after every probe that failed (to record a metric an alarm watches).
	OnUnavailable func(ctx context.Context, err error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	mu        sync.Mutex
	closed    bool
	since     time.Time
	lastProbe time.Time
	lastErr   error
	reopened  chan struct{} // closed and replaced when the gate opens
}

// Pauser stops and resumes a platform's delivery of messages to this function. Both must be
// idempotent: several containers may pause at once.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

func (g *Gate) logger() *slog.Logger {
	if g.Logger != nil {
		return g.Logger
	}
	return slog.Default()
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
		timeout = 10 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := g.Probe(pctx)
	g.mu.Lock()
	g.lastProbe = time.Now()
	g.lastErr = err
	g.mu.Unlock()
	if err != nil && g.OnUnavailable != nil {
		g.OnUnavailable(ctx, err)
	}
	return err
}

// probeSince probes unless a probe finished after since, in which case that probe's result
// stands: ten messages of one batch failing together cost one probe, not ten, and a failure is
// never judged by a probe older than itself.
func (g *Gate) probeSince(ctx context.Context, since time.Time) error {
	g.mu.Lock()
	fresh := g.lastProbe.After(since)
	last := g.lastErr
	g.mu.Unlock()
	if fresh {
		return last
	}
	return g.probe(ctx)
}

// close closes the gate (once per outage) and pauses delivery.
func (g *Gate) close(ctx context.Context, cause error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.since = time.Now()
	g.mu.Unlock()
	g.logger().ErrorContext(ctx, "dependency unavailable: pausing consumption until it is back",
		"error", cause.Error(), "outcome", "paused")
	if g.Pauser != nil {
		if err := g.Pauser.Pause(ctx); err != nil {
			g.logger().ErrorContext(ctx, "could not pause the event source; messages keep being received", "error", err.Error())
		}
	}
}

// open opens the gate and resumes delivery.
func (g *Gate) open(ctx context.Context) error {
	if g.Pauser != nil {
		// Resume first: if it fails the gate stays closed and the next check tries again.
		if err := g.Pauser.Resume(ctx); err != nil {
			return err
		}
	}
	g.mu.Lock()
	was, since := g.closed, g.since
	g.closed = false
	if g.reopened != nil {
		close(g.reopened)
		g.reopened = nil
	}
	g.mu.Unlock()
	if was {
		g.logger().InfoContext(ctx, "dependency available again: consumption resumed",
			"outcome", "resumed", "pausedMs", time.Since(since).Milliseconds())
	}
	return nil
}

// Guard wraps a message handler: while the gate is closed a message fails with ErrPaused unless
// a probe (at most one per ProbeEvery) finds the dependency back; when handle fails and a probe
// made after the failure began confirms the dependency is down, the gate closes.
func (g *Gate) Guard(handle func(ctx context.Context, m Message) error) func(ctx context.Context, m Message) error {
	return func(ctx context.Context, m Message) error {
		if g.Closed() {
			// At most one probe per ProbeEvery while closed.
			if err := g.probeSince(ctx, time.Now().Add(-g.probeEvery())); err != nil {
				return fmt.Errorf("not handled: %w", ErrPaused)
			}
			if err := g.open(ctx); err != nil {
				return fmt.Errorf("not handled: %w", ErrPaused)
			}
		}
		started := time.Now()
		err := handle(ctx, m)
		if err == nil {
			return nil
		}
		if perr := g.probeSince(ctx, started); perr != nil {
			g.close(ctx, perr)
			// Marked as the outage it is, so that nothing treats it as the message's own failure
			// (DeadLetter does not move it on a last receive).
			return fmt.Errorf("%w: %w", ErrPaused, err)
		}
		return err
	}
}

// Check probes the dependency: when it is down the gate closes (and delivery is paused); when it
// is up the gate opens (and delivery resumes, if it was paused). Lambda's scheduled tick calls it,
// because a paused event-source mapping delivers nothing that could reopen the gate.
func (g *Gate) Check(ctx context.Context) error {
	if err := g.probe(ctx); err != nil {
		g.close(ctx, err)
		return err
	}
	return g.open(ctx)
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
				_ = g.open(ctx)
			}
		}
	}
}
