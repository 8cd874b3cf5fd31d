package machine

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/stackseam/stackseam/internal/message"
)

// Executors a task may name.
const (
	ExecutorTerraform = "terraform"
	ExecutorLambda    = "lambda"
)

// Terraform actions a terraform task may name.
const (
	TerraformApply   = "apply"
	TerraformDestroy = "destroy"
)

// Kinds of terraform source.
const (
	SourceS3    = "s3"
	SourceLocal = "local"
)

// variablePattern is what Terraform accepts as a variable name; anything else
// would only fail later, inside a task run.
var variablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

var taskKeys = []string{"executor", "config", "retry", "timeoutSeconds", "runner"}

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
		t := p.task(e)
		m.Tasks[t.Name] = t
	}
}

func (p *parser) task(kv pair) *Task {
	t := &Task{Name: kv.Key.Value}
	if strings.TrimSpace(t.Name) == "" {
		p.problem(kv.Key, RuleTaskName, "a task name must not be empty")
	}
	fields, ok := p.mapping(kv.Value, "task "+t.Name, RuleType)
	if !ok {
		return t
	}
	var config, runner *pair
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
		case "runner":
			runner = &fields[i]
		default:
			p.unknownKey(f.Key, "task "+t.Name, taskKeys...)
		}
	}
	if !hasExecutor {
		p.problem(kv.Key, RuleExecutor, "task %s needs an executor: terraform or lambda", t.Name)
	}
	if runner != nil {
		t.Runner = p.runner(*runner, t)
	}

	rule := RuleType
	switch t.Executor {
	case ExecutorTerraform:
		rule = RuleTerraformConfig
	case ExecutorLambda:
		rule = RuleLambdaConfig
	}
	if config == nil {
		if t.Executor != "" {
			p.problem(kv.Key, rule, "task %s needs a config for its %s executor", t.Name, t.Executor)
		}
		return t
	}
	switch t.Executor {
	case ExecutorTerraform:
		p.terraformConfig(config)
	case ExecutorLambda:
		p.lambdaConfig(config)
	}
	if c, ok := p.toJSON(config.Value, rule).(map[string]any); ok {
		t.Config = c
	}
	return t
}

