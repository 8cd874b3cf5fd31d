// Package engine decides what one event does to one stack (docs/design.md §"One event, step by step"). It is
// pure: given the stack, its machine, the event and the time it returns the new
// stack, the history to append and the task messages to send. All I/O (locking,
// storing, publishing) lives around it, in the store and the applier.
package engine

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
)

// maxRetryDelay is the longest delay SQS accepts on a message (DelaySeconds).
const maxRetryDelay = 15 * time.Minute

// MaxTransitionsPerEvent bounds the states one event moves a stack through,
// NEXT included. Validation already refuses cycles NEXT alone could drive,
// and NEXT fires only once a state's tasks are done, so real machines stay
// far below it; the bound keeps a decision (and the history rows it writes)
// small whatever the machine says. Advances past it are not taken, and the
// history says so.
const MaxTransitionsPerEvent = 50

// MaxTransitionsPerMinute bounds how often a publisher's events may move one stack: an event a
// machine declares is rejected ("send it again later") while the stack has taken this many
// transitions in the last minute. Task results and system events are never held back (a result
// must always settle its task), and they cannot drive a stack on their own: each needs a task
// dispatched by an earlier transition, and NEXT-only cycles are refused at validation.
const MaxTransitionsPerMinute = 60

// Stack is the current state of one stack, as the store keeps it.
type Stack struct {
	ID            string
	Machine       string
	State         string
	PreviousState string
	Metadata      message.Metadata
	Tasks         []message.StackTask
	// Version counts the changes applied to the stack since it was created.
	Version        int64
	CreatedAt      time.Time
	StateEnteredAt time.Time
	// LastActivityAt is the time of the last applied event (time-to-live
	// clocks start from it).
	LastActivityAt time.Time
	// MachineHash is the version of the machine (machine.Machine.Hash) the
	// stack's last applied event ran on; empty for stacks stored before
	// versions were kept. The stack falls back to it when its machine file
	// is broken, deleted, or no longer has the stack's state.
	MachineHash string
	// RecentTransitions is how many transitions the stack took in the last minute, as the store
	// counted them when it loaded the stack (not stored): MaxTransitionsPerMinute applies to it.
	RecentTransitions int
}

// Clone returns a deep copy, so a decision never aliases its input.
func (s *Stack) Clone() *Stack {
	c := *s
	c.Metadata = maps.Clone(s.Metadata)
	if c.Metadata == nil {
		c.Metadata = message.Metadata{}
	}
	c.Tasks = make([]message.StackTask, len(s.Tasks))
	copy(c.Tasks, s.Tasks)
	return &c
}

// Outcome says what became of an event.
type Outcome string

// The outcomes of an event.
const (
	// Applied: the event changed the stack (or was a declared no-op).
	Applied Outcome = "applied"
	// Rejected: the event is permanently bad for this stack; nothing changed.
	Rejected Outcome = "rejected"
	// Ignored: the event is valid but has nothing to act on (a stale or
	// repeated task result, a retry with nothing to retry); nothing changed.
	Ignored Outcome = "ignored"
)

// Input is everything a decision depends on.
type Input struct {
	// Stack is the current stack, or nil when it does not exist.
	Stack *Stack
	// Machine is the stack's machine (for a new stack: the one the event
	// names). When it is nil the event is rejected, with MachineErr as the
	// reason when set (for example the machine file's validation errors).
	Machine *machine.Machine
	// MachineErr says why Machine could not be loaded.
	MachineErr error
	// Event is the parsed event.
	Event message.Event
	// Now is the time the event is applied.
	Now time.Time
	// NewRunID returns a fresh, unique taskRunId.
	NewRunID func() string
	// Deadlines gives each dispatched run its deadline; the zero value gives none.
	Deadlines Deadlines
}

