package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/fence"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
)

// TestDestroyDuringProvisionLeavesNothingBehind is "DESTROY during PROVISION leaves nothing
// behind": DESTROY arrives while the apply is in the middle of creating its resource (its mark
// exists, the state does not have it yet). The teardown waits for the apply's state lock, then
// destroys what the apply created; the stack is removed and no mark remains. Two satisfier workers
// let the teardown run while the apply does.
func TestDestroyDuringProvisionLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	marks := ss.marked("marked", "4", false)
	ss.startStateManager()
	ss.startSatisfier("WORKERS=2")

	ss.sendEvent("e2e-dp", "LAUNCH", map[string]any{"machine": "marked"})
	require.Eventually(t, func() bool { return marks.made(t, "e2e-dp") }, 90*time.Second, 20*time.Millisecond, "the apply is creating")
	ss.sendEvent("e2e-dp", "DESTROY", nil)

	ss.waitRemoved("e2e-dp")
	require.False(t, marks.made(t, "e2e-dp"), "the resource the apply created was destroyed")
	state, ok := ss.object("marked/e2e-dp/marks")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`)
	teardown := ss.taskLogs("marked", "e2e-dp", "teardown")
	require.Len(t, teardown, 1)
	for _, log := range teardown {
		require.Contains(t, log, "stackseam: waiting for the state lock", "the teardown overlapped the apply and waited for it")
		require.Contains(t, log, "Resources: 1 destroyed")
	}
	apply := ss.taskLogs("marked", "e2e-dp", "infra")
	require.Len(t, apply, 1)
	for _, log := range apply {
		require.Contains(t, log, "Apply complete! Resources: 1 added", "the abandoned apply ran to its end")
	}
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->TEARDOWN", "TEARDOWN->GONE"}, ss.transitions("e2e-dp"))
}

// TestRedeliveredStaleApplyDoesNotRun is the other half: an apply task message that SQS hands
// out again after the stack was destroyed and removed finds its run missing from the stack's
// fence, does not run Terraform, and reports itself stale; nothing is re-created.
func TestRedeliveredStaleApplyDoesNotRun(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	marks := ss.marked("marked", "0", false)
	ss.startStateManager()
	sat := ss.startSatisfier()

	ss.sendEvent("e2e-re", "LAUNCH", map[string]any{"machine": "marked"})
	ss.waitState("e2e-re", "RUN")
	require.True(t, marks.made(t, "e2e-re"), "provisioned")
	applies := ss.taskLogs("marked", "e2e-re", "infra")
	require.Len(t, applies, 1)
	var runID string
	for id := range applies {
		runID = id
	}
	// The fence is written from the outbox after the stack's row commits, so the stack can be seen
	// in RUN a moment before its fence is: wait for the fence, not for a time.
	require.Eventually(t, func() bool {
		f, ok := ss.object(fence.Key("e2e-re"))
		return ok && !strings.Contains(f, runID)
	}, time.Minute, 20*time.Millisecond, "the settled apply left the fence when the stack left PROVISION")

	ss.sendEvent("e2e-re", "DESTROY", nil)
	ss.waitRemoved("e2e-re")
	require.False(t, marks.made(t, "e2e-re"))

	// The apply's task message, delivered again.
	cfg := map[string]any{"source": map[string]any{"type": "local", "location": "marks"}, "action": "apply",
		"variables": map[string]any{"marks_dir": string(marks), "sleep_seconds": "0"}}
	body, err := json.Marshal(message.Task{
		Task:      message.TaskSpec{Name: "infra", Executor: "terraform", Config: cfg},
		Stack:     message.Stack{ID: "e2e-re", Machine: "marked", State: "PROVISION", PreviousState: "INIT", Metadata: message.Metadata{}},
		TaskRunID: runID,
	})
	require.NoError(t, err)
	require.NoError(t, queue.Send(ss.ctx, ss.sqs, ss.taskURL, []queue.Outgoing{{Body: string(body)}}))

	sat.WaitForOutput(t, `"msg":"stale task run not started"`, 60*time.Second)
	require.False(t, marks.made(t, "e2e-re"), "the stale apply re-created nothing")
	state, ok := ss.object(terraform.StateKey("marked", "e2e-re", terraform.Source{Type: "local", Location: "marks"}))
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`)
	require.Nil(t, ss.stack("e2e-re"), "the stale result did not bring the stack back")
}
