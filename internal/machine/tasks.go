package machine

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/stackseam/stackseam/internal/message"
)

var taskKeys = []string{"executor", "config", "retry", "timeoutSeconds", "events", "runner"}

// tasks reads the top-level `tasks` mapping into m.
func (p *parser) tasks(raw *yaml.Node, m *Machine, sc *scope) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.MappingNode {
		p.problem(raw, RuleType, "tasks must be a mapping of task names to tasks, not %s", kindName(raw))
		sc.tasksOK = false
		return
	}
	for _, e := range p.pairs(n, RuleDuplicateKey, "task") {
		sc.tasks[e.Key.Value] = e.Key
		t := p.task(e, sc)
		m.Tasks[t.Name] = t
	}
}

func (p *parser) task(kv pair, sc *scope) *Task {
	t := &Task{Name: kv.Key.Value}
	if strings.TrimSpace(t.Name) == "" {
		p.problem(kv.Key, RuleTaskName, "a task name must not be empty")
	} else if strings.Contains(t.Name, "/") {
		// The name is one segment of its plans' and logs' keys, after a stack id that may hold
		// '/': stack a's task b/plan and stack a/b's task plan would share a key.
		p.problem(kv.Key, RuleTaskName, "task name %q holds a '/'; a task name is one segment of the keys of its plans and logs", t.Name)
	}
	fields, ok := p.mapping(kv.Value, "task "+t.Name, RuleType)
	if !ok {
		return t
	}
	var config, events, runner *pair
	hasExecutor := false
	for i, f := range fields {
		switch f.Key.Value {
		case "executor":
			hasExecutor = true
			t.Executor = p.executor(f.Value)
		case "config":
			config = &fields[i]
		case "retry":
			t.Retry = p.retry(f)
		case "timeoutSeconds":
			if v, ok := p.integer(f.Value, "timeoutSeconds", RuleTimeout); ok {
				if v <= 0 {
					p.problem(f.Value, RuleTimeout, "timeoutSeconds must be more than 0")
				} else if v > message.MaxTimeoutSeconds {
					p.problem(f.Value, RuleTimeout, "timeoutSeconds must be at most %d (8 hours, the longest a CodeBuild build runs)", message.MaxTimeoutSeconds)
				}
				t.TimeoutSeconds = v
			}
		case "events":
			events = &fields[i]
		case "runner":
			runner = &fields[i]
		default:
			p.unknownKey(f.Key, "task "+t.Name, taskKeys...)
		}
	}
	if !hasExecutor {
		p.problem(kv.Key, RuleExecutor, "task %s needs an executor: %s", t.Name, p.kinds.or())
	}
	if runner != nil {
		t.Runner = p.runner(*runner, t)
	}

	kind := p.kinds.Lookup(t.Executor)
	rule := RuleType
	if kind != nil {
		rule = kind.Rule()
	}
	if config == nil {
		if t.Executor != "" {
			p.problem(kv.Key, rule, "task %s needs a config for its %s executor", t.Name, t.Executor)
		}
	} else {
		if kind != nil {
			kind.CheckConfig(Field{Name: config.Key.Value,
				Key: Node{p: p, n: config.Key, rule: rule}, Value: Node{p: p, n: config.Value, rule: rule}})
		}
		if c, ok := p.toJSON(config.Value, rule).(map[string]any); ok {
			t.Config = c
		}
		p.planReference(config, t, rule)
		if kind != nil {
			t.Outcomes = outcomesOf(kind, t.Config)
			if k, ok := kind.(StateKeyer); ok && t.Config != nil {
				t.StatePaths = k.StatePaths(t.Config)
			}
		}
	}
	if events != nil {
		p.taskEvents(events, t, sc)
	}
	return t
}

// HandsOver is a Kind whose tasks can run outside Lambda, on CodeBuild (`runner: codebuild`, or
// a timeoutSeconds beyond Lambda's limit): the terraform executor.
type HandsOver interface {
	RunsOnCodeBuild() bool
}

// handedOver names the kinds whose tasks can run on CodeBuild.
func (k Kinds) handedOver() string {
	var names []string
	for _, kind := range k {
		if h, ok := kind.(HandsOver); ok && h.RunsOnCodeBuild() {
			names = append(names, kind.Name())
		}
	}
	return strings.Join(names, ", ")
}

// runner checks `runner: satisfier | codebuild` against the task's executor and time limit.
func (p *parser) runner(kv pair, t *Task) string {
	r, ok := p.str(kv.Value, "runner", RuleRunner)
	if !ok {
		return ""
	}
	switch r {
	case message.RunnerCodeBuild:
		if k := p.kinds.Lookup(t.Executor); k != nil {
			if h, ok := k.(HandsOver); !ok || !h.RunsOnCodeBuild() {
				p.problem(kv.Value, RuleRunner, "task %s is a %s task, which runs in the satisfier: only %s tasks run on CodeBuild",
					t.Name, t.Executor, p.kinds.handedOver())
			}
		}
	case message.RunnerSatisfier:
		if t.TimeoutSeconds > message.LambdaTimeoutSeconds {
			p.problem(kv.Value, RuleRunner, "task %s runs in the satisfier function (runner: satisfier), which Lambda stops after %d seconds; "+
				"its timeoutSeconds %d needs runner: codebuild", t.Name, message.LambdaTimeoutSeconds, t.TimeoutSeconds)
		}
	default:
		p.problem(kv.Value, RuleRunner, "runner must be satisfier or codebuild, not %q", r)
		return ""
	}
	return r
}

func (p *parser) executor(raw *yaml.Node) string {
	e, ok := p.str(raw, "executor", RuleExecutor)
	if !ok {
		return ""
	}
	if p.kinds.Lookup(e) == nil {
		p.problem(raw, RuleExecutor, "unknown executor %q: use %s", e, p.kinds.or())
		return ""
	}
	return e
}

func (p *parser) retry(kv pair) *Retry {
	fields, ok := p.mapping(kv.Value, "retry", RuleRetry)
	if !ok {
		return nil
	}
	r := &Retry{}
	hasAttempts := false
	for _, f := range fields {
		switch f.Key.Value {
		case "attempts":
			hasAttempts = true
			if v, ok := p.integer(f.Value, "retry.attempts", RuleRetry); ok {
				if v < 1 {
					p.problem(f.Value, RuleRetry, "retry.attempts must be at least 1")
				}
				r.Attempts = v
			}
		case "backoffSeconds":
			if v, ok := p.integer(f.Value, "retry.backoffSeconds", RuleRetry); ok {
				if v < 0 {
					p.problem(f.Value, RuleRetry, "retry.backoffSeconds must not be negative")
				}
				r.BackoffSeconds = v
			}
		default:
			p.unknownKey(f.Key, "retry", "attempts", "backoffSeconds")
		}
	}
	if !hasAttempts {
		p.problem(kv.Key, RuleRetry, "retry needs attempts: how many times to retry a failed run")
	}
	return r
}