// Deadlines is how long the state manager waits for a dispatched run's result before settling it
// as failed: the longest the task queue and the satisfier can keep a run going without a word.
// Each receive of the task message may run the task for its timeout and, if the satisfier dies
// without publishing, leave the message invisible for the queue's visibility timeout; after
// Receives receives SQS moves it to the dead-letter queue. So a run that has had no result
// Receives × (timeout + Visibility) after it was due to be delivered never will.
type Deadlines struct {
	// DefaultTimeout bounds a run whose task sets no timeoutSeconds (the satisfier's default).
	DefaultTimeout time.Duration
	// Visibility is the task queue's visibility timeout.
	Visibility time.Duration
	// Receives is the task queue's maxReceiveCount; zero means runs get no deadline.
	Receives int
}

// buildMarginAllowance is the most of the satisfier's TIMEOUT_MARGIN a CodeBuild run's deadline
// allows for (the satisfier's default is 30s).
const buildMarginAllowance = 5 * time.Minute

// After is how long after its dispatch (the end of its delay) a run of task is overdue; zero when
// d gives no deadlines.
//
// A run handed over to CodeBuild (task.OnCodeBuild) leaves the task queue once its build has
// started: the hand-over is bounded like any run of the default timeout, then the build may wait
// for capacity (message.BuildQueuedTimeout) and runs for at most its build timeout
// (message.BuildTimeout: the task's limit, up to 8 hours, and the allowances). Should the
// satisfier have no CodeBuild project, it runs such a task itself, so the deadline is the larger
// of the two.
func (d Deadlines) After(task message.TaskSpec) time.Duration {
	if d.Receives <= 0 {
		return 0
	}
	timeout := d.DefaultTimeout
	if task.TimeoutSeconds > 0 {
		timeout = time.Duration(task.TimeoutSeconds) * time.Second
	}
	inQueue := time.Duration(d.Receives) * (timeout + d.Visibility)
	if !task.OnCodeBuild() {
		return inQueue
	}
	handOver := time.Duration(d.Receives) * (d.DefaultTimeout + d.Visibility)
	return max(inQueue, handOver+message.BuildQueuedTimeout+message.BuildTimeout(timeout, buildMarginAllowance))
}

// Dispatch is one task message to send, after Delay.
type Dispatch struct {
	Task  message.Task
	Delay time.Duration
}

// Decision is what the engine decided.
type Decision struct {
	// EventName is the event the decision is about.
	EventName string
	Outcome   Outcome
	// Reason explains a rejection or why the event was ignored.
	Reason string
	// Stack is the stack after the event; nil when it was removed or when a
	// rejected event named a stack that does not exist.
	Stack *Stack
	// Created is set when the event created the stack.
	Created bool
	// Removed is set when the stack reached a terminal state with every task
	// satisfied and must be deleted.
	Removed bool
	// History holds the rows to append, in order.
	History []HistoryEntry
	// Dispatch holds the task messages to send.
	Dispatch []Dispatch
	// Notifications tell subscribers about transitions, task failures and
	// removal, in order.
	Notifications []message.Notification
	// Machine is the machine version an applied decision was made with; the
	// store keeps its body so the stack can run on it again.
	Machine *machine.Machine
}

// History kinds.
const (
	KindCreated    = "created"
	KindEvent      = "event"
	KindRejected   = "rejected"
	KindIgnored    = "ignored"
	KindTransition = "transition"
	KindDispatched = "task-dispatched"
	KindTaskDone   = "task-completed"
	KindTaskFailed = "task-failed"
	KindRemoved    = "removed"
	// KindParked records that a message the stack caused could never be sent and was parked
	// (store.ParkOutbox).
	KindParked = "parked"
)

// HistoryEntry is one row of a stack's history.
type HistoryEntry struct {
	Kind      string
	At        time.Time
	Event     string
	FromState string
	ToState   string
	Task      string
	TaskRunID string
	// Duration is the time spent in FromState (transition), the task run's
	// time (task results) or the stack's life (removed).
	Duration time.Duration
	Reason   string
	Detail   map[string]any
}

// Apply decides what in.Event does. It never mutates in.Stack.
func Apply(in Input) Decision {
	a := applier{in: in, ev: in.Event, now: in.Now}
	d := a.run()
	d.EventName = in.Event.Event
	return d
}

