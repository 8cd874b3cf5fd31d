package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGraphOfTheExampleMachines(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"feature-env", "qa-env", "reviewed-env"} {
		code, stdout, stderr := runCLI(t, "graph", "--dir", "../../machines", name)
		require.Equal(t, exitOK, code, stderr)
		golden(t, "graph/"+name+".mmd", stdout)

		code, stdout, stderr = runCLI(t, "graph", "../../machines/"+name+".yml", "--format", "dot")
		require.Equal(t, exitOK, code, stderr)
		golden(t, "graph/"+name+".dot", stdout)

		code, stdout, stderr = runCLI(t, "graph", "../../machines/"+name+".yml", "--format", "svg")
		require.Equal(t, exitOK, code, stderr)
		require.True(t, strings.HasPrefix(stdout, "<?xml"), "an SVG document")
		require.Contains(t, stdout, "<svg")
		require.Contains(t, stdout, ">INIT</text>")
	}
}

func TestGraphDrawsEveryKindOfEdgeAndNode(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, "graph", "../../internal/machine/testdata/valid/additions.yml")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, `flowchart LR
  %% stackseam machine additions: edges are events; dashed edges are NEXT (all tasks of the state done)
  s0("INIT")
  s1("WORK<br/>tasks: job<br/>idle 1h30m → EXPIRE")
  s2(["DONE"])
  s0 -->|"START"| s1
  s1 -->|"EXPIRE"| s2
  s1 -.->|"NEXT"| s2
  classDef initial stroke-width:3px
  classDef terminal stroke-width:3px,stroke-dasharray:0
  class s0 initial
  class s2 terminal
`, stdout)

	// Several events taking the same way share one edge; quotes are escaped.
	code, stdout, _ = runCLI(t, "graph", "--format", "dot", "../../internal/machine/testdata/valid/warnings.yml")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, `"INIT" -> "END" [label="GO"];`)
	require.Contains(t, stdout, `"A" [label="A\nno-op: GO"];`)
	require.Contains(t, stdout, `"ORPHAN" -> "END" [label="GO"];`)
}

func TestGraphProblems(t *testing.T) {
	t.Parallel()
	runFailing(t, exitUsage, "name one machine", "graph")

	runFailing(t, exitUsage, `unknown format "png"`, "graph", "--format", "png", "feature-env")

	runFailing(t, exitFail, "machine nope: no nope.yml or nope.yaml in ../../machines", "graph", "--dir", "../../machines", "nope")

	stderr := runFailing(t, exitFail, "is not a valid machine:", "graph", "../../internal/machine/testdata/invalid/advance-target.yml")
	require.Contains(t, stderr, "[advance-target]")
}

// The README shows the example machines' graphs; they must be what graph
// prints today.
func TestReadmeShowsTheCurrentGraphs(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	for _, name := range []string{"feature-env", "qa-env", "reviewed-env"} {
		code, stdout, stderr := runCLI(t, "graph", "--dir", "../../machines", name)
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, string(readme), "```mermaid\n"+stdout+"```\n",
			"README.md shows the graph of %s as `stackseam graph %s` prints it", name, name)
	}
	history, err := os.ReadFile("testdata/history-feature-123.txt")
	require.NoError(t, err)
	require.Contains(t, string(readme), "$ stackseam history feature-123\n"+string(history)+"```\n",
		"README.md shows the history example as the golden file has it")
}