// runner checks `runner: satisfier | codebuild` against the task's executor and time limit.
func (p *parser) runner(kv pair, t *Task) string {
	r, ok := p.str(kv.Value, "runner", RuleRunner)
	if !ok {
		return ""
	}
	switch r {
	case message.RunnerCodeBuild:
		if t.Executor == ExecutorLambda {
			p.problem(kv.Value, RuleRunner, "task %s is a lambda task, which runs in the satisfier: only terraform tasks run on CodeBuild", t.Name)
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
	if e != ExecutorTerraform && e != ExecutorLambda {
		p.problem(raw, RuleExecutor, "unknown executor %q: use terraform or lambda", e)
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

// terraformConfig checks `config: {source, action, variables?}`.
func (p *parser) terraformConfig(kv *pair) {
	const rule = RuleTerraformConfig
	fields, ok := p.mapping(kv.Value, "the config of a terraform task", rule)
	if !ok {
		return
	}
	var hasSource, hasAction bool
	for _, f := range fields {
		switch f.Key.Value {
		case "source":
			hasSource = true
			p.terraformSource(f)
		case "action":
			hasAction = true
			if a, ok := p.str(f.Value, "config.action", rule); ok && a != TerraformApply && a != TerraformDestroy {
				p.problem(f.Value, rule, "config.action must be apply or destroy, not %q", a)
			}
		case "variables":
			p.variables(f.Value)
		default:
			p.unknownKey(f.Key, "a terraform config", "source", "action", "variables")
		}
	}
	if !hasSource {
		p.problem(kv.Key, rule, "a terraform config needs a source: {type: s3, bucket, key} or {type: local, location}")
	}
	if !hasAction {
		p.problem(kv.Key, rule, "a terraform config needs an action: apply or destroy")
	}
}

func (p *parser) terraformSource(kv pair) {
	const rule = RuleTerraformConfig
	fields, ok := p.mapping(kv.Value, "config.source", rule)
	if !ok {
		return
	}
	typ := ""
	for _, f := range fields {
		if f.Key.Value == "type" {
			if s, ok := p.str(f.Value, "config.source.type", rule); ok {
				if s == SourceS3 || s == SourceLocal {
					typ = s
				} else {
					p.problem(f.Value, rule, "config.source.type must be s3 or local, not %q", s)
				}
			}
		}
	}
	hasType := false
	var allowed []string
	switch typ {
	case SourceS3:
		allowed = []string{"type", "bucket", "key"}
	case SourceLocal:
		allowed = []string{"type", "location"}
	default:
		// Unknown type: judge no other key, the type problem says it all.
		allowed = []string{"type", "bucket", "key", "location"}
	}
	present := map[string]bool{}
	for _, f := range fields {
		k := f.Key.Value
		if k == "type" {
			hasType = true
			continue
		}
		if !slices.Contains(allowed, k) {
			where := "a terraform source"
			if typ != "" {
				where = "a source of type " + typ
			}
			p.unknownKey(f.Key, where, allowed...)
			continue
		}
		present[k] = true
		if s, ok := p.str(f.Value, "config.source."+k, rule); ok && s == "" {
			p.problem(f.Value, rule, "config.source.%s must not be empty", k)
		} else if ok && k == "location" && typ == SourceLocal {
			p.localLocation(f.Value, s)
		}
	}
	if !hasType {
		p.problem(kv.Key, rule, "config.source needs a type: s3 or local")
		return
	}
	for _, k := range allowed {
		if k != "type" && typ != "" && !present[k] {
			p.problem(kv.Key, rule, "a source of type %s needs %s", typ, k)
		}
	}
}

// localLocation checks a local source's location as the terraform executor will: a path relative
// to the satisfier's TERRAFORM_SOURCES_DIR, never absolute and without "..", so that it stays inside.
func (p *parser) localLocation(node *yaml.Node, location string) {
	if strings.HasPrefix(location, "/") || filepath.IsAbs(location) {
		p.problem(node, RuleTerraformConfig, "config.source.location %q is absolute; a local source is a path relative to the satisfier's TERRAFORM_SOURCES_DIR", location)
	} else if slices.Contains(strings.Split(filepath.ToSlash(location), "/"), "..") {
		p.problem(node, RuleTerraformConfig, "config.source.location %q contains \"..\"; a local source stays inside the satisfier's TERRAFORM_SOURCES_DIR", location)
	}
}

// variables checks the flat map of Terraform variables.
func (p *parser) variables(raw *yaml.Node) {
	const rule = RuleTerraformConfig
	fields, ok := p.mapping(raw, "config.variables", rule)
	if !ok {
		return
	}
	for _, f := range fields {
		if !variablePattern.MatchString(f.Key.Value) {
			p.problem(f.Key, rule, "variable name %q is not a Terraform identifier (letters, digits, _ and -, not starting with a digit)", f.Key.Value)
		}
		v := resolve(f.Value)
		ok := v != nil && v.Kind == yaml.ScalarNode
		if ok {
			switch v.ShortTag() {
			case "!!str", "!!int", "!!float", "!!bool":
			default:
				ok = false
			}
		}
		if !ok {
			p.problem(f.Value, rule, "variable %s must be a string, number or boolean (variables are flat), not %s", f.Key.Value, kindName(f.Value))
		}
	}
}

// lambdaConfig checks `config: {name, args?}`.
func (p *parser) lambdaConfig(kv *pair) {
	const rule = RuleLambdaConfig
	fields, ok := p.mapping(kv.Value, "the config of a lambda task", rule)
	if !ok {
		return
	}
	hasName := false
	for _, f := range fields {
		switch f.Key.Value {
		case "name":
			hasName = true
			if s, ok := p.str(f.Value, "config.name", rule); ok && s == "" {
				p.problem(f.Value, rule, "config.name must not be empty")
			}
		case "args":
			if n := resolve(f.Value); n == nil || n.Kind != yaml.MappingNode {
				p.problem(f.Value, rule, "config.args must be a mapping (it becomes the JSON object sent to the function), not %s", kindName(f.Value))
			}
		default:
			p.unknownKey(f.Key, "a lambda config", "name", "args")
		}
	}
	if !hasName {
		p.problem(kv.Key, rule, "a lambda config needs name: the function to invoke")
	}
}
