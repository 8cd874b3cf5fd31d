package machine_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/machine"
)

// parseLimit bounds one machine.Parse in the fuzz target; a file that takes longer
// is reported as a hang (the fuzzer itself has no per-input time limit).
const parseLimit = 5 * time.Second

// knownRules are the rule ids of rules.go and of the executors' configs; every problem must
// carry one.
var knownRules = map[string]bool{
	machine.RuleYAML: true, machine.RuleAliases: true, machine.RuleNextCycle: true, machine.RuleEmpty: true, machine.RuleMachineName: true, machine.RuleType: true, machine.RuleUnknownKey: true,
	machine.RuleDuplicateKey: true, machine.RuleRequired: true, machine.RuleVersion: true, machine.RuleEventName: true, machine.RuleDuplicateEvent: true,
	machine.RuleStateName: true, machine.RuleDuplicateState: true, machine.RuleMissingInit: true, machine.RuleNoTerminal: true,
	machine.RuleUndeclaredEvent: true, machine.RuleAction: true, machine.RuleAdvanceTarget: true, machine.RuleUnknownTask: true,
	machine.RuleDuplicateTask: true, machine.RuleNextRequired: true, machine.RuleTaskName: true, machine.RuleExecutor: true,
	terraform.Rule: true, lambdainvoke.Rule: true, machine.RuleRetry: true, machine.RuleTimeout: true, machine.RuleRunner: true, machine.RuleTTL: true,
	machine.RuleTaskEvents: true, machine.RuleApprovals: true,
	machine.RuleUnreachable: true, machine.RuleImplicitNext: true, machine.RuleUnusedTask: true, machine.RuleUnusedEvent: true, machine.RuleMultipleAdvance: true,
}

var fuzzNamePattern = regexp.MustCompile(`^[A-Z0-9-]+$`)

// machine.FuzzParse feeds arbitrary files to the parser and validator, seeded with
// every fixture and example machine. Whatever the input: no panic, no hang;
// a refusal is a *machine.ValidationError whose every problem names a known rule and
// says what is wrong; an accepted machine keeps the promises machine.Parse makes
// (an INIT state, a terminal state, advances to existing states, defined
// tasks); and parsing is deterministic.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*", "testdata/invalid/*", "../../machines/*.yml", "../../test/testdata/machines/*.yml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	// Aliased states, `on` lists and merged mappings: the shapes that once
	// expanded without bound (see cost_test.go), small enough to mutate.
	f.Add([]byte(aliasedStates(3, 4)))
	f.Add([]byte(billionLaughs()))
	f.Add([]byte(mergedMappings()))
	f.Add([]byte(header + "x-l: &l [{action: no-op}]\nx-s: &s {on: {GO: *l, STOP: *l}}\n" +
		"states:\n  INIT: {<<: *s, on: {GO: [{action: advance, state: A}]}}\n  A: *s\n  B: {<<: [*s, {terminal: true}]}\n"))
	f.Add([]byte(header + "x-s: &s {tasks: [t], on: {NEXT: [{action: advance, state: B}]}}\n" +
		"states:\n  INIT: {on: {GO: [{action: advance, state: A}]}}\n  A: *s\n  B: {<<: *s, on: {NEXT: [{action: advance, state: A}]}}\n" +
		"  DONE: {terminal: true}\ntasks: {t: {executor: lambda, config: {name: f}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseWithin(t, data)
		if err != nil {
			var verr *machine.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("refusal is a %T, not a *ValidationError: %v", err, err)
			}
			if len(verr.Problems) == 0 || verr.Error() == "" {
				t.Fatalf("refusal without a reason: %#v", verr)
			}
			for _, p := range verr.Problems {
				if !knownRules[p.Rule] || p.Message == "" || p.File != "fuzz.yml" || p.Line < 0 || p.Column < 0 {
					t.Fatalf("problem without a known rule, a message or a place: %#v", p)
				}
			}
			_, again := parseWithin(t, data)
			if again == nil || again.Error() != err.Error() {
				t.Fatalf("a second parse disagrees: %v, then %v", err, again)
			}
			return
		}
		checkMachine(t, m)
		for _, w := range m.Warnings {
			if !knownRules[w.Rule] || w.Message == "" {
				t.Fatalf("warning without a known rule or a message: %#v", w)
			}
		}
	})
}

