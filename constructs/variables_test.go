package stackseam_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/settings"
)

// The variables the construct sets on each function are what the function declares it reads
// (internal/settings): no unread, local-only or misnamed variable, and every one the deployed
// function needs.
func TestFunctionEnvironmentMatchesDeclaredVariables(t *testing.T) {
	s := synth(t)
	for _, stack := range stacks {
		tpl := s.templates[stack.name]
		for _, fn := range []struct {
			path string
			vars *settings.Declared
		}{{"StateManager", settings.StateManager}, {"Satisfier", settings.Satisfier}, {"Query", settings.Query}} {
			env := tpl.res(t, stack.prefix+fn.path+"/Resource").Properties["Environment"].(map[string]any)["Variables"].(map[string]any)
			require.Empty(t, fn.vars.CheckDeployed(slices.Collect(maps.Keys(env))), "%s %s", stack.name, fn.path)
		}
	}
}
