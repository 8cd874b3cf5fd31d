package machine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/machine"
)

// The JSON Schema in machines/machine.schema.json gives editors the rules
// of machine files. These tests keep it in agreement with the Go validator:
// both judge the same fixtures, and where they differ the difference is
// listed here, with the reason, rather than hidden.

const schemaPath = "../../machines/machine.schema.json"

// beyondSchema holds the rules a JSON Schema cannot check, and why. An
// invalid fixture the schema accepts must break only these rules.
var beyondSchema = map[string]string{
	machine.RuleMachineName:     "the machine name comes from the file name, which a schema never sees",
	machine.RuleUnknownTask:     "a cross-reference: a listed task must be defined under tasks",
	machine.RuleAdvanceTarget:   "a cross-reference: an advance must name an existing state (a missing `state:` the schema does see)",
	machine.RuleUndeclaredEvent: "a cross-reference: an event handled in `on` or sent by a ttl must be declared under events",
	machine.RuleTTL:             "partly: the state must handle its ttl event, which must be neither an approval event nor one a task raises, and after must be at least 1s in whole seconds",
	machine.RuleNextCycle:       "a cross-reference: which states the NEXT advances of states with tasks lead to",
	machine.RuleTaskEvents:      "partly: every state that runs the task must handle the event it raises",
	terraform.Rule:              "partly: plan: must name a terraform plan task of the machine with the same source",
}

// schemaAccepts lists the invalid fixtures the schema accepts by design:
// every problem in them is one of beyondSchema.
var schemaAccepts = []string{
	"_machine-name.yml", // machine-name
	"unknown-task.yml",  // unknown-task
	"next-cycle.yml",    // next-cycle
	"ttl-reserved.yml",  // ttl (the event is an approval or a raised one)
}

// yamlRefuses lists the invalid fixtures that are not YAML data at all
// (syntax errors, duplicate keys, bad merges). Editors report those as YAML
// errors before any schema is consulted, and so does this test's decoder.
var yamlRefuses = []string{
	"aliases.yml",        // a value containing itself
	"aliases-budget.yml", // the decoder refuses excessive aliasing too
	"duplicate-key.yml",
	"duplicate-state.yml",
	"merge.yml",
	"yaml-syntax.yml",
	"yaml-tab.yml",
	"yaml-unknown-anchor.yml",
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	require.NoError(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err, "the schema is valid JSON")
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("machine.schema.json", doc))
	s, err := c.Compile("machine.schema.json")
	require.NoError(t, err, "the schema is a valid draft-07 schema")
	return s
}

// verdict is what an editor would say about a file.
type verdict int

const (
	schemaValid verdict = iota
	schemaInvalid
	yamlInvalid
)

func (v verdict) String() string {
	return [...]string{"accepted by the schema", "refused by the schema", "refused as YAML"}[v]
}

// judge decodes every YAML document of data, as the yaml-language-server
// does, and validates each against the schema.
func judge(s *jsonschema.Schema, data []byte) (verdict, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	docs := 0
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return yamlInvalid, err
		}
		docs++
		if err := s.Validate(jsonValue(doc)); err != nil {
			return schemaInvalid, err
		}
	}
	if docs == 0 {
		// A file of comments only is an empty (null) document.
		if err := s.Validate(nil); err != nil {
			return schemaInvalid, err
		}
	}
	return schemaValid, nil
}

// jsonValue turns decoded YAML into the values a JSON validator works on,
// the way an editor sees YAML: keys as text, timestamps as their text,
// numbers as JSON numbers.
func jsonValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonValue(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[keyText(k)] = jsonValue(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case int:
		return json.Number(strconv.Itoa(x))
	case uint64:
		return json.Number(strconv.FormatUint(x, 10))
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			// .inf and .nan: a number to the schema, whatever its value.
			return json.Number("1e999")
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	case time.Time:
		return x.Format(time.RFC3339Nano)
	default:
		return x
	}
}

