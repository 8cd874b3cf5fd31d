package machine_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stretchr/testify/require"
)

// machine.TestWorstCaseFilesCostWhatTheyWeigh builds files up to the catalog's size
// limit that try to make the parser work or allocate far beyond their size
// (aliases and merges expanding many times, quadratic "did you mean" searches,
// problem lists quoting huge names) and checks each gets its answer with the
// right rule. The time and memory of each parse are logged, not asserted:
// tests do not time things on a shared machine.
func TestWorstCaseFilesCostWhatTheyWeigh(t *testing.T) {
	cases := []struct {
		name string
		data string
		// rule is the first problem's rule; "" means the file is valid.
		rule string
		// more is set when the report must say it left problems out.
		more bool
	}{
		{name: "billion laughs", data: billionLaughs(), rule: machine.RuleAliases},
		{name: "one big state aliased under every state", data: aliasedStates(5000, 20000), rule: machine.RuleAliases},
		{name: "a big on list aliased under every event", data: aliasedOnLists(), rule: machine.RuleAliases},
		{name: "merges of merges", data: mergedMappings(), rule: machine.RuleAliases},
		{name: "aliased states within the budget", data: aliasedStates(20, 900), rule: ""},
		{name: "no aliases, many states", data: manyStates(), rule: ""},
		{name: "undeclared events with long names", data: undeclaredEvents(), rule: machine.RuleUndeclaredEvent, more: true},
		{name: "one huge unknown key aliased everywhere", data: hugeUnknownKey(5000), rule: machine.RuleAliases},
		{name: "one huge unknown key", data: hugeUnknownKey(1), rule: machine.RuleUnknownKey},
		{name: "deep nesting", data: "version: 1\nevents: []\nstates: " + strings.Repeat("[", 200_000), rule: machine.RuleYAML},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.LessOrEqual(t, len(tc.data), machine.MaxFileSize, "the file must be within the catalog's limit")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			m, err := machine.Parse("worst", "worst.yml", []byte(tc.data), kinds.All)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			t.Logf("%d bytes: parsed in %v, allocated %.1f MB, heap grew to %.1f MB",
				len(tc.data), took, float64(after.TotalAlloc-before.TotalAlloc)/1e6, float64(after.HeapAlloc)/1e6)
			if tc.rule == "" {
				require.NoError(t, err)
				require.NotNil(t, m)
				return
			}
			var verr *machine.ValidationError
			require.True(t, errors.As(err, &verr), "want a *machine.ValidationError, got %v", err)
			require.Equal(t, tc.rule, verr.Problems[0].Rule, verr.Problems[0].String())
			require.Greater(t, verr.Problems[0].Line, 0)
			require.LessOrEqual(t, len(verr.Problems), machine.MaxProblems)
			for _, p := range verr.Problems {
				require.LessOrEqual(t, len(p.Message), machine.MaxMessage+len("…"))
			}
			if tc.more {
				require.Positive(t, verr.More)
				require.Contains(t, verr.Error(), fmt.Sprintf("and %d more problems", verr.More))
			}
		})
	}
}

const header = "version: 1\nevents: [GO, STOP]\n"

// billionLaughs nests ten aliases of the level below, nine levels deep.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString(header + "x-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "x-%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	b.WriteString("states:\n  INIT: {terminal: true, tasks: *l9}\n")
	return b.String()
}

// aliasedStates anchors a state whose `on` lists `actions` advances and
// gives `states` states that state, by alias.
func aliasedStates(actions, states int) string {
	return anchoredStates("x-state: &s\n  on:\n    GO:\n", "      - {action: advance, state: DONE}\n", actions,
		"  S%d: *s\n", states)
}

// aliasedOnLists anchors one long action list and hands it to every event
// of every state.
func aliasedOnLists() string {
	return anchoredStates("x-list: &l\n", "  - {action: no-op}\n", 3000, "  S%d: {on: {GO: *l, STOP: *l}}\n", 20000)
}

// anchoredStates is a file whose anchor (the line anchor, then item repeated items times) the
// states S0… (stateLine, formatted with each one's number) alias, beside INIT and DONE.
func anchoredStates(anchor, item string, items int, stateLine string, states int) string {
	var b strings.Builder
	b.WriteString(header + anchor + strings.Repeat(item, items))
	b.WriteString("states:\n  INIT: {on: {GO: [{action: advance, state: DONE}]}}\n  DONE: {terminal: true}\n")
	for i := 0; i < states; i++ {
		fmt.Fprintf(&b, stateLine, i)
	}
	return b.String()
}

// mergedMappings merges each level's mapping into the next twice over, and
// every state merges the last level.
func mergedMappings() string {
	var b strings.Builder
	b.WriteString(header + "x-m0: &m0 {")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, "k%d: v, ", i)
	}
	b.WriteString("z: v}\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "x-m%d: &m%d {<<: [*m%d, *m%d], k%d: v}\n", i, i, i-1, i-1, i)
	}
	b.WriteString("states:\n  INIT: {<<: *m29, terminal: true}\n")
	return b.String()
}

// manyStates is a valid file near the size limit with no aliases at all.
func manyStates() string {
	var b strings.Builder
	b.WriteString(header + "states:\n  INIT: {on: {GO: [{action: advance, state: S0}]}}\n  DONE: {terminal: true}\n")
	for i := 0; b.Len() < machine.MaxFileSize-200; i++ {
		fmt.Fprintf(&b, "  S%d: {on: {GO: [{action: advance, state: S%d}], STOP: [{action: advance, state: DONE}]}}\n", i, i+1)
	}
	b.WriteString("  LAST: {terminal: true}\n")
	// The last state advances to one that does not exist; point it at LAST.
	s := b.String()
	i := strings.LastIndex(s, "state: S")
	j := i + strings.Index(s[i:], "}")
	return s[:i] + "state: LAST" + s[j:]
}

// undeclaredEvents declares thousands of long event names and handles
// thousands of others, each a near miss of a declared one: every `on` entry
// is a problem that would search every declared name for a suggestion.
func undeclaredEvents() string {
	var b strings.Builder
	b.WriteString("version: 1\nevents:\n")
	long := strings.Repeat("A", 60)
	for i := 0; i < 6000; i++ {
		fmt.Fprintf(&b, "  - %s%05d\n", long, i)
	}
	b.WriteString("states:\n  INIT:\n    terminal: true\n    on:\n")
	for i := 0; b.Len() < machine.MaxFileSize-100; i++ {
		fmt.Fprintf(&b, "      %s%05dX: []\n", long, i)
	}
	return b.String()
}

// hugeUnknownKey anchors a mapping whose only key is 400 KB long and is not
// a state key, and uses it for n states.
func hugeUnknownKey(n int) string {
	var b strings.Builder
	// An explicit key (`? key`): YAML limits implicit keys to 1024 characters.
	b.WriteString(header + "x-bad: &bad\n  ? " + strings.Repeat("k", 400_000) + "\n  : 1\n")
	b.WriteString("states:\n  INIT: {terminal: true}\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  S%d: *bad\n", i)
	}
	return b.String()
}
