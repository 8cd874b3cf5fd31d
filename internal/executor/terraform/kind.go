package terraform

import (
	_ "embed"
	"regexp"
	"slices"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/machine"
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
var Kind machine.Kind = executor.NewKind(Name, Rule, schema, checkConfig)

// variablePattern is what Terraform accepts as a variable name (hclsyntax.ValidIdentifier);
// anything else would only fail later, inside a task run.
var variablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// checkConfig checks `config: {source, action, variables?}`.
func checkConfig(config machine.Field) {
	fields, ok := config.Value.Mapping("the config of a terraform task")
	if !ok {
		return
	}
	var hasSource, hasAction bool
	for _, f := range fields {
		switch f.Name {
		case "source":
			hasSource = true
			checkSource(f)
		case "action":
			hasAction = true
			if a, ok := f.Value.Text("config.action"); ok && a != ActionApply && a != ActionDestroy {
				f.Value.Problem("config.action must be apply or destroy, not %q", a)
			}
		case "variables":
			checkVariables(f.Value)
		default:
			f.UnknownKey("a terraform config", "source", "action", "variables")
		}
	}
	if !hasSource {
		config.Key.Problem("a terraform config needs a source: {type: s3, bucket, key} or {type: local, location}")
	}
	if !hasAction {
		config.Key.Problem("a terraform config needs an action: apply or destroy")
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
