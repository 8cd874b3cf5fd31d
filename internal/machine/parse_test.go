package machine_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stretchr/testify/require"
)

var expectPattern = regexp.MustCompile(`(?m)^# (want|warn): (\d+:\d+ [a-z-]+)$`)

// expected returns the "LINE:COL RULE" lines a fixture's comments announce.
func expected(t *testing.T, path, kind string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	out := []string{}
	for _, m := range expectPattern.FindAllStringSubmatch(string(data), -1) {
		if m[1] == kind {
			out = append(out, m[2])
		}
	}
	return out
}

func summarize(ps []machine.Problem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%d:%d %s", p.Line, p.Column, p.Rule))
	}
	return out
}

func TestValidFixtures(t *testing.T) {
	t.Parallel()
	for _, path := range fixtureFiles(t, "testdata/valid") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			m, err := parseFile(path)
			require.NoError(t, err)
			require.Equal(t, expected(t, path, "warn"), summarize(m.Warnings))
			for _, w := range m.Warnings {
				require.Equal(t, path, w.File)
				require.NotEmpty(t, w.Message)
			}
			// Whatever a task's config holds must survive the trip to the
			// satisfier as JSON.
			for _, task := range m.Tasks {
				_, err := json.Marshal(task.Config)
				require.NoError(t, err, task.Name)
			}
		})
	}
}

func TestInvalidFixtures(t *testing.T) {
	t.Parallel()
	rulesSeen := map[string]bool{}
	for _, path := range fixtureFiles(t, "testdata/invalid") {
		want := expected(t, path, "want")
		require.NotEmpty(t, want, "%s announces no problems", path)
		for _, w := range want {
			rulesSeen[strings.Fields(w)[1]] = true
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			m, err := parseFile(path)
			require.Nil(t, m)
			var verr *machine.ValidationError
			require.ErrorAs(t, err, &verr)
			require.Equal(t, path, verr.File)
			require.Equal(t, want, summarize(verr.Problems))
			for _, p := range verr.Problems {
				require.Equal(t, path, p.File)
				require.NotEmpty(t, p.Message)
			}
		})
	}
	// Every error rule has at least one fixture.
	for _, rule := range []string{
		machine.RuleYAML, machine.RuleEmpty, machine.RuleMachineName, machine.RuleType, machine.RuleUnknownKey, machine.RuleDuplicateKey,
		machine.RuleRequired, machine.RuleVersion, machine.RuleEventName, machine.RuleDuplicateEvent, machine.RuleStateName,
		machine.RuleDuplicateState, machine.RuleMissingInit, machine.RuleAliases, machine.RuleNextCycle, machine.RuleUndeclaredEvent, machine.RuleAction,
		machine.RuleAdvanceTarget, machine.RuleUnknownTask, machine.RuleDuplicateTask, machine.RuleTaskName,
		machine.RuleExecutor, terraform.Rule, lambdainvoke.Rule, machine.RuleRetry, machine.RuleTimeout, machine.RuleRunner, machine.RuleTTL,
		machine.RuleTaskEvents, machine.RuleApprovals,
	} {
		require.True(t, rulesSeen[rule], "no invalid fixture covers rule %s", rule)
	}
}

func TestParseEmptyFile(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", "  \n\n\t\n"} {
		_, err := machine.Parse("empty", "empty.yml", []byte(data), kinds.All)
		var verr *machine.ValidationError
		require.ErrorAs(t, err, &verr)
		require.Equal(t, []string{"1:1 empty"}, summarize(verr.Problems))
	}
}

func TestValidationErrorPrintsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := parseFile("testdata/invalid/all-at-once.yml")
	var verr *machine.ValidationError
	require.ErrorAs(t, err, &verr)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(verr.Problems))
	require.Greater(t, len(lines), 5)
	require.Equal(t, `testdata/invalid/all-at-once.yml:2:10: unsupported version "3": this is version 1 of the machine format (write 1 or 1.0) [version]`, lines[0])
	for i, p := range verr.Problems {
		require.Equal(t, p.String(), lines[i])
	}
}