type applier struct {
	in      Input
	ev      message.Event
	now     time.Time
	m       *machine.Machine
	s       *Stack
	d       Decision
	newRuns map[string]bool
	delays  map[string]time.Duration
	why     map[string]string
	// transitions counts the states entered by this event.
	transitions int
}

func (a *applier) run() Decision {
	ev := a.ev
	if ev.Event == message.EventNext {
		return a.reject(message.Reserved(ev.Event) + "; it cannot be published")
	}
	if a.in.Stack == nil {
		return a.create()
	}
	a.s = a.in.Stack.Clone()
	a.m = a.in.Machine
	if ev.IfVersion != nil && *ev.IfVersion != a.s.Version {
		return a.ignore(fmt.Sprintf("stack %s changed since the event was issued (version %d, now %d)", a.s.ID, *ev.IfVersion, a.s.Version))
	}
	if ev.Machine != "" && ev.Machine != a.s.Machine {
		return a.reject(fmt.Sprintf("stack %s runs machine %q, the event names %q", a.s.ID, a.s.Machine, ev.Machine))
	}
	if a.m == nil {
		return a.reject(a.machineUnavailable(a.s.Machine))
	}
	return a.applyEvent()
}

// create starts a new stack at INIT and applies the event to it. A rejected
// first event leaves no stack behind.
func (a *applier) create() Decision {
	ev := a.ev
	if ev.IsResult() || ev.IfVersion != nil {
		// A late or repeated result, or a conditional event, for a stack that reached its end: it
		// changes nothing, but the kept history says it arrived.
		return Decision{Outcome: Ignored, Reason: fmt.Sprintf("%s for stack %s, which does not exist (it may have been removed)", ev.Event, ev.StackID),
			History: []HistoryEntry{{Kind: KindIgnored, At: a.now, Event: ev.Event, TaskRunID: ev.TaskRunID,
				Reason: "the stack does not exist (it may have been removed)"}}}
	}
	if message.IsSystemEvent(ev.Event) {
		return a.reject(fmt.Sprintf("stack %s does not exist (it may have been removed); %s needs an existing stack", ev.StackID, ev.Event))
	}
	if ev.Machine == "" {
		return a.reject(fmt.Sprintf("stack %s is new and the event names no machine", ev.StackID))
	}
	if a.in.Machine == nil || a.in.Machine.Name != ev.Machine {
		return a.reject(a.machineUnavailable(ev.Machine))
	}
	a.m = a.in.Machine
	if reason := a.m.StackIDRefusal(ev.StackID); reason != "" {
		return a.reject(reason)
	}
	a.s = &Stack{
		ID:             ev.StackID,
		Machine:        ev.Machine,
		State:          machine.StateInit,
		Metadata:       message.Metadata{},
		Tasks:          []message.StackTask{},
		CreatedAt:      a.now,
		StateEnteredAt: a.now,
		LastActivityAt: a.now,
	}
	a.d.Created = true
	d := a.applyEvent()
	if d.Outcome != Applied {
		// Nothing to keep: the stack only existed for this decision.
		return Decision{Outcome: d.Outcome, Reason: d.Reason}
	}
	d.History = append([]HistoryEntry{{Kind: KindCreated, At: a.now, Event: ev.Event, ToState: machine.StateInit,
		Detail: map[string]any{"machine": a.m.Name}}}, d.History...)
	return d
}

