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
	"slices"
	"strings"
	"time"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/internal/store"
)

// Machines gives the machine with a name, and lists them. *catalog.Catalog
// is one. Errors wrapping catalog.ErrUnknownMachine or
// catalog.ErrInvalidMachine are permanent (the event is rejected); any other
// error is retried.
//
// Get and Names may list, read and parse (I/O, CPU): the applier calls them
// only before taking a stack's lock. Loaded and Version only read what is
// already parsed, and are what the applier calls under the lock; Remember
// parses a version read back from the database, outside the lock.
type Machines interface {
	Get(ctx context.Context, name string) (*machine.Machine, error)
	Names(ctx context.Context) ([]string, error)
	Loaded(name string) (*machine.Machine, error)
	Version(hash string) *machine.Machine
	Remember(name string, body []byte) (*machine.Machine, error)
}

// Applier applies event-queue messages. Its fields are set once; it is safe
// for concurrent use.
type Applier struct {
	Store    *store.Store
	Machines Machines
	// Outlets maps each outbox destination (store.DestinationTask, …Event,
	// …Notification) to where its messages go. Without a notification
	// outlet no notifications are written at all.
	Outlets map[string]Outlet
	// ResultKey, when a key is configured, is the one results must be signed with: a
	// TASK_COMPLETED or TASK_ERROR without the satisfier's signature is rejected as forged. Nil, or
	// none configured, accepts unsigned results (local development).
	ResultKey *signing.Source
	// Metrics receives the EMF metrics; nil records none.
	Metrics *metrics.Recorder
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// Retention says how long the sweep keeps processed event keys and rejections; the zero
	// value keeps each for its default (retention.go).
	Retention Retention
	// Deadlines gives every dispatched task run its deadline, past which the sweep settles it as
	// failed (deadline.go); the zero value gives none.
	Deadlines engine.Deadlines
	// TaskDeadLetters, when set, is peeked by the sweep: the run of every task message in it is
	// settled as failed at once (deadline.go).
	TaskDeadLetters *TaskDeadLetterQueue
	// ApprovalSources are the queues approvals come from (queue.Message.Source: the approvals
	// queue's ARN in Lambda, its URL in local mode). Only principals with approval rights can
	// send to it, so a message from it is an approval (message.Event.Approval), the only way an
	// event a machine lists under approvals is applied. Empty: no approvals are accepted.
	ApprovalSources []string

	// combineWait replaces combineWait when set (tests).
	combineWait time.Duration
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
	if err := faults.Message(m.Body); err != nil { // a poison message in fault-injection tests
		return err
	}
	ev, err := message.ParseEvent([]byte(m.Body))
	if err != nil {
		return a.rejectUnparsed(ctx, m, err)
	}
	// The state manager's own events (time-to-live) carry eventIds with a reserved prefix: a
	// publisher using one could claim the key first and so cancel the real event.
	system := strings.HasPrefix(ev.EventID, store.SystemEventIDPrefix)
	if (ev.IsResult() || system) && a.ResultKey.Configured() {
		key, err := a.ResultKey.Key(ctx)
		if err != nil {
			// Secrets Manager unreachable: the result is retried, not judged.
			return fmt.Errorf("error reading the result signing key: %w", err)
		}
		if !key.Verify(m.Body, m.Attributes[signing.Attribute]) {
			// Only the satisfier (and this function) can read the key: a principal that may only
			// publish events cannot settle a task, and so cannot end a destroy early or inject outputs.
			if !ev.IsResult() {
				return a.rejectUnparsed(ctx, m, fmt.Errorf("%w: eventId %q uses the prefix %q, reserved for the state manager's own events",
					message.ErrInvalid, ev.EventID, store.SystemEventIDPrefix))
			}
			// A result naming only its task (CloudSeam's shape) needs the signature too: it can
			// settle a pending run just as well, so it is no easier to send.
			what := "run " + ev.TaskRunID
			if ev.TaskRunID == "" {
				what = "task " + ev.Task.Name
			}
			return a.rejectUnparsed(ctx, m, fmt.Errorf("%w: %s for %s is not signed by this deployment's satisfier; results are accepted only from it",
				message.ErrInvalid, ev.Event, what))
		}
	}
	if slices.Contains(a.ApprovalSources, m.Source) && m.Source != "" {
		if ev.IsResult() || message.IsSystemEvent(ev.Event) || system {
			return a.rejectUnparsed(ctx, m, fmt.Errorf("%w: the approvals queue carries approvals only, not %s", message.ErrInvalid, ev.Event))
		}
		ev.Approval, ev.SenderID = true, m.SenderID
	}
	if m.GroupID != "" && m.GroupID != ev.StackID {
		// The FIFO group is what keeps a stack's events in order; an event sent in another
		// group could overtake or be overtaken by its stack's other events.
		return a.rejectUnparsed(ctx, m, fmt.Errorf("%w: the message group %q is not the stack id %q (send each event with its stack id as the message group)",
			message.ErrInvalid, m.GroupID, ev.StackID))
	}
	key := "sqs:" + m.ID
	if ik, err := a.intakeKey(ctx, m); err != nil {
		return err
	} else if ik != "" {
		// Forwarded from the intake queue: the intake message's id, so a redelivered intake
		// message forwarded again past the event queue's five-minute deduplication is one event.
		key = ik
	}
	if ev.EventID != "" {
		key = "event:" + ev.StackID + ":" + ev.EventID
		if ev.Approval {
			// Apart from the event queue's ids: a publisher must not be able to take an
			// approval's key first and so have the approval dropped as a duplicate.
			key = "approval:" + ev.StackID + ":" + ev.EventID
		}
	}
	log := eventLogger(a.logger(), ev.StackID, ev.Event, m.ID)
	out, err := a.apply(ctx, ev, key, m.ID, log)
	if store.IsDataError(err) {
		// PostgreSQL refuses the values themselves: every retry would fail the same way.
		return a.rejectUnparsed(ctx, m, fmt.Errorf("%w: the database cannot store this event: %v", message.ErrInvalid, err))
	}
	if err != nil {
		log.Warn("event not applied; will retry", "outcome", "retry", "error", err)
		return err
	}
	res, flushErr := out.ApplyResult, out.flushErr
	if !out.flushed {
		faults.AfterCommit(len(res.Decision.Dispatch)) // a crash before publishing, in fault-injection tests
		flushErr = a.flush(ctx, res.Outbox)
	}
	if err := flushErr; err != nil {
		// The decision is committed and its messages wait in the outbox: the stack's next event
		// (which reads its outbox under the lock) or the sweep (rows older than OUTBOX_SWEEP_AGE)
		// sends them, in order. Failing the event instead would only spend its receive count, and
		// an event retried into the dead-letter queue for a queue outage it did not cause is lost
		// to its publisher's view.
		log.Warn("event applied; its messages are not sent yet: the stack's next event or the sweep sends them",
			"outcome", "applied", "error", err)
	}
	a.logDecision(log, res, time.Since(started))
	return nil
}

