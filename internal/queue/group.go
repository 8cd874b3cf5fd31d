package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
)

// InOrderByGroup builds a BatchHandler from a per-message handler. Messages with the same GroupID
// are handled one at a time in batch order; once one fails, the later messages of that group in
// the batch are reported failed without being handled (so per-stack order holds). Different groups
// are handled concurrently, at most parallelism at once (<=0 means 1). A panic in handle is
// recovered and counts as a failure of that message (logged), never crashes the process.
//
// Messages without a GroupID (standard queues) promise no order, so each one is handled on its
// own: a failure never holds back another message. Once ctx is done, messages not yet started are
// reported failed without being handled, because their work could not finish anyway.
func InOrderByGroup(handle func(ctx context.Context, m Message) error, parallelism int) BatchHandler {
	if parallelism <= 0 {
		parallelism = 1
	}
	return func(ctx context.Context, batch []Message) []string {
		units := orderedUnits(batch)
		failed := make([][]string, len(units))
		work := make(chan int)
		var wg sync.WaitGroup
		workers := min(parallelism, len(units))
		cohort := &Cohort{running: workers}
		ctx = context.WithValue(ctx, cohortKey{}, cohort)
		for range workers {
			wg.Go(func() {
				defer cohort.leave()
				for i := range work {
					failed[i] = handleInOrder(ctx, handle, units[i])
				}
			})
		}
		for i := range units {
			work <- i
		}
		close(work)
		wg.Wait()

		// Report in batch order so the result does not depend on scheduling.
		isFailed := make(map[string]bool)
		for _, ids := range failed {
			for _, id := range ids {
				isFailed[id] = true
			}
		}
		var out []string
		for _, m := range batch {
			if isFailed[m.ID] {
				out = append(out, m.ID)
				delete(isFailed, m.ID) // a duplicate ID is reported once
			}
		}
		return out
	}
}

// orderedUnits splits a batch into the runs of messages that must be handled one after another:
// one per GroupID, in order of first appearance, and one per message that has no GroupID.
func orderedUnits(batch []Message) [][]Message {
	var units [][]Message
	index := make(map[string]int)
	for _, m := range batch {
		if m.GroupID == "" {
			units = append(units, []Message{m})
			continue
		}
		i, ok := index[m.GroupID]
		if !ok {
			i = len(units)
			index[m.GroupID] = i
			units = append(units, nil)
		}
		units[i] = append(units[i], m)
	}
	return units
}

// handleInOrder handles msgs one at a time and returns the IDs of the failed message and of every
// message after it, which are not handled.
func handleInOrder(ctx context.Context, handle func(context.Context, Message) error, msgs []Message) []string {
	for i, m := range msgs {
		err := ctx.Err()
		if err == nil {
			err = handleRecovering(ctx, handle, m)
		} else {
			err = fmt.Errorf("not handled: %w", context.Cause(ctx))
		}
		if err == nil {
			continue
		}
		logFailure(ctx, m, err)
		ids := make([]string, 0, len(msgs)-i)
		ids = append(ids, m.ID)
		for _, later := range msgs[i+1:] {
			slog.InfoContext(ctx, "message not handled: an earlier message of its stack failed",
				append(later.logAttrs(), "outcome", "retry", "failedMessageId", m.ID)...)
			ids = append(ids, later.ID)
		}
		return ids
	}
	return nil
}

// panicError is a panic recovered from a message handler.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

func handleRecovering(ctx context.Context, handle func(context.Context, Message) error, m Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return handle(ctx, m)
}

// logFailure logs a failed message. Handlers log their own failures with
// the reason, so only a panic (which the handler could not log) is a warning.
func logFailure(ctx context.Context, m Message, err error) {
	pe, panicked := errors.AsType[*panicError](err)
	if !panicked && !slog.Default().Enabled(ctx, slog.LevelDebug) {
		return // logAttrs decodes the body: only when the line is written
	}
	attrs := append(m.logAttrs(), "outcome", "retry", "receiveCount", m.ReceiveCount, "error", err.Error())
	if panicked {
		slog.ErrorContext(ctx, "message handler panicked", append(attrs, "stack", string(pe.stack))...)
		return
	}
	slog.DebugContext(ctx, "message failed", attrs...)
}

// Cohort is the set of workers InOrderByGroup runs for one batch, each going through the messages
// of one stack (group) at a time. A message handler finds it in its context (CohortOf) and may use
// it to combine the work the handlers of a batch do at the same time: the state manager commits
// the events of different stacks in one transaction. Running says how many workers are still going
// through the batch, so a combiner knows when every one of them waits for it; it must not wait
// for them longer than briefly, since a worker may be busy with something else.
type Cohort struct {
	mu     sync.Mutex
	values map[any]any

	wmu     sync.Mutex
	running int
	watch   []func()
}

type cohortKey struct{}

// CohortOf returns the cohort of the batch a handler runs in, or nil outside InOrderByGroup.
func CohortOf(ctx context.Context) *Cohort {
	c, _ := ctx.Value(cohortKey{}).(*Cohort)
	return c
}

// Running is the number of workers still going through the batch: each holds a stack's messages
// until they are done, then takes the next stack or leaves.
func (c *Cohort) Running() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.running
}

// Shared returns the value kept under key for this batch, made by make the first time it is asked
// for (make may call OnChange).
func (c *Cohort) Shared(key any, make func() any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.values[key]
	if !ok {
		if c.values == nil {
			c.values = map[any]any{}
		}
		v = make()
		c.values[key] = v
	}
	return v
}

// OnChange registers f to be called, with no lock of the cohort held, whenever a worker leaves.
func (c *Cohort) OnChange(f func()) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.watch = append(c.watch, f)
}

func (c *Cohort) leave() {
	c.wmu.Lock()
	c.running--
	watch := c.watch
	c.wmu.Unlock()
	for _, f := range watch {
		f()
	}
}