func (a *applier) applyEvent() Decision {
	switch a.ev.Event {
	case message.EventTaskCompleted, message.EventTaskError:
		return a.applyResult()
	case message.EventRetryFailedTasks:
		return a.retry(message.TaskFailed)
	case message.EventRetryPendingTasks:
		return a.retry(message.TaskPending)
	}
	if !a.m.Declares(a.ev.Event) {
		return a.reject(fmt.Sprintf("event %s is not declared by machine %s (declared: %s)", a.ev.Event, a.m.Name, strings.Join(a.m.Events, ", ")))
	}
	st, ok := a.m.States[a.s.State]
	if !ok {
		return a.reject(fmt.Sprintf("state %s no longer exists in machine %s", a.s.State, a.m.Name))
	}
	if task := a.m.RaisedBy(a.ev.Event); task != "" {
		return a.reject(fmt.Sprintf("event %s is raised by task %s from what it found; it cannot be sent", a.ev.Event, task))
	}
	if reason := approvalRefusal(a.m, a.ev); reason != "" {
		return a.reject(reason)
	}
	actions, ok := st.On[a.ev.Event]
	if !ok {
		return a.reject(fmt.Sprintf("event %s is not allowed in state %s (allowed: %s)", a.ev.Event, a.s.State, allowedEvents(st)))
	}
	if a.s.RecentTransitions >= MaxTransitionsPerMinute {
		return a.reject(fmt.Sprintf("stack %s took %d transitions in the last minute, the most allowed: %s was not applied; send it again later",
			a.s.ID, a.s.RecentTransitions, a.ev.Event))
	}
	if reason := a.summaryRefusal(a.ev.Metadata, ""); reason != "" {
		return a.reject(reason)
	}
	if reason := a.metadataOverflow(a.ev.Metadata); reason != "" {
		return a.reject(reason)
	}
	a.mergeMetadata(a.ev.Metadata)
	a.record(HistoryEntry{Kind: KindEvent, Event: a.ev.Event, FromState: a.s.State, Detail: eventDetail(a.ev, actions)})
	a.runActions(actions, a.ev.Event)
	a.settle()
	return a.finish()
}

// approvalRefusal says why ev cannot be applied because of who may send it, "" when it can: an
// event the machine lists under approvals comes only from the approvals queue, and the approvals
// queue carries only such events (README.md, "Plan, approve, apply").
func approvalRefusal(m *machine.Machine, ev message.Event) string {
	needs := m.NeedsApproval(ev.Event)
	switch {
	case needs && !ev.Approval:
		return fmt.Sprintf("event %s needs approval rights: it is accepted only from the approvals queue (stackseam approve / reject), not from the event queue", ev.Event)
	case !needs && ev.Approval:
		return fmt.Sprintf("the approvals queue carries only the events machine %s lists under approvals (%s), not %s",
			m.Name, strings.Join(m.Approvals, ", "), ev.Event)
	case !ev.Approval && (ev.By != "" || ev.Comment != ""):
		return "by and comment belong on approvals only (stackseam approve / reject)"
	}
	return ""
}

// raise applies the event a completed task raised by its outcome (the task's `events`), in the
// state the task ran in, before NEXT is considered: so `changes` can lead a stack to wait for an
// approval instead of going straight on. The transitions it causes carry the task's outputs (a
// plan's or a drift check's summary) to the notifications.
func (a *applier) raise(task, outcome string, outputs message.Metadata) {
	def := a.m.Tasks[task]
	if def == nil || def.Events[outcome] == "" {
		return
	}
	event := def.Events[outcome]
	st := a.m.States[a.s.State]
	detail := map[string]any{"raisedBy": task, "outcome": outcome}
	actions, ok := st.On[event]
	if !ok {
		// Validation requires every state running the task to handle it; a state a newer
		// version of the file changed may not.
		a.record(HistoryEntry{Kind: KindEvent, Event: event, FromState: a.s.State, Detail: detail,
			Reason: fmt.Sprintf("state %s does not handle %s; it was not applied", a.s.State, event)})
		return
	}
	a.record(HistoryEntry{Kind: KindEvent, Event: event, FromState: a.s.State, Detail: detail})
	from := len(a.d.History)
	a.runActions(actions, event)
	for i := from; i < len(a.d.History); i++ {
		if h := &a.d.History[i]; h.Kind == KindTransition && h.Event == event {
			h.Task = task
			h.Detail = map[string]any{"raisedBy": task, "outcome": outcome, "summary": map[string]any(outputs)}
		}
	}
}

