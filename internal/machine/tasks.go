package machine

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

var taskKeys = []string{"executor", "config", "retry", "timeoutSeconds", "events"}

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
	var config, events *pair
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
				}
				t.TimeoutSeconds = v
			}
		case "events":
			events = &fields[i]
		default:
			p.unknownKey(f.Key, "task "+t.Name, taskKeys...)
		}
	}
	if !hasExecutor {
		p.problem(kv.Key, RuleExecutor, "task %s needs an executor: %s", t.Name, p.kinds.or())
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