func keyText(k any) string {
	switch x := k.(type) {
	case string:
		return x
	case nil:
		return "null"
	default:
		b, _ := json.Marshal(jsonValue(x))
		return strings.Trim(string(b), `"`)
	}
}

var wantPattern = regexp.MustCompile(`(?m)^# want: \d+:\d+ ([a-z-]+)$`)

// wantedRules returns the rule ids a fixture's `# want:` comments name.
func wantedRules(t *testing.T, data []byte) []string {
	t.Helper()
	var rules []string
	for _, m := range wantPattern.FindAllSubmatch(data, -1) {
		rules = append(rules, string(m[1]))
	}
	require.NotEmpty(t, rules, "an invalid fixture announces its problems")
	return rules
}

// fixtureFiles lists the machine files in dir, sorted; there must be some.
func fixtureFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		require.NoError(t, err)
		files = append(files, m...)
	}
	sort.Strings(files)
	require.NotEmpty(t, files)
	return files
}

func TestSchemaAcceptsEveryValidMachine(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	files := append(fixtureFiles(t, "testdata/valid"), fixtureFiles(t, "../../machines")...)
	for _, path := range files {
		_, err := parseFile(path)
		require.NoError(t, err, "%s is valid for the Go validator", path)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		v, err := judge(s, data)
		require.Equal(t, schemaValid, v, "%s: %v", path, err)
	}
}

func TestSchemaRefusesInvalidMachinesItCanSee(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	seen := map[string]bool{}
	for _, path := range fixtureFiles(t, "testdata/invalid") {
		base := filepath.Base(path)
		seen[base] = true
		_, err := parseFile(path)
		var verr *machine.ValidationError
		require.ErrorAs(t, err, &verr, "%s is invalid for the Go validator", path)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		rules := wantedRules(t, data)

		want := schemaInvalid
		switch {
		case slices.Contains(yamlRefuses, base):
			want = yamlInvalid
		case slices.Contains(schemaAccepts, base):
			want = schemaValid
			for _, r := range rules {
				require.Contains(t, beyondSchema, r, "%s is listed as accepted by the schema, but it breaks rule %s, which the schema can check", base, r)
			}
		}
		got, detail := judge(s, data)
		require.Equal(t, want, got, "%s (rules %v): %v", base, rules, detail)
	}
	for _, base := range append(slices.Clone(schemaAccepts), yamlRefuses...) {
		require.True(t, seen[base], "listed fixture %s does not exist", base)
	}
}

