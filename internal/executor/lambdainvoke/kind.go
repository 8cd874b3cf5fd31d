package lambdainvoke

import (
	_ "embed"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/machine"
)

// Name is what a lambda task's `executor` says.
const Name = "lambda"

// Rule is the rule id of a problem in a lambda task's config (or of a missing config).
const Rule = "lambda-config"

// schema is the JSON Schema of a lambda config (lambdaConfig).
//
//go:embed schema.json
var schema []byte

// Kind is the lambda executor as machine files know it: its name, its config's rules and its JSON
// Schema. internal/executor/kinds registers it.
var Kind machine.Kind = executor.NewKind(Name, Rule, schema, checkConfig)

// checkConfig checks `config: {name, args?}`.
func checkConfig(config machine.Field) {
	fields, ok := config.Value.Mapping("the config of a lambda task")
	if !ok {
		return
	}
	hasName := false
	for _, f := range fields {
		switch f.Name {
		case "name":
			hasName = true
			if s, ok := f.Value.Text("config.name"); ok && s == "" {
				f.Value.Problem("config.name must not be empty")
			}
		case "args":
			if !f.Value.IsMapping() {
				f.Value.Problem("config.args must be a mapping (it becomes the JSON object sent to the function), not %s", f.Value.Describe())
			}
		default:
			f.UnknownKey("a lambda config", "name", "args")
		}
	}
	if !hasName {
		config.Key.Problem("a lambda config needs name: the function to invoke")
	}
}
