package machine

// Rule ids name the rule a Problem breaks. They are stable: tests, editors and
// the JSON Schema refer to them, so an id is never renamed or reused.
const (
	// RuleYAML: the file is not well-formed YAML (or holds more than one
	// document).
	RuleYAML = "yaml"
	// RuleAliases: the file's aliases and merge keys expand to more than
	// 100,000 nodes in all, or an alias names a value that contains it.
	RuleAliases = "aliases"
	// RuleEmpty: the file holds no document.
	RuleEmpty = "empty"
	// RuleMachineName: the file name cannot be used as a machine name in
	// events (it must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$).
	RuleMachineName = "machine-name"
	// RuleType: a value has the wrong YAML type (a list where a mapping
	// belongs, a string where a boolean belongs…).
	RuleType = "type"
	// RuleUnknownKey: a mapping holds a key the format does not define.
	RuleUnknownKey = "unknown-key"
	// RuleDuplicateKey: a mapping repeats a key.
	RuleDuplicateKey = "duplicate-key"
	// RuleRequired: a required top-level key (events, states) is missing.
	RuleRequired = "required"
	// RuleVersion: `version` is missing or not 1 / 1.0.
	RuleVersion = "version"
	// RuleEventName: an event name does not match ^[A-Z0-9-]+$.
	RuleEventName = "event-name"
	// RuleDuplicateEvent: an event is declared twice.
	RuleDuplicateEvent = "duplicate-event"
	// RuleStateName: a state name does not match ^[A-Z0-9-]+$.
	RuleStateName = "state-name"
	// RuleDuplicateState: a state is defined twice.
	RuleDuplicateState = "duplicate-state"
	// RuleMissingInit: there is no INIT state.
	RuleMissingInit = "missing-init"
	// RuleUndeclaredEvent: `on` names an event that is neither declared nor NEXT.
	RuleUndeclaredEvent = "undeclared-event"
	// RuleAction: an action is missing its `action` or names an unknown kind.
	RuleAction = "action"
	// RuleAdvanceTarget: an advance has no `state` or names a state that
	// does not exist.
	RuleAdvanceTarget = "advance-target"
	// RuleUnknownTask: a state lists a task not defined under `tasks`.
	RuleUnknownTask = "unknown-task"
	// RuleDuplicateTask: a state lists the same task twice.
	RuleDuplicateTask = "duplicate-task"
	// RuleTaskName: a task name is empty or holds a '/'.
	RuleTaskName = "task-name"
	// RuleExecutor: a task's `executor` is missing or names no executor
	// the parse knows (Kinds). A task's `config` is judged by its
	// executor's Kind, under the Kind's own rule id (Kind.Rule:
	// terraform-config, lambda-config).
	RuleExecutor = "executor"
	// RuleRetry: a task's `retry` is wrong (stackseam addition).
	RuleRetry = "retry"
	// RuleTimeout: a task's `timeoutSeconds` is not a positive integer of at
	// most 28800 (8 hours, CodeBuild's longest build; stackseam addition).
	RuleTimeout = "timeout"
	// RuleRunner: a task's `runner` is not satisfier or codebuild, puts a lambda task on
	// CodeBuild, or keeps a task longer than 15 minutes in the satisfier function (stackseam
	// addition).
	RuleRunner = "runner"
	// RuleTTL: a state's `ttl` is wrong (stackseam addition).
	RuleTTL = "ttl"
	// RuleTaskEvents: a task's `events` names an outcome its executor and
	// action do not report, or an event that is NEXT or that a state running
	// the task does not handle (stackseam addition).
	RuleTaskEvents = "task-events"
	// RuleApprovals: `approvals` is not a list of declared events (stackseam
	// addition).
	RuleApprovals = "approvals"
	// RuleNextCycle: states with tasks whose NEXT advances lead back round
	// to themselves, so a stack would run their tasks for ever without any
	// event from outside.
	RuleNextCycle = "next-cycle"
)

// Rule ids of warnings: the machine works, but probably not as meant.
const (
	// RuleUnreachable: no chain of advances leads from INIT to the state.
	RuleUnreachable = "unreachable"
	// RuleImplicitNext: `events` declares NEXT, which every machine has
	// already. Accepted so files that spell it out keep working.
	RuleImplicitNext = "implicit-next"
	// RuleUnusedTask: a task is defined but no state lists it.
	RuleUnusedTask = "unused-task"
	// RuleUnusedEvent: an event is declared but no state handles it, so
	// sending it is always rejected.
	RuleUnusedEvent = "unused-event"
	// RuleMultipleAdvance: one event has several advances in the same state;
	// only the last one decides where the stack goes.
	RuleMultipleAdvance = "multiple-advance"
	// RuleNoTerminal: no state is `terminal: true`, so no stack is ever removed.
	// A warning because CloudSeam's validator accepted such machines and they run
	// (it was an error before; the id is unchanged).
	RuleNoTerminal = "no-terminal"
	// RuleNextRequired: a non-terminal state has tasks but no NEXT handler, so
	// a stack stays there once its tasks are done until an event moves it. A
	// warning for the same reason as RuleNoTerminal.
	RuleNextRequired = "next-required"
)