// TestSchemaRuleByRule judges files that each break one rule, so it is
// clear which rules the schema sees by itself (the fixtures above mostly
// break several at once).
func TestSchemaRuleByRule(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	const base = `version: 1
events: [GO]
states:
  INIT:
    on:
      GO: [{action: advance, state: WORK}]
  WORK:
    tasks: [job]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE:
    terminal: true
tasks:
  job:
    executor: lambda
    config: {name: fn}
`
	cases := []struct {
		rule    string
		replace [2]string // in base
		// blind marks what the schema cannot see: the file is valid to it.
		blind bool
	}{
		{machine.RuleVersion, [2]string{"version: 1", "version: 2"}, false},
		{machine.RuleRequired, [2]string{"events: [GO]\n", ""}, false},
		{machine.RuleUnknownKey, [2]string{"version: 1", "version: 1\nevent: []"}, false},
		{machine.RuleUnknownKey, [2]string{"terminal: true", "terminal: true\n    colour: blue"}, false},
		{machine.RuleType, [2]string{"  DONE:\n    terminal: true", "  DONE:\n    terminal: true\n  OTHER:\n    terminal: maybe"}, false},
		{machine.RuleType, [2]string{"tasks: [job]", "tasks: job"}, false},
		{machine.RuleEventName, [2]string{"events: [GO]", "events: [GO, go]"}, false},
		{machine.RuleDuplicateEvent, [2]string{"events: [GO]", "events: [GO, GO]"}, false},
		{machine.RuleStateName, [2]string{"  DONE:\n    terminal: true", "  DONE:\n    terminal: true\n  Other:\n    terminal: true"}, false},
		{machine.RuleMissingInit, [2]string{"INIT:", "START:"}, false},
		{machine.RuleAction, [2]string{"{action: advance, state: WORK}", "{action: jump, state: WORK}"}, false},
		{machine.RuleAdvanceTarget, [2]string{"{action: advance, state: WORK}", "{action: advance}"}, false},
		{machine.RuleDuplicateTask, [2]string{"tasks: [job]", "tasks: [job, job]"}, false},
		{machine.RuleTaskName, [2]string{"  job:\n", "  job:\n    executor: lambda\n    config: {name: fn}\n  \"\":\n"}, false},
		{machine.RuleExecutor, [2]string{"executor: lambda", "executor: docker"}, false},
		{machine.RuleUnknownKey, [2]string{"config: {name: fn}", "config: {name: fn, payload: {}}"}, false},
		{lambdainvoke.Rule, [2]string{"config: {name: fn}", "config: {name: \"\"}"}, false},
		{lambdainvoke.Rule, [2]string{"config: {name: fn}", "config: {args: {a: 1}}"}, false},
		{terraform.Rule, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: s3, bucket: b}, action: apply}"}, false},
		{terraform.Rule, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: local, location: tf}, action: show}"}, false},
		{terraform.Rule, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: local, location: tf}, action: apply, variables: {a: [1]}}"}, false},
		{machine.RuleRetry, [2]string{"config: {name: fn}", "config: {name: fn}\n    retry: {attempts: 0}"}, false},
		{machine.RuleTimeout, [2]string{"config: {name: fn}", "config: {name: fn}\n    timeoutSeconds: 0"}, false},
		{machine.RuleTimeout, [2]string{"config: {name: fn}", "config: {name: fn}\n    timeoutSeconds: 28801"}, false},
		{machine.RuleRunner, [2]string{"config: {name: fn}", "config: {name: fn}\n    runner: codebuild"}, false},
		{machine.RuleRunner, [2]string{"config: {name: fn}", "config: {name: fn}\n    runner: fargate"}, false},
		{machine.RuleRunner, [2]string{"config: {name: fn}", "config: {name: fn}\n    runner: satisfier\n    timeoutSeconds: 901"}, false},
		{machine.RuleTTL, [2]string{"  INIT:\n", "  INIT:\n    ttl: {after: 3d, event: GO}\n"}, false},
		{machine.RuleTTL, [2]string{"  INIT:\n", "  INIT:\n    ttl: {after: 1h, event: NEXT}\n"}, false},
		{machine.RuleTaskEvents, [2]string{"config: {name: fn}", "config: {name: fn}\n    events: {changes: GO}"}, false},
		{machine.RuleTaskEvents, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: local, location: tf}, action: plan}\n    events: {drift: GO}"}, false},
		{terraform.Rule, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: local, location: tf}, action: destroy, plan: job}"}, false},
		{machine.RuleApprovals, [2]string{"version: 1", "version: 1\napprovals: [NEXT]"}, false},
		{machine.RuleApprovals, [2]string{"version: 1", "version: 1\napprovals: [GO, GO]"}, false},
		// What a schema cannot see: cross-references, and sums of durations.
		{machine.RuleTaskEvents, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: local, location: tf}, action: plan}\n    events: {changes: GO}"}, true},
		{terraform.Rule, [2]string{"executor: lambda\n    config: {name: fn}", "executor: terraform\n    config: {source: {type: local, location: tf}, action: apply, plan: job}"}, true},
		{machine.RuleAdvanceTarget, [2]string{"state: DONE}", "state: DONNE}"}, true},
		{machine.RuleUnknownTask, [2]string{"tasks: [job]", "tasks: [jobb]"}, true},
		{machine.RuleUndeclaredEvent, [2]string{"GO: [{action: advance, state: WORK}]", "GO: [{action: advance, state: WORK}]\n      STOP: [{action: no-op}]"}, true},
		{machine.RuleTTL, [2]string{"  INIT:\n", "  INIT:\n    ttl: {after: 500ms, event: GO}\n"}, true},
	}
	_, err := machine.Parse("base", "base.yml", []byte(base), kinds.All)
	require.NoError(t, err)
	v, err := judge(s, []byte(base))
	require.Equal(t, schemaValid, v, "%v", err)
	for _, tc := range cases {
		src := strings.Replace(base, tc.replace[0], tc.replace[1], 1)
		require.NotEqual(t, base, src, "case %s %q does not apply", tc.rule, tc.replace[1])
		_, err := machine.Parse("case", "case.yml", []byte(src), kinds.All)
		var verr *machine.ValidationError
		require.ErrorAs(t, err, &verr, "case %s %q", tc.rule, tc.replace[1])
		var rules []string
		for _, p := range verr.Problems {
			rules = append(rules, p.Rule)
		}
		require.Equal(t, []string{tc.rule}, rules, "case %q breaks exactly one rule:\n%v", tc.replace[1], verr)

		want := schemaInvalid
		if tc.blind {
			require.Contains(t, beyondSchema, tc.rule)
			want = schemaValid
		}
		got, detail := judge(s, []byte(src))
		require.Equal(t, want, got, "case %s %q: %v", tc.rule, tc.replace[1], detail)
	}
}

