package applier

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/store"
)

// combineWait is the longest an event waits for the other handlers of its batch before its
// transaction starts without them: they may be busy with something other than an event to
// commit (a rejection, a machine file read from S3, an event applied alone).
const combineWait = 2 * time.Millisecond

// combiner commits the events the handlers of one batch (queue.Cohort) apply at the same time in
// one transaction (store.ApplyMany), one wave at a time, and publishes their outbox rows together
// (one send per destination, one delete). A wave starts as soon as every handler still working
// through the batch waits for it, or combineWait after the first began waiting; it holds at most
// one event per stack (a stack's events are decided one after another) and at most
// store.MaxApplyMany. Each handler gets its own event's outcome, so everything after the commit
// (the event's result, its logs, a rejection, a retry) is decided per event as before.
type combiner struct {
	a      *Applier
	cohort *queue.Cohort

	mu      sync.Mutex
	waiting []*request
	running bool // a wave is being applied
	timer   *time.Timer
	gen     int  // the current timer's generation: a timer that fired late finds it changed
	expired bool // combineWait passed since the first waiting request
}

// request is one event waiting in a combiner, and what became of it.
type request struct {
	ctx  context.Context
	p    store.Pending
	done chan struct{}

	applied  store.Applied
	flushed  bool  // its outbox rows were published with the wave's
	flushErr error // the wave's publishing error, for an event that had rows to publish
}

type combinerKey struct{ a *Applier }

// combinerFor returns the combiner of the batch ctx belongs to, or nil outside a batch.
func (a *Applier) combinerFor(ctx context.Context) *combiner {
	cohort := queue.CohortOf(ctx)
	if cohort == nil {
		return nil
	}
	return cohort.Shared(combinerKey{a}, func() any {
		c := &combiner{a: a, cohort: cohort}
		cohort.OnChange(c.poke)
		return c
	}).(*combiner)
}

// apply waits for the wave that applies p and returns its outcome.
func (c *combiner) apply(ctx context.Context, p store.Pending) *request {
	r := &request{ctx: ctx, p: p, done: make(chan struct{})}
	c.mu.Lock()
	c.waiting = append(c.waiting, r)
	wave := c.next()
	c.mu.Unlock()
	if wave != nil {
		// The last to arrive runs the wave itself: with one stack in a batch, its event is
		// applied in its own goroutine, with no handoff.
		c.run(wave)
	}
	<-r.done // every request taken into a wave is answered, whatever ctx says
	return r
}

// poke looks again whether a wave can start (a handler left the batch).
func (c *combiner) poke() {
	c.mu.Lock()
	wave := c.next()
	c.mu.Unlock()
	if wave != nil {
		go c.run(wave)
	}
}

// next takes the next wave when none is running and every handler of the batch waits, or
// combineWait passed; otherwise it makes sure a timer will look again. The caller runs the wave
// it returns. Called with mu held.
func (c *combiner) next() []*request {
	if c.running || len(c.waiting) == 0 {
		return nil
	}
	if len(c.waiting) < c.cohort.Running() && !c.expired {
		if c.timer == nil {
			c.gen++
			gen := c.gen
			wait := combineWait
			if c.a.combineWait > 0 {
				wait = c.a.combineWait
			}
			c.timer = time.AfterFunc(wait, func() {
				c.mu.Lock()
				var wave []*request
				if gen == c.gen {
					c.timer, c.expired = nil, true
					wave = c.next()
				}
				c.mu.Unlock()
				if wave != nil {
					c.run(wave)
				}
			})
		}
		return nil
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.gen++
	c.expired = false
	var wave, rest []*request
	stacks := map[string]bool{}
	for _, r := range c.waiting {
		if len(wave) < store.MaxApplyMany && !stacks[r.p.In.StackID] {
			stacks[r.p.In.StackID] = true
			wave = append(wave, r)
		} else {
			rest = append(rest, r)
		}
	}
	c.waiting = rest
	c.running = true
	return wave
}

// run applies one wave, publishes its outbox rows, answers its requests and starts the next.
func (c *combiner) run(wave []*request) {
	defer func() {
		c.mu.Lock()
		c.running = false
		next := c.next()
		c.mu.Unlock()
		if next != nil {
			go c.run(next) // its own waiters are woken by it; this goroutine has its own event to finish
		}
	}()
	answered := 0
	defer func() {
		// A panic here (an outlet's) costs the events of the wave what it would have cost each
		// alone: their handlers panic with it.
		if r := recover(); r != nil {
			p := &store.DecidePanic{Value: r, Stack: debug.Stack()}
			for _, req := range wave[answered:] {
				req.applied = store.Applied{Err: p}
				close(req.done)
			}
		}
	}()
	ctx := wave[0].ctx
	pending := make([]store.Pending, len(wave))
	for i, r := range wave {
		pending[i] = r.p
	}
	outs := c.a.Store.ApplyMany(ctx, pending)
	var rows []store.OutboxMessage
	for _, o := range outs {
		if o.Err == nil && !o.Busy {
			faults.AfterCommit(len(o.Decision.Dispatch)) // a crash before publishing, in fault-injection tests
			rows = append(rows, o.Outbox...)
		}
	}
	done, flushErr := c.a.publish(ctx, rows)
	for i, r := range wave {
		r.applied = outs[i]
		r.flushed = outs[i].Err == nil && !outs[i].Busy
		for _, row := range outs[i].Outbox {
			if !done[row.ID] {
				r.flushErr = flushErr // its rows wait in the outbox; another stack's failure is not its own
				break
			}
		}
		answered++
		close(r.done)
	}
}

// rethrow re-panics, in the handler's own goroutine, a panic its event's decision raised in the
// wave's: the handler's recovery then treats it as it treats any panic of the handler.
func rethrow(p *store.DecidePanic) {
	panic(fmt.Sprintf("%v\n\nraised while deciding in a shared transaction:\n%s", p.Value, p.Stack))
}
