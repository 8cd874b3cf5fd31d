package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// metadataMachine applies and destroys the basic fixture, a local source, and lets ACCESS change
// metadata in RUN.
var metadataMachine = harness.Lifecycle{
	Up: []string{"infra"}, Down: []string{"teardown"}, NoOps: []string{"ACCESS"},
	Tasks: `
  infra:
    executor: terraform
    config:
      source: {type: local, location: basic}
      action: apply
  teardown:
    executor: terraform
    config:
      source: {type: local, location: basic}
      action: destroy
`,
}.YAML()

// TestMetadataCannotBreakTerraform: metadata keys the configuration does not declare — one no
// Terraform variable can be named after among them — reach neither apply nor destroy, and are
// named (never with their values) in the satisfier's debug log; a null in an event's metadata
// removes the key from the stack.
func TestMetadataCannotBreakTerraform(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("meta", metadataMachine)
	ss.startStateManager()
	satisfier := ss.startSatisfier("LOG_LEVEL=DEBUG")

	const email = "ops-owner@example.com"
	ss.sendEvent("e2e-meta", "LAUNCH", map[string]any{"machine": "meta",
		"metadata": map[string]any{"greeting": "hi", "owner.email": email, "unused": "x"}})
	st := ss.waitState("e2e-meta", "RUN")
	require.Equal(t, "hi, stack e2e-meta", st.Metadata["app"], "a declared key reaches its variable")
	require.Equal(t, email, st.Metadata["owner.email"], "the key stays in the metadata")

	ss.sendEvent("e2e-meta", "ACCESS", map[string]any{"metadata": map[string]any{"unused": nil, "lastUser": "ana"}})
	require.Eventually(t, func() bool {
		s := ss.stack("e2e-meta")
		if s == nil {
			return false
		}
		_, has := s.Metadata["unused"]
		return !has && s.Metadata["lastUser"] == "ana"
	}, 60*time.Second, 100*time.Millisecond, "null removes the key")

	// The destroy gets the same stray key and still runs.
	ss.sendEvent("e2e-meta", "DESTROY", nil)
	ss.waitRemoved("e2e-meta")
	state, ok := ss.object("meta/e2e-meta/basic")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`, "destroy ran")
	require.Equal(t, 2, ss.count("SELECT count(*) FROM history WHERE stack_id = 'e2e-meta' AND kind = 'task-completed'"))

	out := satisfier.Output()
	require.Contains(t, out, `"keys":["owner.email","unused"]`, "the apply's skipped keys, at debug")
	require.Contains(t, out, `"keys":["app","lastUser","owner.email","settings","zones"]`, "the destroy's: outputs merged into metadata are undeclared too")
	require.False(t, strings.Contains(out, email), "metadata values are never logged")
}

// TestLocalSourceLeavingTheSourcesDirFailsTheTask: a local source that leads outside
// TERRAFORM_SOURCES_DIR through a symbolic link is refused by the satisfier binary with a
// TASK_ERROR that says so, and Terraform never runs.
func TestLocalSourceLeavingTheSourcesDirFailsTheTask(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("meta", metadataMachine)
	sources := t.TempDir()
	require.NoError(t, os.Symlink(harness.Testdata(t, "terraform", "basic"), filepath.Join(sources, "basic")))
	ss.startStateManager()
	ss.startSatisfier("TERRAFORM_SOURCES_DIR=" + sources)

	ss.sendEvent("e2e-escape", "LAUNCH", map[string]any{"machine": "meta"})
	task := ss.waitTask("e2e-escape", "infra", message.TaskFailed)
	require.Equal(t, "error copying the local source basic: it leaves the sources dir (TERRAFORM_SOURCES_DIR) through a symbolic link", task.Description)
	_, ok := ss.object("meta/e2e-escape/basic")
	require.False(t, ok, "Terraform never ran: no state")
}