// apply decides ev under its stack's lock and commits the decision, with key as its idempotency
// key; it is the one path of every event, whether it came from the queue (Handle) or the state
// manager settles a run itself (settleRun). Errors are transient unless store.IsDataError.
//
// Inside a batch (queue.InOrderByGroup) the event is committed together with the events of the
// batch's other stacks that are applied at the same moment, and its outbox rows are published
// with theirs (combine.go); outside one, alone. Either way it is decided and committed exactly as
// the same event alone would be.
func (a *Applier) apply(ctx context.Context, ev message.Event, key, messageID string, log *slog.Logger) (applied, error) {
	// Load the machine the event names before taking the lock (Names
	// refreshes the catalog when due, for events that name none); under the
	// lock the applier only reads what is already parsed (pickMachine).
	var named *machine.Machine
	var namedErr error
	if ev.Machine != "" {
		named, namedErr = a.Machines.Get(ctx, ev.Machine)
		if namedErr != nil && !permanent(namedErr) {
			log.Warn("machine source unavailable; will retry", "machine", ev.Machine, "outcome", "retry", "error", namedErr)
			return applied{}, fmt.Errorf("error loading machine %s: %w", ev.Machine, namedErr)
		}
	} else if err := a.refreshMachines(ctx); err != nil {
		log.Warn("machine source unavailable; going on with the machines loaded", "error", err)
	}
	var res applied
	var err error
	var fellBack, unusable string
	combined := a.combinerFor(ctx)
	for attempt := 0; ; attempt++ {
		fellBack = ""
		res, err = a.storeApply(ctx, combined, store.ApplyInput{Key: key, StackID: ev.StackID, MessageID: messageID, Event: ev,
			Fence: a.Outlets[store.DestinationFence] != nil},
			func(current *engine.Stack) (engine.Decision, error) {
				in := engine.Input{Stack: current, Event: ev, Now: a.now(), NewRunID: newRunID, Deadlines: a.Deadlines}
				var err error
				in.Machine, in.MachineErr, fellBack, err = a.pickMachine(current, ev, named, namedErr, unusable)
				if err != nil {
					return engine.Decision{}, err
				}
				d := engine.Apply(in)
				if a.Outlets[store.DestinationNotification] == nil {
					d.Notifications = nil
				}
				return d, nil
			})
		var need *needVersion
		if attempt > 0 || !errors.As(err, &need) {
			break
		}
		// The stack runs on a version this process has not parsed: read and parse it with no
		// lock held, then decide again.
		if err := a.loadVersion(ctx, need.hash); err != nil {
			if !errors.Is(err, store.ErrNoMachineVersion) && !permanent(err) {
				log.Warn("machine version not loaded; will retry", "outcome", "retry", "error", err)
				return res, err
			}
			// Not stored, or refused by today's rules: retrying cannot help, so decide without it.
			log.Warn("the stack's machine version cannot be used", "error", err)
			unusable = need.hash
		}
	}
	if fellBack != "" && err == nil {
		log.Warn("machine file unusable; the stack runs on the last valid version it ran on", "reason", fellBack)
		a.Metrics.Record(nil, metrics.Value{Name: metrics.MachineInvalid, Unit: metrics.Count, Value: 1})
	}
	return res, err
}

