package stackseam_test

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/settings"
)

// envProblems compares the variables the construct sets on a function with what the function
// declares it reads: a variable the function does not read (a typo, or a name another function
// uses, like BUCKET for MACHINES_BUCKET), one only local mode reads, one Lambda itself sets, and
// one the function needs in a deployment that the construct leaves out are each a problem.
func envProblems(d *settings.Declared, env map[string]any) []string {
	var problems []string
	for name := range env {
		v, ok := d.Lookup(name)
		switch {
		case !ok:
			problems = append(problems, d.Function+": the construct sets "+name+", which the function does not read")
		case v.LocalOnly:
			problems = append(problems, d.Function+": the construct sets "+name+", which only local mode reads")
		case v.Runtime:
			problems = append(problems, d.Function+": the construct sets "+name+", which the Lambda runtime sets")
		}
	}
	for _, v := range d.Variables {
		if _, ok := env[v.Name]; v.Deployed && !ok {
			problems = append(problems, d.Function+": the construct does not set "+v.Name+", which the deployed function needs")
		}
	}
	sort.Strings(problems)
	return problems
}

func TestFunctionEnvironmentMatchesDeclaredVariables(t *testing.T) {
	s := synth(t)
	for _, stack := range []struct{ name, prefix string }{{"Default", def}, {"Embedded", emb}} {
		tpl := s.templates[stack.name]
		for _, fn := range []struct {
			path string
			vars *settings.Declared
		}{{"StateManager", settings.StateManager}, {"Satisfier", settings.Satisfier}} {
			env := tpl.res(t, stack.prefix+fn.path+"/Resource").Properties["Environment"].(map[string]any)["Variables"].(map[string]any)
			require.Empty(t, envProblems(fn.vars, env), "%s %s", stack.name, fn.path)
		}
	}
}

// The check itself fails on the mismatches it is for.
func TestEnvProblemsFindsMismatches(t *testing.T) {
	t.Parallel()
	env := map[string]any{}
	for _, v := range settings.StateManager.Variables {
		if v.Deployed {
			env[v.Name] = "x"
		}
	}
	require.Empty(t, envProblems(settings.StateManager, env))

	env["BUCKET"] = "the satisfier's name for it"
	env["WORKERS"] = "2"
	delete(env, "MACHINES_BUCKET")
	require.Equal(t, []string{
		"statemanager: the construct does not set MACHINES_BUCKET, which the deployed function needs",
		"statemanager: the construct sets BUCKET, which the function does not read",
		"statemanager: the construct sets WORKERS, which only local mode reads",
	}, envProblems(settings.StateManager, env))
}
