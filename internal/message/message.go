// Package message holds the JSON messages that cross stackseam's queues: events
// (event queue), task messages (task queue) and task results. It is the leaf
// package shared by both functions, the CLI and the tests; field names follow
// CloudSeam so existing publishers keep working.
package message

import (
	"time"
)

// Names of the events the system itself understands. Every other event name is
// defined by a machine file.
const (
	// EventNext is fired by the state manager when all tasks of a state are
	// satisfied. Publishers may not send it.
	EventNext = "NEXT"
	// EventTaskCompleted reports that one task run succeeded.
	EventTaskCompleted = "TASK_COMPLETED"
	// EventTaskError reports that one task run failed.
	EventTaskError = "TASK_ERROR"
	// EventRetryFailedTasks re-dispatches every failed task of the stack.
	EventRetryFailedTasks = "RETRY_FAILED_TASKS"
	// EventRetryPendingTasks re-dispatches every task still waiting for a result.
	EventRetryPendingTasks = "RETRY_PENDING_TASKS"
)

// IsSystemEvent reports whether name is handled by the engine itself rather
// than by a machine's `on` table.
func IsSystemEvent(name string) bool {
	switch name {
	case EventTaskCompleted, EventTaskError, EventRetryFailedTasks, EventRetryPendingTasks:
		return true
	}
	return false
}

// Event is one message on the event queue: from a publisher (LAUNCH, DESTROY…),
// or a task result sent back by the satisfier.
type Event struct {
	// StackID names the stack; it is also the FIFO message group.
	StackID string `json:"stackId"`
	// Event is the event name. CloudSeam's legacy field `action` is accepted
	// when parsing and normalised into this field.
	Event string `json:"event"`
	// Machine is required the first time a stack is seen.
	Machine string `json:"machine,omitempty"`
	// Metadata is merged into the stack's metadata. Values are strings,
	// numbers (json.Number) or booleans.
	Metadata Metadata `json:"metadata,omitempty"`
	// EventID makes the event idempotent: a second event with the same id is
	// not applied again.
	EventID string `json:"eventId,omitempty"`
	// IfVersion, when set, applies the event only while the stack is still at
	// this version (see the stack's version in `stackseam show`); otherwise
	// the event is ignored. Time-to-live events use it so that activity after
	// they were issued cancels them.
	IfVersion *int64 `json:"ifVersion,omitempty"`

	// By and Comment are set on approvals only (`stackseam approve` / `reject`): who approved, as
	// the approver's AWS identity names it, and why. They are accepted only from the approvals
	// queue (Approval), never from the event queue.
	By      string `json:"by,omitempty"`
	Comment string `json:"comment,omitempty"`

	// The remaining fields are set on task results only.

	// TaskRunID identifies the dispatch this result answers.
	TaskRunID string `json:"taskRunId,omitempty"`
	// Task is the task the result is for.
	Task *TaskSpec `json:"task,omitempty"`
	// Description says what went wrong (TASK_ERROR) or what was done.
	Description string `json:"description,omitempty"`
	// Outputs are merged into the stack metadata on TASK_COMPLETED.
	Outputs Metadata `json:"outputs,omitempty"`
	// Log points at the stored task log.
	Log string `json:"log,omitempty"`
	// Outcome, on TASK_COMPLETED only, says what the task found, in the executor's words
	// (OutcomeChanges, OutcomeNoChanges, OutcomeDrift, OutcomeNoDrift); a task whose machine
	// definition maps that outcome to an event raises it (README.md, "Machine files").
	Outcome string `json:"outcome,omitempty"`

	// SettledBy is set only on a TASK_ERROR the state manager applies itself because no result
	// came (SettledByDeadline, SettledByDeadLetter). It is never read from a message: the parser
	// refuses the field, so no publisher can claim it.
	SettledBy string `json:"-"`
	// Approval is set when the event came from the approvals queue, which only principals with
	// approval rights can send to; it is never read from a message. SenderID is the sender SQS
	// recorded for it (the IAM user or role session id), when known.
	Approval bool   `json:"-"`
	SenderID string `json:"-"`
}

// MaxCommentLen bounds an approval's comment, in bytes.
const MaxCommentLen = 1024

// Why the state manager settled a task run itself (Event.SettledBy).
const (
	// SettledByDeadline: the run's deadline passed without a result.
	SettledByDeadline = "deadline"
	// SettledByDeadLetter: the task message was moved to the task dead-letter queue.
	SettledByDeadLetter = "dead-letter"
)

