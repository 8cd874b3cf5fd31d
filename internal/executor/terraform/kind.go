package terraform

import (
	_ "embed"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
)

// Name is what a terraform task's `executor` says.
const Name = "terraform"

// Rule is the rule id of a problem in a terraform task's config (or of a missing config).
const Rule = "terraform-config"

// schema is the JSON Schema of a terraform config: terraformConfig, and the terraformSource it
// refers to.
//
//go:embed schema.json
var schema []byte

// Kind is the terraform executor as machine files know it: its name, its config's rules and its
// JSON Schema. internal/executor/kinds registers it.
var Kind machine.Kind = kind{executor.NewKind(Name, Rule, schema, checkConfig)}

// kind adds to the executor's Kind what the plan actions need from the machine format
// (plan.go): the outcomes a plan or drift task reports (machine.Outcomer), and the plan task an
// apply names (machine.Linker).
type kind struct{ executor.Kind }

// RunsOnCodeBuild: a terraform task may run on CodeBuild (machine.HandsOver), by `runner:
// codebuild` or a timeoutSeconds beyond Lambda's limit (message.TaskSpec.OnCodeBuild).
func (kind) RunsOnCodeBuild() bool { return true }

// Outcomes: a plan reports changes or noChanges, a drift check drift or noDrift.
func (kind) Outcomes(config map[string]any) []string {
	switch config["action"] {
	case ActionPlan:
		return []string{message.OutcomeChanges, message.OutcomeNoChanges}
	case ActionDrift:
		return []string{message.OutcomeDrift, message.OutcomeNoDrift}
	}
	return nil
}

// StatePaths: the state's key after `<machine>/<stackId>/` (StateKey), and CloudSeam's older one
// that a first run adopts (LegacyStateKey).
func (kind) StatePaths(config map[string]any) []string {
	cfg, err := ParseConfig(config)
	if err != nil {
		return nil
	}
	paths := []string{strings.TrimPrefix(StateKey("", "", cfg.Source), "//")}
	if legacy := LegacyStateKey("", "", cfg.Source); legacy != "" {
		paths = append(paths, strings.TrimPrefix(legacy, "//"))
	}
	return paths
}

// Link: an apply's `plan` names the plan task whose saved plan it applies (on another action
// checkConfig has said already that `plan` does not belong).
func (kind) Link(config map[string]any) (string, string) {
	if plan, ok := config["plan"].(string); ok && plan != "" && config["action"] == ActionApply {
		return "plan", plan
	}
	return "", ""
}

// CheckLink: the named task is a terraform task with action plan and the same source, since a
// saved plan applies only to the state it was made for.
func (kind) CheckLink(self, target *machine.Task) string {
	if target.Executor != Name || target.Config["action"] != ActionPlan {
		return fmt.Sprintf("config.plan names task %s, which is not a terraform task with action plan", target.Name)
	}
	if !reflect.DeepEqual(self.Config["source"], target.Config["source"]) {
		return fmt.Sprintf("task %s applies the plan of task %s but has another source; a saved plan applies only to the state it was made for", self.Name, target.Name)
	}
	return ""
}

// variablePattern is what Terraform accepts as a variable name (hclsyntax.ValidIdentifier);
// anything else would only fail later, inside a task run.
var variablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// checkConfig checks `config: {source, action, variables?, plan?}`.
func checkConfig(config machine.Field) {
	fields, ok := config.Value.Mapping("the config of a terraform task")
	if !ok {
		return
	}
	var hasSource, hasAction bool
	var action string
	var plan *machine.Field
	for i, f := range fields {
		switch f.Name {
		case "source":
			hasSource = true
			checkSource(f)
		case "action":
			hasAction = true
			if a, ok := f.Value.Text("config.action"); ok {
				action = a
				if !slices.Contains([]string{ActionApply, ActionDestroy, ActionPlan, ActionDrift}, a) {
					f.Value.Problem("config.action must be apply, destroy, plan or drift, not %q", a)
				}
			}
		case "variables":
			checkVariables(f.Value)
		case "plan":
			plan = &fields[i]
		default:
			f.UnknownKey("a terraform config", "source", "action", "variables", "plan")
		}
	}
	if plan != nil {
		// Which task it names, and what that task must be, is checked once every task is read (CheckLink).
		if action != ActionApply && action != "" {
			plan.Key.Problem("config.plan belongs on action apply only (it names the plan task whose saved plan is applied), not %s", action)
		} else if name, ok := plan.Value.Text("config.plan"); ok && name == "" {
			plan.Value.Problem("config.plan must name the plan task whose saved plan this task applies")
		}
	}
	if !hasSource {
		config.Key.Problem("a terraform config needs a source: {type: s3, bucket, key} or {type: local, location}")
	}
	if !hasAction {
		config.Key.Problem("a terraform config needs an action: apply, destroy, plan or drift")
	}
}

func checkSource(source machine.Field) {
	fields, ok := source.Value.Mapping("config.source")
	if !ok {
		return
	}
	typ := ""
	for _, f := range fields {
		if f.Name == "type" {
			if s, ok := f.Value.Text("config.source.type"); ok {
				if s == SourceS3 || s == SourceLocal {
					typ = s
				} else {
					f.Value.Problem("config.source.type must be s3 or local, not %q", s)
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
		k := f.Name
		if k == "type" {
			hasType = true
			continue
		}
		if !slices.Contains(allowed, k) {
			where := "a terraform source"
			if typ != "" {
				where = "a source of type " + typ
			}
			f.UnknownKey(where, allowed...)
			continue
		}
		present[k] = true
		if s, ok := f.Value.Text("config.source." + k); ok && s == "" {
			f.Value.Problem("config.source.%s must not be empty", k)
		} else if ok && k == "location" && typ == SourceLocal {
			if err := CheckLocation(s); err != nil {
				f.Value.Problem("%s", err.Error())
			}
		}
	}
	if !hasType {
		source.Key.Problem("config.source needs a type: s3 or local")
		return
	}
	for _, k := range allowed {
		if k != "type" && typ != "" && !present[k] {
			source.Key.Problem("a source of type %s needs %s", typ, k)
		}
	}
}

// checkVariables checks the flat map of Terraform variables.
func checkVariables(variables machine.Node) {
	fields, ok := variables.Mapping("config.variables")
	if !ok {
		return
	}
	for _, f := range fields {
		if !variablePattern.MatchString(f.Name) {
			f.Key.Problem("variable name %q is not a Terraform identifier (letters, digits, _ and -, not starting with a digit)", f.Name)
		}
		if !f.Value.IsFlat() {
			f.Value.Problem("variable %s must be a string, number or boolean (variables are flat), not %s", f.Name, f.Value.Describe())
		}
	}
}