func TestParseCloudSeamSample(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/cloudseam-sample.yml")
	require.NoError(t, err)
	require.Equal(t, "cloudseam-sample", m.Name)
	require.Equal(t, "testdata/valid/cloudseam-sample.yml", m.Source)
	require.Equal(t, "1", m.Version)
	require.Equal(t, []string{"LAUNCH", "ACCESS", "DESTROY"}, m.Events)
	require.Equal(t, []string{"INIT", "PROVISION", "RUN", "DESTROY"}, m.StateOrder)
	// The merged listeners sit where the << key was, after NEXT.
	prov := m.States["PROVISION"]
	require.Equal(t, []string{"create-files"}, prov.Tasks)
	require.Equal(t, map[string][]machine.Action{
		"NEXT":    {{Kind: machine.ActionAdvance, State: "RUN"}},
		"ACCESS":  {{Kind: machine.ActionNoop}},
		"DESTROY": {{Kind: machine.ActionAdvance, State: "DESTROY"}},
	}, prov.On)
	require.Equal(t, prov.On["DESTROY"], m.States["RUN"].On["DESTROY"])
	require.True(t, m.States["DESTROY"].Terminal)
	require.False(t, m.States["RUN"].Terminal)
	require.True(t, m.Declares("NEXT"))
	require.True(t, m.Declares("ACCESS"))
	require.False(t, m.Declares("LAUNCHED"))
	require.Equal(t, &machine.Task{
		Name:     "create-files",
		Executor: terraform.Name,
		Config: map[string]any{
			"source": map[string]any{"type": "local", "location": "samples/tf/files.tf"},
			"action": "apply",
		},
		// The state's path, and CloudSeam's for a local source, which a first run adopts.
		StatePaths: []string{"samples/tf/files.tf", "undefined"},
	}, m.Tasks["create-files"])
}

func TestParseVersionOnePointZero(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/cloudseam-docs.yml")
	require.NoError(t, err)
	require.Equal(t, "1.0", m.Version)
	require.Equal(t, map[string]any{"desired_capacity": 0},
		m.Tasks["teardown-machines"].Config["variables"])
	// A terminal state with tasks needs no NEXT.
	require.True(t, m.States["TEARDOWN"].Terminal)
	require.False(t, m.States["TEARDOWN"].Handles(machine.EventNext))
}

func TestParseAnchorsAndMergeKeys(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/anchors.yml")
	require.NoError(t, err)
	require.Equal(t, "1", m.Version, "a quoted version is accepted as written")
	require.Equal(t, []string{"GO", "STOP"}, m.Events, "an alias as a list item")
	require.Equal(t, []machine.Action{{Kind: machine.ActionAdvance, State: "RUN"}}, m.States["INIT"].On["GO"], "an alias as an action list")

	run := m.States["RUN"]
	require.Equal(t, []string{"work", "other"}, run.Tasks)
	// The explicit `on` replaces the merged one as a whole; its own merge
	// key brings STOP.
	require.Equal(t, map[string][]machine.Action{
		"NEXT": {{Kind: machine.ActionAdvance, State: "IDLE"}},
		"STOP": {{Kind: machine.ActionAdvance, State: "DONE"}},
	}, run.On)
	require.Equal(t, map[string][]machine.Action{"STOP": {{Kind: machine.ActionAdvance, State: "DONE"}}}, m.States["IDLE"].On,
		"an alias as a whole state")

	work := m.Tasks["work"]
	require.Equal(t, lambdainvoke.Name, work.Executor)
	require.Equal(t, 60, work.TimeoutSeconds)
	require.Equal(t, map[string]any{
		"name": "base-fn", // earlier mappings of a merge list win
		"args": map[string]any{"region": "eu-west-1", "size": 2},
	}, work.Config)

	other := m.Tasks["other"]
	require.Equal(t, 5, other.TimeoutSeconds, "explicit keys override merged ones")
	require.Equal(t, map[string]any{
		"name": "base-fn",
		"args": map[string]any{"region": "eu-west-1", "size": 1},
	}, other.Config)
}

func TestParseAliasKeys(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/alias-keys.yml")
	require.NoError(t, err)
	require.Equal(t, []string{"INIT", "DONE"}, m.StateOrder)
	require.Equal(t, []machine.Action{{Kind: machine.ActionAdvance, State: "DONE"}}, m.States["INIT"].On["GO"])
}

