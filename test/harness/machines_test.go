package harness_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/test/harness"
)

func TestLifecycleIsAValidMachineOfItsShape(t *testing.T) {
	t.Parallel()
	tasks := "  up: {executor: lambda, config: {name: up-fn}}\n  down: {executor: lambda, config: {name: down-fn}}\n"
	m, err := machine.Parse("full", "full.yml", []byte(harness.Lifecycle{Up: []string{"up"}, Down: []string{"down"},
		NoOps: []string{"ACCESS"}, DestroyWhileProvisioning: true, Tasks: tasks}.YAML()), kinds.All)
	require.NoError(t, err)
	require.Empty(t, m.Warnings)
	require.Equal(t, []string{"LAUNCH", "ACCESS", "DESTROY"}, m.Events)
	require.Equal(t, []string{"INIT", "PROVISION", "RUN", "TEARDOWN", "DESTROYED"}, m.StateOrder)
	require.Equal(t, "TEARDOWN", m.States["PROVISION"].On["DESTROY"][0].State)
	require.Equal(t, []string{"down"}, m.States["TEARDOWN"].Tasks)
	require.True(t, m.States["DESTROYED"].Terminal)

	m, err = machine.Parse("short", "short.yml", []byte(harness.Lifecycle{Up: []string{"up"}, Terminal: "GONE",
		Tasks: "  up: {executor: lambda, config: {name: up-fn}}\n"}.YAML()), kinds.All)
	require.NoError(t, err)
	require.Equal(t, []string{"INIT", "PROVISION", "RUN", "GONE"}, m.StateOrder, "no TEARDOWN without Down tasks")
	require.Equal(t, "GONE", m.States["RUN"].On["DESTROY"][0].State)
	require.False(t, m.States["PROVISION"].Handles("DESTROY"))
}

func TestTerraformTasksApplyAndDestroyOneSource(t *testing.T) {
	t.Parallel()
	m, err := machine.Parse("tf", "tf.yml", []byte(harness.Lifecycle{Up: []string{"infra"}, Down: []string{"teardown"},
		Tasks: harness.TerraformTasks("{type: local, location: basic}", "{greeting: hi}")}.YAML()), kinds.All)
	require.NoError(t, err)
	source := map[string]any{"type": "local", "location": "basic"}
	require.Equal(t, map[string]any{"source": source, "action": "apply", "variables": map[string]any{"greeting": "hi"}},
		m.Tasks["infra"].Config)
	require.Equal(t, map[string]any{"source": source, "action": "destroy"}, m.Tasks["teardown"].Config,
		"the variables are the apply's")
	require.Equal(t, "terraform", m.Tasks["teardown"].Executor)
}