func (a *applier) applyResult() Decision {
	ev := a.ev
	byName := ev.TaskRunID == ""
	var i int
	if byName {
		// A result that names only its task (CloudSeam's satisfier, or an operator finishing a
		// manual step) cannot be told from a stale one: it settles the task's current run, and
		// only while that run is pending. The history row says it was settled by name.
		i = a.taskByName(ev.Task.Name)
		if i < 0 {
			return a.ignore(fmt.Sprintf("result for task %s, which is not a task of stack %s in state %s", ev.Task.Name, a.s.ID, a.s.State))
		}
		if t := a.s.Tasks[i]; t.Status != message.TaskPending {
			return a.ignore(fmt.Sprintf("result for task %s names no run, and the task's current run %s is already %s", t.Name, t.RunID, t.Status))
		}
	} else {
		i = a.taskByRun(ev.TaskRunID)
		if i < 0 {
			return a.ignore(fmt.Sprintf("stale result: run %s is not a current task run of stack %s in state %s", ev.TaskRunID, a.s.ID, a.s.State))
		}
	}
	t := &a.s.Tasks[i]
	if t.Status != message.TaskPending {
		return a.ignore(fmt.Sprintf("repeated result: task %s run %s is already %s", t.Name, t.RunID, t.Status))
	}
	finished := a.now
	t.FinishedAt = &finished
	t.Log = ev.Log
	entry := HistoryEntry{Task: t.Name, TaskRunID: t.RunID, FromState: a.s.State, Event: ev.Event, Duration: a.now.Sub(t.DispatchedAt),
		Detail: map[string]any{}}
	if def := a.m.Tasks[t.Name]; def != nil {
		entry.Detail["executor"] = def.Executor
	}
	if ev.Log != "" {
		entry.Detail["log"] = ev.Log
	}
	if ev.SettledBy != "" {
		entry.Detail["settledBy"] = ev.SettledBy
	}
	if byName {
		// Not settledBy, which marks the runs the state manager failed itself (stacks --stuck).
		entry.Detail["byTaskName"] = true
	}
	// A result always settles its task: metadata or outputs that would grow the stack's metadata
	// past its limit are not kept, and a completed task whose outputs cannot be kept fails.
	overflow := a.summaryRefusal(ev.Metadata, "")
	if overflow == "" {
		overflow = a.metadataOverflow(ev.Metadata)
	}
	if overflow == "" {
		a.mergeMetadata(ev.Metadata)
	}
	if ev.Event == message.EventTaskCompleted && overflow == "" {
		overflow = a.summaryRefusal(ev.Outputs, t.Name)
	}
	if ev.Event == message.EventTaskCompleted && overflow == "" {
		overflow = a.metadataOverflow(ev.Outputs)
	}
	if ev.Event == message.EventTaskCompleted && overflow == "" {
		t.Status = message.TaskCompleted
		t.Description = ""
		a.mergeMetadata(ev.Outputs)
		entry.Kind = KindTaskDone
		if len(ev.Outputs) > 0 {
			entry.Detail["outputs"] = sortedKeys(ev.Outputs)
		}
		if ev.Outcome != "" {
			entry.Detail["outcome"] = ev.Outcome
		}
		a.record(entry)
		a.raise(t.Name, ev.Outcome, ev.Outputs)
		a.settle()
		return a.finish()
	}
	t.Status = message.TaskFailed
	t.Description = ev.Description
	if t.Description == "" {
		t.Description = "the task failed without a description"
	}
	if overflow != "" {
		t.Description = "the result was not kept: " + overflow
		if ev.Event == message.EventTaskError && ev.Description != "" {
			t.Description += "; the task reported: " + ev.Description
		}
	}
	entry.Kind = KindTaskFailed
	entry.Reason = t.Description
	a.record(entry)
	a.autoRetry(i)
	return a.finish()
}

