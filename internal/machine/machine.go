// Package machine is the machine file format: it parses and validates machine files
// (docs/design.md §"Machine files") from bytes, and does no I/O; internal/catalog loads them from
// a folder or an S3 prefix.
//
// Parse reports every broken rule of a file at once, each with its line,
// column and a stable rule id (see the Rule constants). Choices the design
// leaves open:
//   - `x-` keys are allowed at the top level only; everywhere else an
//     unknown key is an error.
//   - Declaring NEXT under `events` is accepted with a warning
//     (RuleImplicitNext), so files that spell it out keep working.
//   - Merge keys follow the YAML merge-key spec: keys written in a mapping
//     win over merged ones, and in `<<: [*a, *b]` the earlier mapping wins.
//   - Names (events, states, tasks) are judged by their text, so `- 404` is
//     a valid event name; other values must have the YAML type the format
//     asks for (`bucket: 2024` must be quoted).
package machine

import (
	"fmt"

	"github.com/stackseam/stackseam/internal/message"
)

// Action kinds an `on` entry may hold.
const (
	ActionAdvance = "advance"
	ActionNoop    = "no-op"
)

// The names every machine has: stacks start in StateInit, and EventNext is
// fired when a state's tasks are all satisfied.
const (
	StateInit = "INIT"
	EventNext = "NEXT"
)

// Machine is one validated machine file. Only Parse makes them; a Machine that
// exists has passed every rule.
type Machine struct {
	// Name is the file name without its extension.
	Name string
	// Source says where the machine was read from (a path or s3://bucket/key).
	Source string
	// Version is the file's `version`, as written ("1" or "1.0").
	Version string
	// Events lists the declared events in file order; NEXT is implicit and not
	// listed.
	Events []string
	// States holds every state by name.
	States map[string]*State
	// StateOrder lists state names in file order (for graphs and listings).
	StateOrder []string
	// Tasks holds every task definition by name.
	Tasks map[string]*Task
	// Warnings are problems that do not stop the machine from being used,
	// such as unreachable states.
	Warnings []Problem
	// Hash identifies this version of the machine: the hex SHA-256 of the
	// file's bytes. A stack records the version it last ran on.
	Hash string
	// Body is the file as read, kept so the version can be stored and
	// parsed again when the file changes or disappears.
	Body []byte
	// Approvals lists the events only a principal with approval rights may
	// send (`approvals`, optional): they are accepted from the approvals
	// queue only.
	Approvals []string
}

// State is one state of a machine.
type State struct {
	Name     string
	Terminal bool
	// Tasks names the tasks that must be satisfied in this state, in order.
	Tasks []string
	// On maps an event name to the actions it triggers in this state.
	On map[string][]Action
	// TTL, when set, sends an event after the stack has been idle in this
	// state for a while (a stackseam addition; optional).
	TTL *TTL
}

// Action is one entry of a state's `on.<EVENT>` list.
type Action struct {
	// Kind is ActionAdvance or ActionNoop.
	Kind string
	// State is the target of an advance.
	State string
}

// TTL is a state's idle timeout.
type TTL struct {
	AfterSeconds int
	Event        string
}

// Task is one entry under the machine's top-level `tasks`.
type Task struct {
	Name string
	// Executor names the task's Kind ("terraform", "lambda").
	Executor string
	// Config is the task's `config` converted to JSON-compatible values
	// (map[string]any, []any, string, float64/int, bool). It is sent to the
	// satisfier as it is.
	Config map[string]any
	// Retry is optional; nil means no automatic retry.
	Retry *Retry
	// TimeoutSeconds bounds one run; zero means the executor's default.
	TimeoutSeconds int
	// Events maps an outcome the task may report (OutcomeChanges…) to the
	// event it then raises in its state (`events`, optional).
	Events map[string]string
	// Runner is where the task runs, as the machine says: message.RunnerSatisfier,
	// message.RunnerCodeBuild, or "" (then a terraform task with a timeoutSeconds beyond
	// Lambda's 15 minutes runs on CodeBuild, see message.TaskSpec.OnCodeBuild).
	Runner string
	// Outcomes are the outcomes the task's executor reports for its config (a terraform plan:
	// changes or noChanges); a task that reports any writes its summary to the stack's metadata
	// under "<task>." (README.md, "Plan, approve, apply").
	Outcomes []string
	// StatePaths are where the task's state lives under `<machine>/<stackId>/` (StateKeyer).
	StatePaths []string
}

// Spec is what a task message carries of the task: everything the satisfier needs to run it.
// A field added to Task that the satisfier reads is added here, and only here.
func (t *Task) Spec() message.TaskSpec {
	return message.TaskSpec{Name: t.Name, Executor: t.Executor, Config: t.Config, TimeoutSeconds: t.TimeoutSeconds, Runner: t.Runner}
}

// Retry says how a failed task is retried automatically.
type Retry struct {
	Attempts       int
	BackoffSeconds int
}

// Handles reports whether state s has an `on` entry for event.
func (s *State) Handles(event string) bool {
	_, ok := s.On[event]
	return ok
}

// Declares reports whether the machine declares event (NEXT always counts).
func (m *Machine) Declares(event string) bool {
	if event == EventNext {
		return true
	}
	for _, e := range m.Events {
		if e == event {
			return true
		}
	}
	return false
}

// Problem is one broken rule (or warning) in a machine file, with its place.
type Problem struct {
	File   string
	Line   int
	Column int
	// Rule is a short stable identifier of the rule, e.g. "unknown-key".
	Rule string
	// Message says what is wrong in words.
	Message string
}

// String formats the problem as "file:line:col: message [rule]".
func (p Problem) String() string {
	return fmt.Sprintf("%s:%d:%d: %s [%s]", p.File, p.Line, p.Column, p.Message, p.Rule)
}
