package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/codebuild"
	"github.com/stretchr/testify/require"

	cb "github.com/stackseam/stackseam/internal/executor/codebuild"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

// codebuildSystem is a satisfier system whose satisfier hands long tasks over to a fake CodeBuild
// project, whose builds run the same satisfier binary in its one-task mode.
type codebuildSystem struct {
	*satisfierSystem
	fake  *harness.CodeBuildFake
	marks marks
	sat   *harness.Process
}

const codebuildProject = "stackseam-tasks"

func newCodebuildSystem(t *testing.T, sleep string) *codebuildSystem {
	t.Helper()
	cs := &codebuildSystem{satisfierSystem: newSatisfierSystem(t), fake: harness.NewCodeBuildFake(t)}
	cs.marks = cs.marked("longrun", sleep, true)
	// The build's source dir is laid out as the construct's asset is (the function's zip):
	// bootstrap, bin/tofu and the bundled Terraform sources; the project runs ./bootstrap
	// --one-task there, with the settings the construct gives the project (TERRAFORM_BINARY
	// relative, no TERRAFORM_SOURCES_DIR: the working directory is the source dir).
	src := t.TempDir()
	require.NoError(t, os.Symlink(cs.bin, filepath.Join(src, "bootstrap")))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	require.NoError(t, os.Symlink(harness.TofuBinary(t), filepath.Join(src, "bin", "tofu")))
	require.NoError(t, os.CopyFS(filepath.Join(src, "marks"), os.DirFS(harness.Testdata(t, "terraform", "marks"))))
	env := append(harness.AWSEnv(t),
		"AWS_SECRET_ACCESS_KEY="+e2eSecret,
		"EVENT_QUEUE_URL="+cs.eventURL,
		"BUCKET="+cs.bucket,
		"TERRAFORM_BINARY=bin/tofu",
		"LOG_LEVEL=INFO",
		// Outside the construct's settings: this machine's temp dirs, and a short stop grace.
		"TERRAFORM_WORK_DIR="+cs.workDir,
		"TERRAFORM_PLUGIN_CACHE_DIR="+filepath.Join(cs.workDir, "plugins"),
		"TERRAFORM_STOP_GRACE=5s",
	)
	// CodeBuild's build state change events reach the task queue, as the construct's EventBridge
	// rule sends them. (Errors are dropped: a build may end after the test.)
	events := func(ev []byte) {
		_ = queue.Send(cs.ctx, cs.sqs, cs.taskURL, []queue.Outgoing{{Body: string(ev)}})
	}
	cs.fake.Project(codebuildProject, harness.CodeBuildProject{Command: "./bootstrap", Args: []string{"--one-task"}, Env: env,
		SourceDir: src, StopGrace: 20 * time.Second, Output: harness.BuildOutput(t), Events: events})
	cs.startStateManager()
	cs.sat = cs.startSatisfier("CODEBUILD_PROJECT="+codebuildProject, cs.fake.Env())
	return cs
}

// builds returns the fake's builds of the stack's task, found by their hand-over key.
func (cs *codebuildSystem) builds(stackID, task string) []*harness.FakeBuild {
	var out []*harness.FakeBuild
	for _, b := range cs.fake.Builds() {
		for _, kv := range b.Env {
			if strings.HasPrefix(kv, cb.TaskObjectVariable+"=handovers/longrun/"+stackID+"/"+task+"/") {
				out = append(out, b)
			}
		}
	}
	return out
}

// launchUntilApplying launches a longrun stack and returns its one infra build once the apply
// is creating (the resource's mark file exists): the moment to interrupt the build.
func (cs *codebuildSystem) launchUntilApplying(stackID string) *harness.FakeBuild {
	cs.t.Helper()
	cs.sendEvent(stackID, "LAUNCH", map[string]any{"machine": "longrun"})
	require.Eventually(cs.t, func() bool { return cs.marks.made(cs.t, stackID) }, 90*time.Second, 20*time.Millisecond, "the apply is creating")
	infra := cs.builds(stackID, "infra")
	require.Len(cs.t, infra, 1)
	return infra[0]
}