func TestParseAdditions(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/additions.yml")
	require.NoError(t, err)
	require.Equal(t, &machine.TTL{AfterSeconds: 5400, Event: "EXPIRE"}, m.States["WORK"].TTL)
	require.Nil(t, m.States["INIT"].TTL)
	job := m.Tasks["job"]
	require.Equal(t, &machine.Retry{Attempts: 3, BackoffSeconds: 0}, job.Retry)
	require.Equal(t, 900, job.TimeoutSeconds)
	require.Nil(t, m.Tasks["job"].Config["args"])
}

func TestParseConfigToJSONValues(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/config-values.yaml")
	require.NoError(t, err)
	require.Equal(t, "config-values", m.Name, "the .yaml extension is accepted")
	require.Equal(t, map[string]any{
		"name": "fn",
		"args": map[string]any{
			"text":    "hello",
			"count":   3,
			"ratio":   0.5,
			"enabled": true,
			"nothing": nil,
			"list":    []any{1, "two", 3.0, false},
			"nested":  map[string]any{"a": map[string]any{"b": []any{"x"}}},
			"date":    "2024-01-02",
			"1":       "numeric key",
		},
	}, m.Tasks["call"].Config)
	require.Equal(t, map[string]any{"name": "app", "replicas": 2, "cpu": 0.25, "public": false},
		m.Tasks["apply"].Config["variables"])
}

func TestParseAliasExpansionIsBounded(t *testing.T) {
	t.Parallel()
	// Each level doubles the nodes: 2^30 without a bound.
	var b strings.Builder
	b.WriteString("version: 1\nevents: []\nx-0: &a0 [x, x]\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	b.WriteString("states:\n  INIT: {terminal: true, tasks: [t]}\n")
	b.WriteString("tasks:\n  t:\n    executor: lambda\n    config: {name: f, args: {bomb: *a30}}\n")
	_, err := machine.Parse("bomb", "bomb.yml", []byte(b.String()), kinds.All)
	var verr *machine.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, machine.RuleAliases, verr.Problems[0].Rule)
	require.Contains(t, verr.Problems[0].Message, "expands to more than")
}

func TestParseMachineName(t *testing.T) {
	t.Parallel()
	data := []byte("version: 1\nevents: []\nstates: {INIT: {terminal: true}}\n")
	for _, name := range []string{"feature-env", "a", "A.b_c-9"} {
		_, err := machine.Parse(name, name+".yml", data, kinds.All)
		require.NoError(t, err, name)
	}
	// The bucket's own prefixes: a machine's Terraform state lives under `<machine>/`, so a
	// machine called fences or plans would write state over other stacks' fences or plans.
	for _, name := range []string{"", "has space", "-dash", strings.Repeat("x", 129), "fences", "plans", "logs", "machines", "handovers"} {
		_, err := machine.Parse(name, "x.yml", data, kinds.All)
		var verr *machine.ValidationError
		require.ErrorAs(t, err, &verr, name)
		require.Equal(t, []string{"1:1 machine-name"}, summarize(verr.Problems))
	}
}

// A task name is one segment of the keys of its plans and logs (`plans/<machine>/<stackId>/<task>.tfplan`):
// stack ids hold '/', so a '/' in a task name would give stack a's task b/plan and stack a/b's
// task plan one key.
func TestTaskNamesHoldNoSlash(t *testing.T) {
	t.Parallel()
	data := []byte("version: 1\nevents: []\nstates: {INIT: {terminal: true, tasks: [b/plan]}}\n" +
		"tasks: {b/plan: {executor: lambda, config: {name: f}}}\n")
	_, err := machine.Parse("m", "m.yml", data, kinds.All)
	var verr *machine.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, []string{"4:9 task-name"}, summarize(verr.Problems))
}

func TestNameFromFile(t *testing.T) {
	t.Parallel()
	for file, want := range map[string]string{
		"feature-env.yml":       "feature-env",
		"/x/y/qa.yaml":          "qa",
		"machines/a.b.yml":      "a.b",
		"s3://bucket/m/x.yml":   "x",
		"noext":                 "",
		".yml":                  "",
		"feature-env.yml.orig":  "",
		"feature-env.YML":       "",
		"deep/feature-env.json": "",
	} {
		got, ok := machine.NameFromFile(file)
		require.Equal(t, want, got, file)
		require.Equal(t, want != "", ok, file)
	}
}