func TestExampleMachinesNameTheSchema(t *testing.T) {
	t.Parallel()
	for _, path := range fixtureFiles(t, "../../machines") {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		first, _, _ := strings.Cut(string(data), "\n")
		require.Equal(t, "# yaml-language-server: $schema=./machine.schema.json", first,
			"%s starts with the modeline that points editors at the schema", path)
	}
}

// TestSchemaHoldsEachExecutorsFragment keeps the editors' schema in step with the executors: each
// registered kind's config definitions (its package's schema.json) stand in the file as they are,
// `executor` lists exactly the registered kinds, and a task of each kind must have a config that
// matches its definition. An executor added to internal/executor/kinds fails here until its
// fragment is copied into machines/machine.schema.json.
func TestSchemaHoldsEachExecutorsFragment(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(schemaPath)
	require.NoError(t, err)
	var doc struct {
		Definitions map[string]json.RawMessage `json:"definitions"`
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	var task struct {
		Properties struct {
			Executor struct {
				Enum []string `json:"enum"`
			} `json:"executor"`
		} `json:"properties"`
		AllOf []json.RawMessage `json:"allOf"`
	}
	require.NoError(t, json.Unmarshal(doc.Definitions["task"], &task))
	require.Equal(t, kinds.All.Names(), task.Properties.Executor.Enum, "`executor` lists the registered kinds, in order")
	// The config rules are the allOf entries whose `then` requires a config (others, such as the
	// runner's, are rules of their own).
	var configRules []json.RawMessage
	for _, rule := range task.AllOf {
		var r struct {
			Then struct {
				Required []string `json:"required"`
			} `json:"then"`
		}
		require.NoError(t, json.Unmarshal(rule, &r))
		if slices.Contains(r.Then.Required, "config") {
			configRules = append(configRules, rule)
		}
	}
	require.Len(t, configRules, len(kinds.All), "one config rule per kind")

	for i, k := range kinds.All {
		var fragment map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(k.Schema(), &fragment), "%s: its schema fragment is a JSON object", k.Name())
		config := k.Name() + "Config"
		require.Contains(t, fragment, config, "%s: the fragment defines %s", k.Name(), config)
		for name, def := range fragment {
			require.Contains(t, doc.Definitions, name, "%s: machine.schema.json defines %s", k.Name(), name)
			require.JSONEq(t, string(def), string(doc.Definitions[name]),
				"%s: definitions.%s in machine.schema.json is the fragment of its package, as it is", k.Name(), name)
		}
		want := fmt.Sprintf(`{"if": {"required": ["executor"], "properties": {"executor": {"const": %q}}},
			"then": {"required": ["config"], "properties": {"config": {"$ref": "#/definitions/%s"}}}}`, k.Name(), config)
		require.JSONEq(t, want, string(configRules[i]), "%s: a task of this kind needs a config matching %s", k.Name(), config)
	}
}