// destroyLog destroys the longrun stack and returns the log of its one teardown run.
func (cs *codebuildSystem) destroyLog(stackID string) string {
	cs.t.Helper()
	cs.sendEvent(stackID, "DESTROY", nil)
	cs.waitRemoved(stackID)
	teardown := cs.taskLogs("longrun", stackID, "teardown")
	require.Len(cs.t, teardown, 1)
	for _, log := range teardown {
		return log
	}
	return ""
}

// TestCodeBuildLifecycle: LAUNCH → RUN → DESTROY with both Terraform tasks run by CodeBuild
// builds (the apply chosen by its timeoutSeconds, the destroy by runner: codebuild). Each run
// gets one build, which runs real tofu and publishes the result; logs land at the usual key.
// The apply's task message delivered again (an SQS redelivery of the hand-over) finds the run's
// build and starts no second one.
func TestCodeBuildLifecycle(t *testing.T) {
	t.Parallel()
	cs := newCodebuildSystem(t, "0")

	cs.sendEvent("cb-life", "LAUNCH", map[string]any{"machine": "longrun"})
	cs.waitState("cb-life", "RUN")
	require.True(t, cs.marks.made(t, "cb-life"), "the build's apply created the resource")
	infra := cs.builds("cb-life", "infra")
	require.Len(t, infra, 1)
	require.Eventually(t, func() bool { return infra[0].Status() == "SUCCEEDED" }, 30*time.Second, 50*time.Millisecond)
	cs.sat.WaitForOutput(t, `"outcome":"handed-over"`, 10*time.Second)
	require.Equal(t, 64, int(infra[0].Timeout/time.Minute), "the build's timeout: the task's hour, the 30s margin and the 3m start allowance, in whole minutes")

	logs := cs.taskLogs("longrun", "cb-life", "infra")
	require.Len(t, logs, 1)
	var runID string
	for id, log := range logs {
		runID = id
		require.Contains(t, log, "Apply complete! Resources: 1 added", "the build stored its log at the usual key")
	}

	// The hand-over delivered again: the record names the build, which exists.
	rec, ok := cs.object(cb.Key(message.Task{Task: message.TaskSpec{Name: "infra"},
		Stack: message.Stack{ID: "cb-life", Machine: "longrun"}, TaskRunID: runID}))
	require.True(t, ok, "the hand-over record is kept")
	var record cb.Record
	require.NoError(t, json.Unmarshal([]byte(rec), &record))
	require.Equal(t, infra[0].ID, record.BuildID)
	body, err := json.Marshal(record.Task)
	require.NoError(t, err)
	require.NoError(t, queue.Send(cs.ctx, cs.sqs, cs.taskURL, []queue.Outgoing{{Body: string(body)}}))
	cs.sat.WaitForOutput(t, `"outcome":"stale"`, 60*time.Second) // settled meanwhile: the fence stops it first

	cs.sendEvent("cb-life", "DESTROY", nil)
	cs.waitRemoved("cb-life")
	require.False(t, cs.marks.made(t, "cb-life"), "the build's destroy removed the resource")
	require.Len(t, cs.builds("cb-life", "infra"), 1, "no second build for the apply")
	require.Len(t, cs.builds("cb-life", "teardown"), 1)
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->GONE"}, cs.transitions("cb-life"))
}

