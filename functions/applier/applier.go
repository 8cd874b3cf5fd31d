// Package applier is the state manager's work for one event-queue message:
// parse it, let the engine decide under the stack's lock in the store, then
// publish the task messages the decision wrote to the outbox.
package applier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stackseam/stackseam/functions/engine"
	"github.com/stackseam/stackseam/functions/machine"
	"github.com/stackseam/stackseam/functions/message"
	"github.com/stackseam/stackseam/functions/queue"
	"github.com/stackseam/stackseam/functions/store"
)

// Machines gives the machine with a name. *machine.Catalog is one. Errors
// wrapping machine.ErrUnknownMachine or machine.ErrInvalidMachine are
// permanent (the event is rejected); any other error is retried.
type Machines interface {
	Get(ctx context.Context, name string) (*machine.Machine, error)
}

// TaskSender puts task messages on the task queue.
type TaskSender func(ctx context.Context, msgs []queue.Outgoing) error

// Applier applies event-queue messages. Its fields are set once; it is safe
// for concurrent use.
type Applier struct {
	Store    *store.Store
	Machines Machines
	Send     TaskSender
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

func (a *Applier) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

func (a *Applier) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// Handle applies one message. It returns an error only for transient
// failures (database, machine source, queue), so the message is delivered
// again; permanently bad messages are recorded, logged and acknowledged.
func (a *Applier) Handle(ctx context.Context, m queue.Message) error {
	started := time.Now()
	ev, err := message.ParseEvent([]byte(m.Body))
	if err != nil {
		return a.rejectUnparsed(ctx, m, err)
	}
	key := "sqs:" + m.ID
	if ev.EventID != "" {
		key = "event:" + ev.StackID + ":" + ev.EventID
	}
	log := a.logger().With("stackId", ev.StackID, "event", ev.Event, "messageId", m.ID)

	// Load the machine the event names before taking the lock; a stack that
	// already exists may use another one, looked up inside.
	var named *machine.Machine
	var namedErr error
	if ev.Machine != "" {
		named, namedErr = a.Machines.Get(ctx, ev.Machine)
		if namedErr != nil && !permanent(namedErr) {
			log.Warn("machine source unavailable; will retry", "machine", ev.Machine, "outcome", "retry", "error", namedErr)
			return fmt.Errorf("error loading machine %s: %w", ev.Machine, namedErr)
		}
	}
	res, err := a.Store.Apply(ctx, store.ApplyInput{Key: key, StackID: ev.StackID, MessageID: m.ID, Event: ev},
		func(current *engine.Stack) (engine.Decision, error) {
			in := engine.Input{Stack: current, Event: ev, Now: a.now(), NewRunID: newRunID}
			switch {
			case current == nil || current.Machine == ev.Machine:
				in.Machine, in.MachineErr = named, namedErr
			default:
				in.Machine, in.MachineErr = a.Machines.Get(ctx, current.Machine)
				if in.MachineErr != nil && !permanent(in.MachineErr) {
					return engine.Decision{}, fmt.Errorf("error loading machine %s: %w", current.Machine, in.MachineErr)
				}
			}
			return engine.Apply(in), nil
		})
	if err != nil {
		log.Warn("event not applied; will retry", "outcome", "retry", "error", err)
		return err
	}
	if err := a.flush(ctx, res.Outbox); err != nil {
		// The decision is committed; the retry finds the key processed and
		// only flushes the outbox.
		log.Warn("task messages not sent; will retry", "outcome", "retry", "error", err)
		return err
	}
	a.logDecision(log, res, time.Since(started))
	return nil
}

// rejectUnparsed records a message that is not a valid event at all.
func (a *Applier) rejectUnparsed(ctx context.Context, m queue.Message, perr error) error {
	// Name the stack and event when the JSON has them, so the rejection
	// lands in that stack's history.
	var hint struct {
		StackID string `json:"stackId"`
		Event   string `json:"event"`
		Action  string `json:"action"`
	}
	_ = json.Unmarshal([]byte(m.Body), &hint)
	if hint.Event == "" {
		hint.Event = hint.Action
	}
	reason := perr.Error()
	err := a.Store.RecordRejection(ctx, store.Rejection{Key: "sqs:" + m.ID, MessageID: m.ID,
		StackID: hint.StackID, Event: hint.Event, Reason: reason, Body: m.Body})
	log := a.logger().With("stackId", hint.StackID, "event", hint.Event, "messageId", m.ID)
	if err != nil {
		log.Warn("rejection not recorded; will retry", "outcome", "retry", "error", err)
		return err
	}
	log.Warn("event rejected", "outcome", string(engine.Rejected), "reason", reason)
	return nil
}

// flush publishes outbox rows and deletes them once they are on the queue.
func (a *Applier) flush(ctx context.Context, rows []store.OutboxMessage) error {
	if len(rows) == 0 {
		return nil
	}
	msgs := make([]queue.Outgoing, len(rows))
	ids := make([]int64, len(rows))
	for i, r := range rows {
		msgs[i] = queue.Outgoing{Body: r.Body, DelaySeconds: int32(r.DelaySeconds)}
		ids[i] = r.ID
	}
	if err := a.Send(ctx, msgs); err != nil {
		return fmt.Errorf("error sending %d task messages: %w", len(msgs), err)
	}
	return a.Store.DeleteOutbox(ctx, ids)
}

// SweepOutbox publishes task messages that stayed unsent longer than age —
// left behind by a process that died between commit and publish and whose
// event will not come back. It returns how many it sent.
func (a *Applier) SweepOutbox(ctx context.Context, age time.Duration) (int, error) {
	rows, err := a.Store.StaleOutbox(ctx, age, 500)
	if err != nil {
		return 0, err
	}
	if err := a.flush(ctx, rows); err != nil {
		return 0, err
	}
	if len(rows) > 0 {
		a.logger().Info("sent task messages left in the outbox", "count", len(rows))
	}
	return len(rows), nil
}

func (a *Applier) logDecision(log *slog.Logger, res store.ApplyResult, took time.Duration) {
	ms := float64(took.Microseconds()) / 1000
	if res.Duplicate {
		log.Info("event already applied", "outcome", "duplicate", "flushed", len(res.Outbox), "ms", ms)
		return
	}
	d := res.Decision
	attrs := []any{"outcome", string(d.Outcome), "ms", ms}
	if d.Reason != "" {
		attrs = append(attrs, "reason", d.Reason)
	}
	if d.Stack != nil {
		attrs = append(attrs, "machine", d.Stack.Machine, "state", d.Stack.State)
	}
	for _, h := range d.History {
		if h.Kind == engine.KindTransition {
			attrs = append(attrs, "from", h.FromState, "to", h.ToState)
		}
	}
	if len(d.Dispatch) > 0 {
		attrs = append(attrs, "tasksDispatched", len(d.Dispatch))
	}
	if d.Removed {
		attrs = append(attrs, "removed", true)
	}
	switch d.Outcome {
	case engine.Rejected:
		log.Warn("event rejected", attrs...)
	case engine.Ignored:
		log.Info("event ignored", attrs...)
	default:
		log.Info("event applied", attrs...)
	}
}

func permanent(err error) bool {
	return errors.Is(err, machine.ErrUnknownMachine) || errors.Is(err, machine.ErrInvalidMachine)
}

// newRunID returns a random 128-bit id; a run id must never repeat, or a
// stale result could settle a new run.
func newRunID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