// refreshMachines refreshes the catalog when due, as Names does, without listing the names when
// the catalog can do that alone (*catalog.Catalog can).
func (a *Applier) refreshMachines(ctx context.Context) error {
	if r, ok := a.Machines.(interface{ RefreshIfDue(context.Context) error }); ok {
		return r.RefreshIfDue(ctx)
	}
	_, err := a.Machines.Names(ctx)
	return err
}

// applied is what apply did: the store's result, and whether its outbox rows were already
// published (with the other events of its transaction) and how that went.
type applied struct {
	store.ApplyResult
	flushed  bool
	flushErr error
}

// storeApply commits one event: in the batch's shared transaction when c is set, alone otherwise
// (and when another transaction holds the stack's lock: the shared transaction never waits for a
// lock, so this event waits for it alone, beside the batch's next waves).
func (a *Applier) storeApply(ctx context.Context, c *combiner, in store.ApplyInput, decide store.Decide) (applied, error) {
	if c != nil {
		r := c.apply(ctx, store.Pending{In: in, Decide: decide})
		if p, ok := errors.AsType[*store.DecidePanic](r.applied.Err); ok {
			rethrow(p)
		}
		if !r.applied.Busy {
			return applied{ApplyResult: r.applied.ApplyResult, flushed: r.flushed, flushErr: r.flushErr}, r.applied.Err
		}
	}
	res, err := a.Store.Apply(ctx, in, decide)
	return applied{ApplyResult: res}, err
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
	if !message.ValidStackID(hint.StackID) {
		hint.StackID = "" // not a stack's: the body keeps it
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
	a.Metrics.Record([]metrics.Dim{{Name: metrics.DimOutcome, Value: string(engine.Rejected)}, {Name: metrics.DimEvent, Value: "INVALID"}},
		metrics.Value{Name: metrics.Events, Unit: metrics.Count, Value: 1})
	return nil
}

// flush publishes outbox rows through their destinations' outlets and deletes exactly those that
// went out. A row the outlet refuses for good (queue.SendFailure.Permanent: too large, or refused
// as sent) is parked with its reason, so it is neither retried forever nor re-sent by every sweep;
// rows that failed for a transient reason stay for the retry. Every destination is tried even when
// one fails; the first transient error is returned so the caller retries.
//
// Fences go first, and a stack's task messages are held back while its fence could not be
// written: a task message must never be received before the fence that makes its run current.
func (a *Applier) flush(ctx context.Context, rows []store.OutboxMessage) error {
	_, err := a.publish(ctx, rows)
	return err
}

// publish is flush, and also says which rows are done with: sent and deleted, or parked.
func (a *Applier) publish(ctx context.Context, rows []store.OutboxMessage) (done map[int64]bool, _ error) {
	done = map[int64]bool{}
	if len(rows) == 0 {
		return done, nil
	}
	unfenced := map[string]bool{}
	var firstErr error
	var sent []int64
	if out := a.Outlets[store.DestinationFence]; out != nil {
		var fences, rest []store.OutboxMessage
		for _, r := range rows {
			if r.Destination == store.DestinationFence {
				fences = append(fences, r)
			} else {
				rest = append(rest, r)
			}
		}
		rows = rest
		if len(fences) > 0 {
			if err := out(ctx, fences); err != nil {
				for _, r := range fences {
					unfenced[r.StackID] = true
				}
				firstErr = fmt.Errorf("error writing %d fences: %w", len(fences), err)
			} else {
				for _, r := range fences {
					sent = append(sent, r.ID)
				}
			}
		}
		if len(unfenced) > 0 {
			held := rows[:0:0]
			for _, r := range rows {
				if r.Destination != store.DestinationTask || !unfenced[r.StackID] {
					held = append(held, r)
				}
			}
			rows = held
		}
	}
	var order []string
	byDest := map[string][]store.OutboxMessage{}
	for _, r := range rows {
		if _, ok := byDest[r.Destination]; !ok {
			order = append(order, r.Destination)
		}
		byDest[r.Destination] = append(byDest[r.Destination], r)
	}
	var parked []store.Parked
	for _, dest := range order {
		batch := byDest[dest]
		out := a.Outlets[dest]
		if out == nil {
			// Written while an outlet existed (e.g. a topic since removed
			// from the configuration): nowhere to go, so drop them loudly.
			a.logger().Warn("dropping outbox messages with no configured destination", "destination", dest, "count", len(batch))
			for _, r := range batch {
				sent = append(sent, r.ID)
			}
			continue
		}
		err := out(ctx, batch)
		failed := map[int]bool{}
		var sendErr *queue.SendError
		switch {
		case err == nil:
		case errors.As(err, &sendErr):
			for _, f := range sendErr.Failures {
				failed[f.Index] = true
				if f.Permanent && f.Index >= 0 && f.Index < len(batch) {
					parked = append(parked, parkedRow(batch[f.Index], f.Err))
				} else if firstErr == nil {
					firstErr = fmt.Errorf("error sending %s messages: %w", dest, err)
				}
			}
		default:
			if firstErr == nil {
				firstErr = fmt.Errorf("error sending %d %s messages: %w", len(batch), dest, err)
			}
			continue
		}
		var delivered []store.OutboxMessage
		for i, r := range batch {
			if !failed[i] {
				delivered = append(delivered, r)
				sent = append(sent, r.ID)
			}
		}
		if len(delivered) > 0 {
			a.recordLag(dest, delivered)
		}
	}
	if err := a.Store.DeleteOutbox(ctx, sent); err != nil {
		if firstErr == nil {
			firstErr = err
		}
	} else {
		for _, id := range sent {
			done[id] = true
		}
	}
	if len(parked) == 0 {
		return done, firstErr
	}
	results, err := a.Store.ParkOutbox(ctx, parked)
	if err != nil {
		if firstErr == nil {
			firstErr = err
		}
		return done, firstErr
	}
	for _, p := range parked {
		done[p.ID] = true
	}
	for _, p := range parked {
		a.logger().Error("outbox message parked: it can never be sent", "outcome", "parked", "outboxId", p.ID, "reason", p.Reason)
	}
	a.Metrics.Record(nil, metrics.Value{Name: metrics.OutboxParked, Unit: metrics.Count, Value: float64(len(parked))})
	// The TASK_ERROR results of parked task messages are small; if they cannot go now, the sweep
	// sends them.
	if err := a.flush(ctx, results); err != nil && firstErr == nil {
		firstErr = err
	}
	return done, firstErr
}

// parkedRow is the parked form of an outbox row that can never be sent. A task message comes with
// a TASK_ERROR result for its run, so the stack learns the task will never run.
func parkedRow(r store.OutboxMessage, cause error) store.Parked {
	p := store.Parked{ID: r.ID, Reason: fmt.Sprintf("the %s message can never be sent: %v", r.Destination, cause)}
	if r.Destination != store.DestinationTask {
		return p
	}
	task, err := message.ParseTask([]byte(r.Body))
	if err != nil {
		return p
	}
	res, err := json.Marshal(message.Result{
		Event: message.EventTaskError, StackID: task.Stack.ID, TaskRunID: task.TaskRunID,
		// Without its config: the config may be what made the message too large.
		Task:        message.TaskSpec{Name: task.Task.Name, Executor: task.Task.Executor},
		Description: "the task did not run: " + p.Reason,
	})
	if err == nil {
		p.Result = string(res)
	}
	return p
}

// recordLag records how long the oldest message of a batch waited in the
// outbox: near zero normally, large when a sweep sends what a crash left.
func (a *Applier) recordLag(dest string, batch []store.OutboxMessage) {
	oldest := batch[0].CreatedAt
	for _, r := range batch[1:] {
		if r.CreatedAt.Before(oldest) {
			oldest = r.CreatedAt
		}
	}
	a.Metrics.Record([]metrics.Dim{{Name: metrics.DimDestination, Value: dest}},
		metrics.Value{Name: metrics.OutboxLag, Unit: metrics.Milliseconds, Value: float64(time.Since(oldest).Milliseconds())},
		metrics.Value{Name: metrics.OutboxSent, Unit: metrics.Count, Value: float64(len(batch))})
}

// SweepResult says what one sweep did.
type SweepResult struct {
	// Expired counts time-to-live events sent to idle stacks.
	Expired int
	// Resent counts outbox messages a crashed process had left unsent.
	Resent int
	// PrunedEvents and PrunedRejections count the processed event keys and rejections deleted
	// past their Retention.
	PrunedEvents, PrunedRejections int
	// DeadLettered and Overdue count the task runs settled as failed because their message was
	// in the task dead-letter queue, or their deadline had passed.
	DeadLettered, Overdue int
}

// Sweep does the periodic work: it settles as failed the task runs that can no longer get a
// result (their message is in the task dead-letter queue, or their deadline passed), sends each stack that has stayed idle
// past its state's ttl the state's ttl event (through the outbox, so a crash
// loses nothing), then sends outbox messages left unsent longer than
// outboxAge by a process that died between commit and publish, then prunes
// processed event keys and rejections past their Retention, in bounded batches.
func (a *Applier) Sweep(ctx context.Context, outboxAge time.Duration) (SweepResult, error) {
	var res SweepResult
	names, err := a.sweepMachines(ctx)
	if err != nil {
		return res, err
	}
	now := a.now()
	// Dead letters first: their reason says more than a passed deadline does.
	if res.DeadLettered, err = a.settleDeadLettered(ctx); err != nil {
		// The deadlines below still bound the wait; the rest of the sweep must not stop for it.
		a.logger().Warn("task dead-letter queue not peeked", "error", err.Error())
	}
	if res.Overdue, err = a.settleOverdue(ctx, now); err != nil {
		// The next sweep tries again; the time-to-live events and the outbox below must not wait
		// for it (a machine source that is down fails only the runs of its stacks).
		a.logger().Warn("overdue task runs not all settled yet", "settled", res.Overdue, "error", err.Error())
	}
	var expired []store.OutboxMessage
	for _, name := range names {
		m, err := a.Machines.Get(ctx, name)
		if err != nil && permanent(err) {
			// Broken or deleted while stacks run on it: their time-to-live events still go
			// out, by the last version a stack was pinned to, and the alarm hears of it.
			m = a.lastStoredVersion(ctx, name)
			if m != nil {
				a.logger().Warn("machine file unusable; its stacks' time-to-live events follow the last version stored", "machine", name, "reason", err.Error())
				a.Metrics.Record(nil, metrics.Value{Name: metrics.MachineInvalid, Unit: metrics.Count, Value: 1})
			}
		}
		if m == nil {
			continue
		}
		for _, stateName := range m.StateOrder {
			st := m.States[stateName]
			if st.TTL == nil {
				continue
			}
			rows, err := a.Store.EnqueueExpired(ctx, m.Name, st.Name, st.TTL.Event,
				now.Add(-time.Duration(st.TTL.AfterSeconds)*time.Second), 1000)
			if err != nil {
				return res, err
			}
			for _, r := range rows {
				a.logger().Info("stack idle past its ttl", "stackId", r.StackID, "event", st.TTL.Event,
					"outcome", "expired", "machine", m.Name, "state", st.Name)
			}
			expired = append(expired, rows...)
		}
	}
	res.Expired = len(expired)
	if len(expired) > 0 {
		a.Metrics.Record(nil, metrics.Value{Name: metrics.Expired, Unit: metrics.Count, Value: float64(len(expired))})
	}
	if err := a.flush(ctx, expired); err != nil {
		// They stay in the outbox; the stale-row pass below or the next
		// sweep sends them.
		a.logger().Warn("ttl events not sent yet", "error", err.Error())
	}
	rows, err := a.Store.StaleOutbox(ctx, outboxAge, 500)
	if err != nil {
		return res, err
	}
	if err := a.flush(ctx, rows); err != nil {
		return res, err
	}
	res.Resent = len(rows)
	if len(rows) > 0 {
		a.logger().Info("sent messages left in the outbox", "count", len(rows))
	}
	res.PrunedEvents, res.PrunedRejections, err = a.prune(ctx, now)
	return res, err
}

// sweepMachines returns the names of the catalog's machines and of the
// machines live stacks run on (a deleted file's stacks included).
func (a *Applier) sweepMachines(ctx context.Context) ([]string, error) {
	names, err := a.Machines.Names(ctx)
	if err != nil {
		return nil, fmt.Errorf("error listing machines for the sweep: %w", err)
	}
	inUse, err := a.Store.StackMachines(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range append(names, inUse...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// lastStoredVersion parses the latest stored version of machine name, or
// returns nil when there is none (or it cannot be read now).
func (a *Applier) lastStoredVersion(ctx context.Context, name string) *machine.Machine {
	body, err := a.Store.LatestMachineVersion(ctx, name)
	if err != nil {
		if !errors.Is(err, store.ErrNoMachineVersion) {
			a.logger().Warn("stored machine version not read", "machine", name, "error", err.Error())
		}
		return nil
	}
	m, err := a.Machines.Remember(name, body)
	if err != nil {
		a.logger().Warn("stored machine version not parsed", "machine", name, "error", err.Error())
		return nil
	}
	return m
}

func (a *Applier) logDecision(log *slog.Logger, res store.ApplyResult, took time.Duration) {
	level := slog.LevelInfo
	if !res.Duplicate && res.Decision.Outcome == engine.Rejected {
		level = slog.LevelWarn
	}
	if !log.Enabled(context.Background(), level) {
		a.recordDecision(res)
		return // the line's attributes are not even built
	}
	ms := float64(took.Microseconds()) / 1000
	if res.Duplicate {
		log.Info("event already applied", "outcome", "duplicate", "flushed", len(res.Outbox), "ms", ms)
		a.recordDecision(res)
		return
	}
	d := res.Decision
	attrs := make([]any, 0, 16)
	attrs = append(attrs, "outcome", string(d.Outcome), "ms", ms)
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
	a.recordDecision(res)
	switch d.Outcome {
	case engine.Rejected:
		log.Warn("event rejected", attrs...)
	case engine.Ignored:
		log.Info("event ignored", attrs...)
	default:
		log.Info("event applied", attrs...)
	}
}

// recordDecision emits the metrics of one handled event.
func (a *Applier) recordDecision(res store.ApplyResult) {
	if a.Metrics == nil {
		return
	}
	outcome, event := "duplicate", "DUPLICATE"
	if !res.Duplicate {
		outcome, event = string(res.Decision.Outcome), res.Decision.EventName
	}
	a.Metrics.Record([]metrics.Dim{{Name: metrics.DimOutcome, Value: outcome}, {Name: metrics.DimEvent, Value: event}},
		metrics.Value{Name: metrics.Events, Unit: metrics.Count, Value: 1})
	transitions := 0
	for _, h := range res.Decision.History {
		switch h.Kind {
		case engine.KindTransition:
			transitions++
		case engine.KindTaskDone, engine.KindTaskFailed:
			executor, _ := h.Detail["executor"].(string)
			result := metrics.ResultCompleted
			if h.Kind == engine.KindTaskFailed {
				result = metrics.ResultFailed
			}
			a.Metrics.Record([]metrics.Dim{{Name: metrics.DimExecutor, Value: executor}, {Name: metrics.DimResult, Value: result}},
				metrics.Value{Name: metrics.TaskResults, Unit: metrics.Count, Value: 1},
				metrics.Value{Name: metrics.TaskDuration, Unit: metrics.Milliseconds, Value: float64(h.Duration.Milliseconds())})
		}
	}
	if transitions > 0 {
		a.Metrics.Record(nil, metrics.Value{Name: metrics.Transitions, Unit: metrics.Count, Value: float64(transitions)})
	}
}

// needVersion aborts a decision whose stack runs on a machine version not yet
// parsed in this process; Handle loads it outside the transaction and retries.
type needVersion struct{ hash string }

func (e *needVersion) Error() string {
	return fmt.Sprintf("machine version %s is not loaded", e.hash)
}

// pickMachine chooses, under the stack's lock and without I/O, the machine an
// event is decided with (README "Machine files", "When a machine file
// changes"): the current valid version of the stack's machine when it still
// has the stack's state; otherwise the version the stack last ran on. A new
// stack uses the current version or is rejected. fellBack says why the
// current version was not used when that was because the file is broken or
// gone (not for a source outage, nor a new version without the state).
//
// unusable names a pinned version that could not be loaded for good (not
// stored, or refused by today's rules); it is treated as no version at all.
func (a *Applier) pickMachine(current *engine.Stack, ev message.Event, named *machine.Machine, namedErr error, unusable string) (m *machine.Machine, mErr error, fellBack string, err error) {
	if current == nil {
		return named, namedErr, "", nil
	}
	cur, curErr := named, namedErr
	if current.Machine != ev.Machine {
		cur, curErr = a.Machines.Loaded(current.Machine)
	}
	if cur != nil && cur.States[current.State] != nil {
		return cur, nil, "", nil
	}
	if current.MachineHash == "" || current.MachineHash == unusable || (cur != nil && cur.Hash == current.MachineHash) {
		// Nothing to fall back to (a stack stored before versions were kept).
		if curErr != nil && !permanent(curErr) {
			return nil, nil, "", fmt.Errorf("error loading machine %s: %w", current.Machine, curErr)
		}
		if curErr != nil {
			a.Metrics.Record(nil, metrics.Value{Name: metrics.MachineInvalid, Unit: metrics.Count, Value: 1})
		}
		return cur, curErr, "", nil
	}
	pinned := a.Machines.Version(current.MachineHash)
	if pinned == nil {
		return nil, nil, "", &needVersion{hash: current.MachineHash}
	}
	if curErr != nil && permanent(curErr) {
		fellBack = curErr.Error()
	}
	return pinned, nil, fellBack, nil
}

// loadVersion reads the machine version stored under hash and parses it into
// the catalog.
func (a *Applier) loadVersion(ctx context.Context, hash string) error {
	name, body, err := a.Store.MachineVersion(ctx, hash)
	if err != nil {
		return err
	}
	if _, err := a.Machines.Remember(name, body); err != nil {
		return fmt.Errorf("error parsing stored machine version %s: %w", hash, err)
	}
	return nil
}

func permanent(err error) bool {
	return errors.Is(err, catalog.ErrUnknownMachine) || errors.Is(err, catalog.ErrInvalidMachine)
}

// newRunID returns a random 128-bit id; a run id must never repeat, or a
// stale result could settle a new run.
func newRunID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