// IsResult reports whether the event is a task result.
func (e *Event) IsResult() bool {
	return e.Event == EventTaskCompleted || e.Event == EventTaskError
}

// Reserved says why event is not one a publisher — a person with the CLI, CI, a schedule — may
// send, or returns "" when it is: NEXT is fired by the state manager itself, and task results come
// only from the task satisfier. The state manager refuses a published NEXT with these words, and
// the CLI and the construct's schedules refuse both before anything is sent.
func Reserved(event string) string {
	switch event {
	case EventNext:
		return "NEXT is fired by the state manager when a state's tasks are done"
	case EventTaskCompleted, EventTaskError:
		return event + " is a task result, which only the task satisfier sends"
	}
	return ""
}

// TaskSpec is a task as its machine defines it.
type TaskSpec struct {
	Name     string         `json:"name"`
	Executor string         `json:"executor"`
	Config   map[string]any `json:"config"`
	// TimeoutSeconds bounds one run; zero means the executor's default.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// Runner is where the machine says the task runs: RunnerSatisfier, RunnerCodeBuild, or ""
	// when it says nothing (then TimeoutSeconds decides, see OnCodeBuild).
	Runner string `json:"runner,omitempty"`
}

// Where a task runs (TaskSpec.Runner).
const (
	// RunnerSatisfier runs the task inside the satisfier function, within Lambda's 15 minutes.
	RunnerSatisfier = "satisfier"
	// RunnerCodeBuild hands the task over to a CodeBuild build that runs the satisfier binary in
	// its one-task mode, for up to MaxTimeoutSeconds.
	RunnerCodeBuild = "codebuild"
)

// Time limits of a task run, in seconds.
const (
	// LambdaTimeoutSeconds is the longest a Lambda function runs: a task that may take longer
	// runs on CodeBuild unless its machine says otherwise.
	LambdaTimeoutSeconds = 15 * 60
	// MaxTimeoutSeconds is the longest timeoutSeconds a task may have: CodeBuild's longest build
	// (8 hours).
	MaxTimeoutSeconds = 8 * 60 * 60
)

// Limits of a CodeBuild build, beyond the run's own time limit. They are here, with the other
// time limits of a run, because the satisfier starts builds with them and the state manager's
// deadlines allow for them, and the engine links no AWS code.
const (
	// BuildQueuedTimeout is how long a build may wait for capacity before CodeBuild gives up on
	// it.
	BuildQueuedTimeout = time.Hour
	// BuildStartAllowance is the time a build spends before the one-task runner starts
	// (provisioning, downloading the source): the build's timeout covers it on top of the run's.
	BuildStartAllowance = 3 * time.Minute
	// maxBuildMinutes is the longest build timeout a hand-over asks for: 8 hours, what a
	// project's timeout may be in CloudFormation. A task of the longest timeoutSeconds
	// (MaxTimeoutSeconds) is stopped that much earlier, with time to report.
	maxBuildMinutes = MaxTimeoutSeconds / 60
)

// BuildTimeout is the timeout a build of a run with the time limit limit is started with: the
// limit, margin (stopping cleanly and publishing) and BuildStartAllowance, in whole minutes, at
// least CodeBuild's minimum of 5. The one-task runner derives its own deadline from the same value.
func BuildTimeout(limit, margin time.Duration) time.Duration {
	minutes := int((limit + margin + BuildStartAllowance + time.Minute - 1) / time.Minute)
	return time.Duration(min(max(minutes, 5), maxBuildMinutes)) * time.Minute
}

// OnCodeBuild reports whether a run of the task is handed over to CodeBuild: the machine says
// runner: codebuild, or says no runner and gives the task more time than Lambda has.
// Only terraform tasks run on CodeBuild: a lambda task is one synchronous Invoke, which Lambda
// itself bounds to 15 minutes.
func (s TaskSpec) OnCodeBuild() bool {
	return s.Runner == RunnerCodeBuild || (s.Runner == "" && s.Executor == "terraform" && s.TimeoutSeconds > LambdaTimeoutSeconds)
}

// TaskStatus is where one task of the current state stands.
type TaskStatus string

// The task statuses.
const (
	TaskPending   TaskStatus = "pending"
	TaskCompleted TaskStatus = "completed"
	TaskFailed    TaskStatus = "failed"
)