func parseWithin(t *testing.T, data []byte) (*machine.Machine, error) {
	t.Helper()
	type result struct {
		m   *machine.Machine
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := machine.Parse("fuzz", "fuzz.yml", data, kinds.All)
		done <- result{m, err}
	}()
	select {
	case r := <-done:
		return r.m, r.err
	case <-time.After(parseLimit):
		t.Fatalf("Parse did not return within %s on %d bytes", parseLimit, len(data))
		return nil, nil
	}
}

// warned reports whether m carries a warning of rule.
func warned(m *machine.Machine, rule string) bool {
	for _, w := range m.Warnings {
		if w.Rule == rule {
			return true
		}
	}
	return false
}

// checkMachine checks the promises an accepted machine makes to the engine.
func checkMachine(t *testing.T, m *machine.Machine) {
	t.Helper()
	if m == nil || m.Name != "fuzz" {
		t.Fatalf("accepted without a machine: %#v", m)
	}
	if m.States[machine.StateInit] == nil {
		t.Fatal("accepted without an INIT state")
	}
	terminal := false
	for name, st := range m.States {
		if st == nil || st.Name != name || !fuzzNamePattern.MatchString(name) {
			t.Fatalf("state %q is malformed: %#v", name, st)
		}
		terminal = terminal || st.Terminal
		for event, actions := range st.On {
			if !m.Declares(event) {
				t.Fatalf("state %s handles undeclared event %s", name, event)
			}
			for _, a := range actions {
				switch a.Kind {
				case machine.ActionAdvance:
					if m.States[a.State] == nil {
						t.Fatalf("state %s advances to missing state %q", name, a.State)
					}
				case machine.ActionNoop:
				default:
					t.Fatalf("state %s has action kind %q", name, a.Kind)
				}
			}
		}
		for _, task := range st.Tasks {
			if m.Tasks[task] == nil {
				t.Fatalf("state %s lists undefined task %q", name, task)
			}
		}
		if len(st.Tasks) > 0 && !st.Terminal && !st.Handles(machine.EventNext) && !warned(m, machine.RuleNextRequired) {
			t.Fatalf("state %s has tasks and no NEXT, without a warning", name)
		}
	}
	if !terminal && !warned(m, machine.RuleNoTerminal) {
		t.Fatal("accepted without a terminal state, without a warning")
	}
	for name, task := range m.Tasks {
		if task == nil || task.Name != name || (task.Executor != "terraform" && task.Executor != "lambda") {
			t.Fatalf("task %q is malformed: %#v", name, task)
		}
	}
	if len(m.StateOrder) != len(m.States) {
		t.Fatalf("StateOrder has %d states, States %d", len(m.StateOrder), len(m.States))
	}
	// No state NEXT alone drives round for ever: follow the last NEXT advance
	// from each state with tasks; it must end within len(States) steps.
	for start := range m.States {
		cur := start
		for step := 0; ; step++ {
			st := m.States[cur]
			next := ""
			if st != nil && !st.Terminal && len(st.Tasks) > 0 {
				for _, a := range st.On[machine.EventNext] {
					if a.Kind == machine.ActionAdvance {
						next = a.State
					}
				}
			}
			if next == "" {
				break
			}
			if step > len(m.States) {
				t.Fatalf("accepted with a NEXT-only cycle through %s", start)
			}
			cur = next
		}
	}
	if len(m.Hash) != 64 || len(m.Body) == 0 {
		t.Fatalf("accepted without its version: hash %q, %d bytes", m.Hash, len(m.Body))
	}
}