// autoRetry re-dispatches a failed task whose machine definition asks for
// retries, with exponential backoff.
func (a *applier) autoRetry(i int) {
	t := &a.s.Tasks[i]
	def := a.m.Tasks[t.Name]
	if def == nil || def.Retry == nil || t.Attempt > def.Retry.Attempts {
		return
	}
	delay := time.Duration(def.Retry.BackoffSeconds) * time.Second
	for n := 1; n < t.Attempt && delay < maxRetryDelay; n++ {
		delay *= 2
	}
	delay = min(delay, maxRetryDelay)
	a.redispatch(i, fmt.Sprintf("automatic retry %d of %d", t.Attempt, def.Retry.Attempts), delay)
}

func (a *applier) retry(status message.TaskStatus) Decision {
	var idx []int
	for i, t := range a.s.Tasks {
		if t.Status == status {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return a.ignore(fmt.Sprintf("%s: stack %s has no %s tasks in state %s", a.ev.Event, a.s.ID, status, a.s.State))
	}
	if reason := a.summaryRefusal(a.ev.Metadata, ""); reason != "" {
		return a.reject(reason)
	}
	if reason := a.metadataOverflow(a.ev.Metadata); reason != "" {
		return a.reject(reason)
	}
	a.mergeMetadata(a.ev.Metadata)
	a.record(HistoryEntry{Kind: KindEvent, Event: a.ev.Event, FromState: a.s.State})
	for _, i := range idx {
		a.redispatch(i, a.ev.Event, 0)
	}
	return a.finish()
}

// redispatch gives task i a new run id, so results of the old run become stale.
func (a *applier) redispatch(i int, why string, delay time.Duration) {
	t := &a.s.Tasks[i]
	t.RunID = a.in.NewRunID()
	t.Status = message.TaskPending
	t.Attempt++
	t.DispatchedAt = a.now.Add(delay)
	t.FinishedAt = nil
	t.Deadline = nil
	t.Description = ""
	t.Log = ""
	a.markNew(t.RunID, delay, why)
}

// runActions applies an `on` list in order.
func (a *applier) runActions(actions []machine.Action, trigger string) {
	for _, act := range actions {
		if act.Kind != machine.ActionAdvance {
			continue
		}
		if a.transitions >= MaxTransitionsPerEvent {
			a.record(HistoryEntry{Kind: KindEvent, Event: trigger, FromState: a.s.State,
				Reason: fmt.Sprintf("stopped after %d transitions for one event; the advance to %s was not taken", MaxTransitionsPerEvent, act.State)})
			return
		}
		a.transitions++
		a.enter(act.State, trigger)
	}
}

// enter moves the stack into state target and gives it that state's tasks.
func (a *applier) enter(target, trigger string) {
	from := a.s.State
	a.record(HistoryEntry{Kind: KindTransition, Event: trigger, FromState: from, ToState: target, Duration: a.now.Sub(a.s.StateEnteredAt)})
	a.s.PreviousState = from
	a.s.State = target
	a.s.StateEnteredAt = a.now
	st := a.m.States[target]
	a.s.Tasks = make([]message.StackTask, 0, len(st.Tasks))
	for _, name := range st.Tasks {
		run := a.in.NewRunID()
		a.s.Tasks = append(a.s.Tasks, message.StackTask{Name: name, Status: message.TaskPending, RunID: run, Attempt: 1, DispatchedAt: a.now})
		a.markNew(run, 0, "")
	}
}

// settle fires NEXT when every task of the state is completed, and removes
// the stack when it rests in a terminal state. Entering a state with tasks
// leaves them pending, so the loop ends after a bounded number of steps.
func (a *applier) settle() {
	for step := 0; step < 1000; step++ {
		st := a.m.States[a.s.State]
		if st == nil || !a.allCompleted() {
			return
		}
		if st.Terminal {
			a.d.Removed = true
			a.record(HistoryEntry{Kind: KindRemoved, FromState: a.s.State, Duration: a.now.Sub(a.s.CreatedAt)})
			return
		}
		if len(a.s.Tasks) == 0 {
			return // a resting state: it waits for the next event
		}
		actions, ok := st.On[machine.EventNext]
		if !ok {
			return // validation forbids this; stay rather than guess
		}
		a.record(HistoryEntry{Kind: KindEvent, Event: machine.EventNext, FromState: a.s.State})
		before := a.s.State
		a.runActions(actions, machine.EventNext)
		if a.s.State == before && !advances(actions) {
			return // NEXT is a no-op here: the stack rests with its tasks done
		}
	}
}

func advances(actions []machine.Action) bool {
	for _, act := range actions {
		if act.Kind == machine.ActionAdvance {
			return true
		}
	}
	return false
}

func (a *applier) allCompleted() bool {
	for _, t := range a.s.Tasks {
		if t.Status != message.TaskCompleted {
			return false
		}
	}
	return true
}

// finish turns the working stack into a decision, building the task messages
// for every run started during this event that is still current.
func (a *applier) finish() Decision {
	a.s.Version++
	a.s.LastActivityAt = a.now
	a.s.MachineHash = a.m.Hash
	a.d.Machine = a.m
	a.d.Outcome = Applied
	a.d.Notifications = notifications(a.s, a.d.History)
	if a.d.Removed {
		a.d.Stack = nil
		a.d.Dispatch = nil
		return a.d
	}
	a.d.Stack = a.s
	for i := range a.s.Tasks {
		t := &a.s.Tasks[i]
		if !a.newRuns[t.RunID] {
			continue
		}
		var spec message.TaskSpec
		if def := a.m.Tasks[t.Name]; def != nil {
			spec = def.Spec()
		}
		if after := a.in.Deadlines.After(spec); after > 0 {
			deadline := t.DispatchedAt.Add(after) // DispatchedAt already includes a retry's delay
			t.Deadline = &deadline
		}
	}
	view := message.Stack{ID: a.s.ID, Machine: a.s.Machine, State: a.s.State, PreviousState: a.s.PreviousState,
		Metadata: a.s.Metadata, Tasks: a.s.Tasks}
	for _, t := range a.s.Tasks {
		if !a.newRuns[t.RunID] {
			continue
		}
		spec := message.TaskSpec{Name: t.Name}
		if def := a.m.Tasks[t.Name]; def != nil {
			spec = def.Spec()
		}
		delay := a.delays[t.RunID]
		a.d.Dispatch = append(a.d.Dispatch, Dispatch{Task: message.Task{Task: spec, Stack: view, TaskRunID: t.RunID}, Delay: delay})
		detail := map[string]any{"attempt": t.Attempt}
		if delay > 0 {
			detail["delaySeconds"] = int(delay / time.Second)
		}
		a.record(HistoryEntry{Kind: KindDispatched, Task: t.Name, TaskRunID: t.RunID, FromState: a.s.State, Reason: a.why[t.RunID], Detail: detail})
	}
	return a.d
}

// markNew remembers a run started by this event, with its send delay and why
// it was started (empty for a state's first dispatch).
func (a *applier) markNew(run string, delay time.Duration, why string) {
	if a.newRuns == nil {
		a.newRuns = map[string]bool{}
		a.delays = map[string]time.Duration{}
		a.why = map[string]string{}
	}
	a.newRuns[run] = true
	a.delays[run] = delay
	a.why[run] = why
}

// taskByName is the index of the task of the current state named name, or -1.
func (a *applier) taskByName(name string) int {
	for i, t := range a.s.Tasks {
		if t.Name == name {
			return i
		}
	}
	return -1
}

func (a *applier) taskByRun(run string) int {
	for i, t := range a.s.Tasks {
		if t.RunID == run {
			return i
		}
	}
	return -1
}

// metadataOverflow says why md cannot be merged into the stack's metadata ("" when it can): a
// stack's metadata is bounded so that every task message, which carries it, fits in SQS.
func (a *applier) metadataOverflow(md message.Metadata) string {
	if len(md) == 0 {
		return ""
	}
	if n := message.MergedBytes(a.s.Metadata, md); n > message.MaxStackMetadataBytes {
		return fmt.Sprintf("the stack's metadata would grow to %d bytes; at most %d are allowed", n, message.MaxStackMetadataBytes)
	}
	return ""
}

// summaryRefusal says why md may not be merged, "" when it may: a key of a task's reported
// summary ("plan.destroy", machine.SummaryOwner) is written only by the outputs of that task
// (self), never by an event's metadata or another task's outputs. The approver decides on the
// summary the stack's metadata shows; a publisher (or a Lambda task returning such keys) that
// could write or remove it could have a plan approved that does something else.
func (a *applier) summaryRefusal(md message.Metadata, self string) string {
	for _, k := range sortedKeys(md) {
		if task := a.m.SummaryOwner(k); task != "" && task != self {
			return fmt.Sprintf("metadata key %q is written only by the results of task %s (its summary)", k, task)
		}
	}
	return ""
}

// mergeMetadata merges an event's metadata or a task's outputs into the stack's; a null value in
// an event's metadata removes the key (outputs never hold null: ParseEvent refuses it there).
func (a *applier) mergeMetadata(md message.Metadata) {
	a.s.Metadata.Merge(md)
}

func (a *applier) record(e HistoryEntry) {
	e.At = a.now
	a.d.History = append(a.d.History, e)
}

func (a *applier) machineUnavailable(name string) string {
	if a.in.MachineErr != nil {
		return fmt.Sprintf("machine %q cannot be used: %v", name, a.in.MachineErr)
	}
	return fmt.Sprintf("machine %q is not available", name)
}

func (a *applier) reject(reason string) Decision {
	d := Decision{Outcome: Rejected, Reason: reason, Stack: a.in.Stack}
	if a.in.Stack != nil {
		d.History = []HistoryEntry{{Kind: KindRejected, At: a.now, Event: a.ev.Event, FromState: a.in.Stack.State, Reason: reason}}
	}
	return d
}

func (a *applier) ignore(reason string) Decision {
	return Decision{Outcome: Ignored, Reason: reason, Stack: a.in.Stack,
		History: []HistoryEntry{{Kind: KindIgnored, At: a.now, Event: a.ev.Event, FromState: a.in.Stack.State,
			TaskRunID: a.ev.TaskRunID, Reason: reason}}}
}

func allowedEvents(st *machine.State) string {
	var names []string
	for e := range st.On {
		if e != machine.EventNext {
			names = append(names, e)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func eventDetail(ev message.Event, actions []machine.Action) map[string]any {
	d := map[string]any{}
	if len(ev.Metadata) > 0 {
		d["metadata"] = map[string]any(ev.Metadata)
	}
	if ev.Approval {
		d["approval"] = true
		for k, v := range map[string]string{"by": ev.By, "comment": ev.Comment, "senderId": ev.SenderID} {
			if v != "" {
				d[k] = v
			}
		}
	}
	if len(actions) == 1 && actions[0].Kind == machine.ActionNoop {
		d["action"] = machine.ActionNoop
	}
	if len(d) == 0 {
		return nil
	}
	return d
}

func sortedKeys(m message.Metadata) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// notifications turns the history rows subscribers care about into messages.
func notifications(s *Stack, history []HistoryEntry) []message.Notification {
	var out []message.Notification
	for _, h := range history {
		n := message.Notification{StackID: s.ID, Machine: s.Machine, Event: h.Event, At: h.At,
			DurationMs: h.Duration.Milliseconds(), Task: h.Task, TaskRunID: h.TaskRunID}
		switch h.Kind {
		case KindTransition:
			n.Kind, n.State, n.FromState, n.ToState = message.NotifyTransition, h.ToState, h.FromState, h.ToState
			n.Outcome, _ = h.Detail["outcome"].(string)
			if summary, ok := h.Detail["summary"].(map[string]any); ok {
				n.Summary = summary
			}
		case KindTaskFailed:
			n.Kind, n.State, n.Description = message.NotifyTaskFailed, h.FromState, h.Reason
			n.SettledBy, _ = h.Detail["settledBy"].(string)
		case KindRemoved:
			n.Kind, n.State = message.NotifyRemoved, h.FromState
		default:
			continue
		}
		out = append(out, n)
	}
	return out
}
