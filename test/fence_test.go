package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/fence"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

// marksMachine provisions with the marks fixture (MARKS is the test's marks dir) and allows
// DESTROY during PROVISION, as the example machines do: the running apply is abandoned and the
// teardown destroys whatever it built. APPLY_KEYS and DESTROY_KEYS stand for more keys of the two tasks.
var marksMachine = harness.Lifecycle{
	Up: []string{"infra"}, Down: []string{"teardown"}, DestroyWhileProvisioning: true, Terminal: "GONE",
	Tasks: `
  infra:
    executor: terraform APPLY_KEYS
    config:
      source: {type: local, location: marks}
      action: apply
      variables: {marks_dir: "MARKS", sleep_seconds: "SLEEP"}
  teardown:
    executor: terraform DESTROY_KEYS
    config:
      source: {type: local, location: marks}
      action: destroy
      variables: {marks_dir: "MARKS"}
`,
}.YAML()

// marked writes the marks machine as name, with a new marks dir, which it returns, and the apply's
// sleep; with codebuild, both tasks are run by CodeBuild: the apply because it needs more time
// than Lambda has (timeoutSeconds beyond 900), the destroy because it asks to be.
func (ss *satisfierSystem) marked(name, sleep string, codebuild bool) string {
	ss.t.Helper()
	marks := ss.t.TempDir()
	apply, destroy := "", ""
	if codebuild {
		apply, destroy = "\n    timeoutSeconds: 3600", "\n    runner: codebuild"
	}
	ss.machine(name, strings.NewReplacer("MARKS", marks, "SLEEP", sleep, " APPLY_KEYS", apply, " DESTROY_KEYS", destroy).Replace(marksMachine))
	return marks
}

// taskLogs returns the stored logs of a stack's task, by run id.
func (ss *satisfierSystem) taskLogs(machineName, stackID, task string) map[string]string {
	ss.t.Helper()
	prefix := "logs/" + machineName + "/" + stackID + "/" + task + "/"
	out, err := harness.S3Client(ss.t).ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(ss.bucket), Prefix: aws.String(prefix)})
	require.NoError(ss.t, err)
	logs := map[string]string{}
	for _, obj := range out.Contents {
		text, ok := ss.object(aws.ToString(obj.Key))
		require.True(ss.t, ok)
		logs[strings.TrimSuffix(strings.TrimPrefix(aws.ToString(obj.Key), prefix), ".log")] = text
	}
	return logs
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if os.IsNotExist(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

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
	mark := filepath.Join(marks, "e2e-dp")
	require.Eventually(t, func() bool { return exists(t, mark) }, 90*time.Second, 20*time.Millisecond, "the apply is creating")
	ss.sendEvent("e2e-dp", "DESTROY", nil)

	ss.waitRemoved("e2e-dp")
	require.False(t, exists(t, mark), "the resource the apply created was destroyed")
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
	mark := filepath.Join(marks, "e2e-re")
	require.True(t, exists(t, mark), "provisioned")
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
	require.False(t, exists(t, mark))

	// The apply's task message, delivered again.
	cfg := map[string]any{"source": map[string]any{"type": "local", "location": "marks"}, "action": "apply",
		"variables": map[string]any{"marks_dir": marks, "sleep_seconds": "0"}}
	body, err := json.Marshal(message.Task{
		Task:      message.TaskSpec{Name: "infra", Executor: "terraform", Config: cfg},
		Stack:     message.Stack{ID: "e2e-re", Machine: "marked", State: "PROVISION", PreviousState: "INIT", Metadata: message.Metadata{}},
		TaskRunID: runID,
	})
	require.NoError(t, err)
	require.NoError(t, queue.Send(ss.ctx, ss.sqs, ss.taskURL, []queue.Outgoing{{Body: string(body)}}))

	sat.WaitForOutput(t, `"msg":"stale task run not started"`, 60*time.Second)
	require.False(t, exists(t, mark), "the stale apply re-created nothing")
	state, ok := ss.object(terraform.StateKey("marked", "e2e-re", terraform.Source{Type: "local", Location: "marks"}))
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`)
	require.Nil(t, ss.stack("e2e-re"), "the stale result did not bring the stack back")
}