// TestRedeliveredHandOverStartsNoSecondBuild: while the apply's build runs, its task message is
// delivered again; the satisfier finds the run's build through the hand-over record and starts
// none, and the one build's result settles the run.
func TestRedeliveredHandOverStartsNoSecondBuild(t *testing.T) {
	t.Parallel()
	cs := newCodebuildSystem(t, "6")

	cs.sendEvent("cb-redo", "LAUNCH", map[string]any{"machine": "longrun"})
	var infra []*harness.FakeBuild
	require.Eventually(t, func() bool { infra = cs.builds("cb-redo", "infra"); return len(infra) == 1 }, 60*time.Second, 50*time.Millisecond)
	var record cb.Record
	require.Eventually(t, func() bool {
		for _, kv := range infra[0].Env {
			if key, ok := strings.CutPrefix(kv, cb.TaskObjectVariable+"="); ok {
				if rec, ok := cs.object(key); ok && json.Unmarshal([]byte(rec), &record) == nil && record.BuildID != "" {
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the hand-over record names the build")
	body, err := json.Marshal(record.Task)
	require.NoError(t, err)
	require.NoError(t, queue.Send(cs.ctx, cs.sqs, cs.taskURL, []queue.Outgoing{{Body: string(body)}}))
	cs.sat.WaitForOutput(t, `"outcome":"already-handed-over"`, 60*time.Second)

	cs.waitState("cb-redo", "RUN")
	require.Len(t, cs.builds("cb-redo", "infra"), 1, "one build for the run")
	require.Equal(t, 1, cs.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND event = 'TASK_COMPLETED'`, "cb-redo"))
	cs.sendEvent("cb-redo", "DESTROY", nil)
	cs.waitRemoved("cb-redo")
}

// TestStoppedBuildReportsTaskError: a build stopped mid-apply (StopBuild, as an operator would)
// stops Terraform cleanly and publishes TASK_ERROR with the run's log — never silence; the state
// lock is released, so the teardown (another build) destroys what the apply recorded.
func TestStoppedBuildReportsTaskError(t *testing.T) {
	t.Parallel()
	cs := newCodebuildSystem(t, "120")

	infra := cs.launchUntilApplying("cb-stop")
	_, err := harness.CodeBuildClient(t, cs.fake).StopBuild(cs.ctx, &codebuild.StopBuildInput{Id: aws.String(infra.ID)})
	require.NoError(t, err)

	failed := cs.waitTask("cb-stop", "infra", message.TaskFailed)
	require.Contains(t, failed.Description, "stopped after")
	require.NotEmpty(t, failed.Log, "the failure points at the run's log")
	log, ok := cs.object(failed.Log)
	require.True(t, ok)
	require.Contains(t, log, "stackseam: FAILED after")
	require.Equal(t, "PROVISION", cs.stack("cb-stop").State, "the stack rests with its task failed")
	require.Eventually(t, func() bool { return infra.Status() == "STOPPED" }, 30*time.Second, 50*time.Millisecond)

	// The interrupted create left the resource tainted in the state; Terraform destroys a
	// tainted resource without its destroy-time provisioners, so the mark file stays, but the
	// resource is gone from the state.
	require.Contains(t, cs.destroyLog("cb-stop"), "Destroy complete! Resources: 1 destroyed")
	state, ok := cs.object("longrun/cb-stop/marks")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`)
}

// TestKilledBuildReportsTaskError: a build killed outright mid-apply (SIGKILL: no time to report,
// as when its host is lost) ends FAILED; CodeBuild's state change event brings the satisfier to
// fail the run — never silence — and to release the state lock the dead run held, so the
// teardown's build runs at once instead of waiting out the dead run's time.
func TestKilledBuildReportsTaskError(t *testing.T) {
	t.Parallel()
	cs := newCodebuildSystem(t, "120")

	infra := cs.launchUntilApplying("cb-kill")
	require.NoError(t, cs.fake.Kill(infra))
	require.Eventually(t, func() bool { return infra.Status() == "FAILED" }, 30*time.Second, 50*time.Millisecond)

	failed := cs.waitTask("cb-kill", "infra", message.TaskFailed)
	require.Contains(t, failed.Description, "ended FAILED without reporting a result")
	require.Contains(t, failed.Description, "logs/longrun/cb-kill/infra/"+failed.RunID+".log")
	cs.sat.WaitForOutput(t, `"outcome":"lock-released"`, 10*time.Second)

	require.NotContains(t, cs.destroyLog("cb-kill"), "waiting for the state lock", "the dead run's lock was released")
}