func TestExampleMachines(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"feature-env", "qa-env"} {
		m, err := parseFile(filepath.Join("..", "..", "machines", name+".yml"))
		require.NoError(t, err, name)
		require.Empty(t, m.Warnings, name)
	}

	m, err := parseFile("../../machines/feature-env.yml")
	require.NoError(t, err)
	require.Equal(t, []string{"INIT", "PROVISION", "RUN", "DEPROVISION", "DESTROYED"}, m.StateOrder)
	require.Equal(t, []machine.Action{{Kind: machine.ActionAdvance, State: "PROVISION"}}, m.States["INIT"].On["LAUNCH"])
	require.Equal(t, []string{"provision-infra", "seed-database"}, m.States["PROVISION"].Tasks)
	require.Equal(t, []machine.Action{{Kind: machine.ActionAdvance, State: "RUN"}}, m.States["PROVISION"].On["NEXT"])
	require.Equal(t, []machine.Action{{Kind: machine.ActionNoop}}, m.States["RUN"].On["ACCESS"])
	require.Equal(t, []machine.Action{{Kind: machine.ActionAdvance, State: "DEPROVISION"}}, m.States["RUN"].On["DESTROY"])
	require.Equal(t, []string{"destroy-infra"}, m.States["DEPROVISION"].Tasks)
	require.Equal(t, []machine.Action{{Kind: machine.ActionAdvance, State: "DESTROYED"}}, m.States["DEPROVISION"].On["NEXT"])
	require.True(t, m.States["DESTROYED"].Terminal)

	source := map[string]any{"type": "s3", "bucket": "my-company-terraform-sources", "key": "feature-env/"}
	require.Equal(t, terraform.Name, m.Tasks["provision-infra"].Executor)
	require.Equal(t, source, m.Tasks["provision-infra"].Config["source"])
	require.Equal(t, "apply", m.Tasks["provision-infra"].Config["action"])
	require.Equal(t, source, m.Tasks["destroy-infra"].Config["source"])
	require.Equal(t, "destroy", m.Tasks["destroy-infra"].Config["action"])
	require.Equal(t, lambdainvoke.Name, m.Tasks["seed-database"].Executor)
}

// parseFile parses the machine file at path, named after the file, as a loader would.
func parseFile(path string) (*machine.Machine, error) {
	name, _ := machine.NameFromFile(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return machine.Parse(name, path, data, kinds.All)
}

// A task's runner reaches the Task, and with it the task message; without one, a terraform task's
// timeoutSeconds decides where it runs.
func TestRunnerIsRead(t *testing.T) {
	t.Parallel()
	m, err := parseFile("testdata/valid/runner.yml")
	require.NoError(t, err)
	onCodeBuild := map[string]bool{}
	for name, task := range m.Tasks {
		onCodeBuild[name] = task.Spec().OnCodeBuild()
	}
	require.Equal(t, "codebuild", m.Tasks["long-apply"].Runner)
	require.Equal(t, "", m.Tasks["by-timeout"].Runner)
	require.Equal(t, map[string]bool{"long-apply": true, "by-timeout": true, "quick": false}, onCodeBuild)
}

// A plan task owns the metadata keys of its summary ("<task>."); with task names that are dotted
// prefixes of each other the longest name owns the key, so each task can still write its own.
func TestSummaryOwner(t *testing.T) {
	t.Parallel()
	data := []byte(`version: 1
events: []
states: {INIT: {terminal: true}}
tasks:
  plan: {executor: terraform, config: {source: {type: s3, bucket: b, key: k}, action: plan}}
  plan.b: {executor: terraform, config: {source: {type: s3, bucket: b, key: k2}, action: drift}}
  apply: {executor: terraform, config: {source: {type: s3, bucket: b, key: k}, action: apply}}
`)
	m, err := machine.Parse("m", "m.yml", data, kinds.All)
	require.NoError(t, err)
	for key, want := range map[string]string{
		"plan.add": "plan", "plan.b.add": "plan.b", "plan.bx": "plan", "apply.x": "", "plan": "", "planner.x": "",
	} {
		require.Equal(t, want, m.SummaryOwner(key), key)
	}
}