// StackTask is one task of the stack's current state, as stored and as sent
// to the satisfier in Stack.Tasks.
type StackTask struct {
	Name   string     `json:"name"`
	Status TaskStatus `json:"status"`
	// RunID is the taskRunId of the latest dispatch; only a result carrying it
	// can settle the task.
	RunID string `json:"runId"`
	// Attempt counts dispatches of this task in this state visit, from 1.
	Attempt      int       `json:"attempt"`
	DispatchedAt time.Time `json:"dispatchedAt"`
	// Deadline is when the state manager stops waiting for this run's result and settles it as
	// failed (README.md, "Every dispatched task ends"); nil for runs dispatched before deadlines
	// existed, or without a deadline policy.
	Deadline   *time.Time `json:"deadline,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Description holds the error text of a failed run.
	Description string `json:"description,omitempty"`
	// Log points at the latest run's stored log, when the executor kept one.
	Log string `json:"log,omitempty"`
}

// Stack is the stack as a task message carries it.
type Stack struct {
	ID            string      `json:"id"`
	Machine       string      `json:"machine"`
	State         string      `json:"state"`
	PreviousState string      `json:"previousState,omitempty"`
	Metadata      Metadata    `json:"metadata"`
	Tasks         []StackTask `json:"tasks"`
}

// Task is one message on the task queue: run this task for this stack.
type Task struct {
	Task      TaskSpec `json:"task"`
	Stack     Stack    `json:"stack"`
	TaskRunID string   `json:"taskRunId"`
}

// TaskLogKey is where the satisfier stores the log of one task run in its bucket; the state
// manager names it when it settles a run that sent no result.
func TaskLogKey(machine, stackID, task, runID string) string {
	return "logs/" + machine + "/" + stackID + "/" + task + "/" + runID + ".log"
}

// Result is what the satisfier publishes to the event queue after running a
// task. It parses as an Event.
type Result struct {
	Event       string   `json:"event"`
	StackID     string   `json:"stackId"`
	Task        TaskSpec `json:"task"`
	TaskRunID   string   `json:"taskRunId"`
	Description string   `json:"description,omitempty"`
	Outputs     Metadata `json:"outputs,omitempty"`
	Log         string   `json:"log,omitempty"`
	Outcome     string   `json:"outcome,omitempty"`
}

// Outcomes a task may report on TASK_COMPLETED (Event.Outcome): what a terraform plan or drift
// check found. A machine maps them to events in a task's `events`.
const (
	OutcomeChanges   = "changes"
	OutcomeNoChanges = "noChanges"
	OutcomeDrift     = "drift"
	OutcomeNoDrift   = "noDrift"
)

// IsOutcome reports whether s is one of the outcomes a task may report.
func IsOutcome(s string) bool {
	switch s {
	case OutcomeChanges, OutcomeNoChanges, OutcomeDrift, OutcomeNoDrift:
		return true
	}
	return false
}

// Notification kinds, published to the notification topic.
const (
	NotifyTransition = "transition"
	NotifyTaskFailed = "task-failed"
	NotifyRemoved    = "removed"
)

// Notification tells subscribers that a stack changed: it moved to another
// state, a task failed, or it was removed. Published to SNS with the message
// attributes stackId, machine, state and kind, so subscriptions can filter.
type Notification struct {
	Kind    string `json:"kind"`
	StackID string `json:"stackId"`
	Machine string `json:"machine"`
	// State is where the stack is after the change (for a removal: the
	// terminal state it ended in).
	State     string `json:"state"`
	FromState string `json:"fromState,omitempty"`
	ToState   string `json:"toState,omitempty"`
	// Event is what caused the change.
	Event       string `json:"event,omitempty"`
	Task        string `json:"task,omitempty"`
	TaskRunID   string `json:"taskRunId,omitempty"`
	Description string `json:"description,omitempty"`
	// SettledBy says, on a task-failed notification, that the state manager failed the run itself
	// because no result came (Event.SettledBy); empty for a result the satisfier sent.
	SettledBy string `json:"settledBy,omitempty"`
	// Outcome and Summary are set on a transition caused by an event a task raised (a plan
	// found changes, a drift check found drift): what the task reported and its outputs —
	// the counts and addresses, never values. Task names the task.
	Outcome string         `json:"outcome,omitempty"`
	Summary map[string]any `json:"summary,omitempty"`
	// DurationMs is the time spent in FromState (transition), the task run's
	// time (task-failed) or the stack's life (removed).
	DurationMs int64     `json:"durationMs"`
	At         time.Time `json:"at"`
}
