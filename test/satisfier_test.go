package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// These tests run both shipped binaries in local mode: the state manager and the satisfier, which
// runs a real OpenTofu against the emulator's S3 and invokes functions on a protocol-level fake of
// Lambda.

// e2eSecret replaces harness.AWSEnv's secret key "test" for the satisfier (the emulator takes
// any): the satisfier masks its value in logs and results, and "test" is everywhere.
const e2eSecret = "stackseam-e2e-secret-key-0123456789"

// satisfierSystem is a system with a satisfier: its bucket, machines and Lambda fake.
type satisfierSystem struct {
	*system
	bucket   string
	machines string
	lambda   *harness.LambdaFake
	bin      string
	workDir  string
}

func newSatisfierSystem(t *testing.T) *satisfierSystem {
	t.Helper()
	ss := &satisfierSystem{
		system:   newSystem(t, systemOptions{}),
		bucket:   harness.CreateBucket(t, "e2e-"+t.Name()),
		machines: t.TempDir(),
		lambda:   harness.NewLambdaFake(t),
		bin:      harness.BuildBinary(t, "./functions/satisfier"),
		workDir:  t.TempDir(),
	}
	harness.TofuBinary(t) // fail early, not inside a process
	return ss
}

// machine writes a machine file; BUCKET in text is replaced by the test's bucket.
func (ss *satisfierSystem) machine(name, text string) {
	ss.t.Helper()
	writeMachine(ss.t, ss.machines, name, strings.ReplaceAll(text, "BUCKET", ss.bucket))
}

func (ss *satisfierSystem) startStateManager() *harness.Process {
	ss.t.Helper()
	// Fences in the test's bucket, as deployed: the satisfier refuses runs they do not name.
	return ss.system.startStateManager(1, "MACHINES_DIR="+ss.machines, "FENCE_BUCKET="+ss.bucket)
}

// startSatisfier starts one satisfier process in local mode.
func (ss *satisfierSystem) startSatisfier(extraEnv ...string) *harness.Process {
	ss.t.Helper()
	env := append(harness.AWSEnv(ss.t),
		"AWS_SECRET_ACCESS_KEY="+e2eSecret,
		ss.lambda.Env(),
		"EVENT_QUEUE_URL="+ss.eventURL,
		"TASK_QUEUE_URL="+ss.taskURL,
		"BUCKET="+ss.bucket,
		"TERRAFORM_BINARY="+harness.TofuBinary(ss.t),
		"TERRAFORM_SOURCES_DIR="+harness.Testdata(ss.t, "terraform"),
		"TERRAFORM_WORK_DIR="+ss.workDir,
		"TERRAFORM_PLUGIN_CACHE_DIR="+filepath.Join(ss.workDir, "plugins"),
		"POLL_WAIT=1s",
		"RETRY_DELAY=1s",
	)
	return harness.StartProcess(ss.t, ss.bin, append(env, extraEnv...))
}

// object reads an object of the test's bucket from an s3:// URL or a key.
func (ss *satisfierSystem) object(urlOrKey string) (string, bool) {
	ss.t.Helper()
	return harness.ReadObject(ss.t, ss.bucket, strings.TrimPrefix(urlOrKey, "s3://"+ss.bucket+"/"))
}

// taskLogs returns the stored logs of a stack's task, by run id.
func (ss *satisfierSystem) taskLogs(machineName, stackID, task string) map[string]string {
	ss.t.Helper()
	prefix := "logs/" + machineName + "/" + stackID + "/" + task + "/"
	logs := map[string]string{}
	for _, key := range harness.ListObjects(ss.t, ss.bucket, prefix) {
		text, ok := ss.object(key)
		require.True(ss.t, ok)
		logs[strings.TrimSuffix(strings.TrimPrefix(key, prefix), ".log")] = text
	}
	return logs
}

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

// marks is the dir where the marks fixture leaves a file, named by the stack id, while the
// resource it applies exists.
type marks string

// made reports whether the stack's resource exists.
func (m marks) made(t *testing.T, stackID string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(string(m), stackID))
	if os.IsNotExist(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

// marked writes the marks machine as name, with a new marks dir, which it returns, and the apply's
// sleep; with codebuild, both tasks are run by CodeBuild: the apply because it needs more time
// than Lambda has (timeoutSeconds beyond 900), the destroy because it asks to be.
func (ss *satisfierSystem) marked(name, sleep string, codebuild bool) marks {
	ss.t.Helper()
	dir := ss.t.TempDir()
	apply, destroy := "", ""
	if codebuild {
		apply, destroy = "\n    timeoutSeconds: 3600", "\n    runner: codebuild"
	}
	ss.machine(name, strings.NewReplacer("MARKS", dir, "SLEEP", sleep, " APPLY_KEYS", apply, " DESTROY_KEYS", destroy).Replace(marksMachine))
	return marks(dir)
}

// provisionMachine has a terraform task and a lambda task on the way up and a terraform destroy
// on the way down, sharing one source and so one state.
var provisionMachine = harness.Lifecycle{
	Up: []string{"infra", "notify"}, Down: []string{"teardown"},
	Tasks: harness.TerraformTasks("{type: s3, bucket: BUCKET, key: terraform/infra}", "{greeting: hello}") + `
  notify:
    executor: lambda
    config: {name: notify-fn, args: {channel: "#deploys"}}
`,
}.YAML()

// TestTerraformAndLambdaTasksLaunchAndDestroy is scenario (a): LAUNCH runs a Terraform apply and
// a Lambda invocation and ends in RUN with their outputs in the metadata; DESTROY runs destroy
// against the same state and removes the stack.
func TestTerraformAndLambdaTasksLaunchAndDestroy(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("provision", provisionMachine)
	harness.UploadDir(t, ss.bucket, "terraform/infra", harness.Testdata(t, "terraform", "basic"))
	ss.lambda.Returns("notify-fn", `{"notified": true, "message_id": "m-1"}`)
	ss.startStateManager()
	satisfier := ss.startSatisfier()

	launched := time.Now()
	ss.sendEvent("e2e-a", "LAUNCH", map[string]any{"machine": "provision", "metadata": map[string]any{"owner": "team-a"}})
	st := ss.waitState("e2e-a", "RUN")
	upTime := time.Since(launched)

	require.Equal(t, "hello, stack e2e-a", st.Metadata["app"], "Terraform output, from stack_id, a task variable and a module")
	require.Equal(t, `["a","b"]`, st.Metadata["zones"], "a list output arrives as its JSON text")
	require.NotContains(t, st.Metadata, "admin_password", "sensitive outputs are not returned")
	require.Equal(t, true, st.Metadata["notified"], "the Lambda's returned object")
	require.Equal(t, "m-1", st.Metadata["message_id"])
	require.Equal(t, "team-a", st.Metadata["owner"])

	calls := ss.lambda.Invocations("notify-fn")
	require.Len(t, calls, 1)
	var payload struct {
		StackID  string         `json:"stackId"`
		Metadata map[string]any `json:"metadata"`
		Args     map[string]any `json:"args"`
	}
	require.NoError(t, json.Unmarshal(calls[0].Payload, &payload))
	require.Equal(t, "e2e-a", payload.StackID)
	require.Equal(t, "team-a", payload.Metadata["owner"])
	require.Equal(t, map[string]any{"channel": "#deploys"}, payload.Args)

	state, ok := ss.object("provision/e2e-a/terraform/infra")
	require.True(t, ok, "the state is stored under <machine>/<stackId>/<source key>")
	require.Contains(t, state, `"terraform_data"`)
	var logURL string
	require.NoError(t, ss.db.QueryRow(ss.ctx, `SELECT detail->>'log' FROM history
		WHERE stack_id = 'e2e-a' AND kind = 'task-completed' AND task = 'infra'`).Scan(&logURL))
	require.True(t, strings.HasPrefix(logURL, "s3://"+ss.bucket+"/logs/provision/e2e-a/infra/"), logURL)
	log, ok := ss.object(logURL)
	require.True(t, ok, "the log is stored")
	require.Contains(t, log, "Apply complete!")
	require.NotContains(t, log, e2eSecret)

	destroyed := time.Now()
	ss.sendEvent("e2e-a", "DESTROY", nil)
	ss.waitRemoved("e2e-a")
	downTime := time.Since(destroyed)

	state, ok = ss.object("provision/e2e-a/terraform/infra")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`, "destroy ran against the same state")
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, ss.transitions("e2e-a"))
	require.Equal(t, 3, ss.historyCount("e2e-a", "task-completed"))
	require.Equal(t, 0, ss.count("SELECT count(*) FROM history WHERE stack_id = 'e2e-a' AND kind IN ('ignored', 'rejected')"),
		"exactly one result per task")
	ss.waitDrained()
	require.Equal(t, 0, ss.queueDepth(ss.taskURL))
	require.Equal(t, 0, ss.queueDepth(ss.taskDLQ))
	entries, err := os.ReadDir(ss.workDir)
	require.NoError(t, err)
	for _, e := range entries {
		require.Equal(t, "plugins", e.Name(), "run work dirs are removed")
	}
	requireEMFMetrics(t, satisfier.Output(), "satisfier", []string{"Executor", "Result"}, "TaskRuns Executor=terraform Result=completed",
		"TaskRunDuration Executor=terraform Result=completed", "TaskRuns Executor=lambda Result=completed")
	t.Logf("LAUNCH→RUN %s, DESTROY→removed %s, loop %s", upTime.Round(time.Millisecond),
		downTime.Round(time.Millisecond), (upTime + downTime).Round(time.Millisecond))
}

// TestFailingTerraformThenFixedScriptConverges is scenario (b): a failing script yields
// TASK_ERROR with its log stored; after the script is fixed, RETRY_FAILED_TASKS converges.
func TestFailingTerraformThenFixedScriptConverges(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("fragile", harness.Lifecycle{
		Up: []string{"infra"},
		Tasks: `
  infra:
    executor: terraform
    config:
      source: {type: s3, bucket: BUCKET, key: terraform/app/}
      action: apply
`,
	}.YAML())
	fixtures := harness.Testdata(t, "terraform")
	harness.UploadDir(t, ss.bucket, "terraform/app", filepath.Join(fixtures, "broken"))
	ss.startStateManager()
	ss.startSatisfier()

	ss.sendEvent("e2e-b", "LAUNCH", map[string]any{"machine": "fragile"})
	failed := ss.waitTask("e2e-b", "infra", message.TaskFailed)
	require.Contains(t, failed.Description, "terraform apply failed")
	require.Contains(t, failed.Description, "The broken fixture always fails")
	require.True(t, strings.HasPrefix(failed.Log, "s3://"+ss.bucket+"/logs/fragile/e2e-b/infra/"+failed.RunID), failed.Log)
	log, ok := ss.object(failed.Log)
	require.True(t, ok, "the failed run's log is stored")
	require.Contains(t, log, "The broken fixture always fails")
	require.Equal(t, "PROVISION", ss.stack("e2e-b").State)

	// Fix the script (basic's main.tf replaces broken's, and brings its module), then retry.
	harness.UploadDir(t, ss.bucket, "terraform/app", filepath.Join(fixtures, "basic"))
	ss.sendEvent("e2e-b", message.EventRetryFailedTasks, nil)
	st := ss.waitState("e2e-b", "RUN")
	require.Equal(t, "hello, stack e2e-b", st.Metadata["app"])
	require.Equal(t, 1, ss.historyCount("e2e-b", "task-failed"))
	require.Equal(t, 1, ss.historyCount("e2e-b", "task-completed"))
	state, ok := ss.object("fragile/e2e-b/terraform/app")
	require.True(t, ok, "the source key's trailing slash is dropped from the state key (the backend rejects it)")
	require.Contains(t, state, `"terraform_data"`)
}

// TestLambdaFunctionErrorFailsTheTask is scenario (c): a function error is a TASK_ERROR whose
// message is in the stack's task list and history.
func TestLambdaFunctionErrorFailsTheTask(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("notifier", harness.Lifecycle{
		Up: []string{"notify"},
		Tasks: `
  notify:
    executor: lambda
    config: {name: notify-fn}
`,
	}.YAML())
	ss.lambda.Fails("notify-fn", "ChannelArchived", "channel #deploys is archived")
	ss.startStateManager()
	ss.startSatisfier()

	ss.sendEvent("e2e-c", "LAUNCH", map[string]any{"machine": "notifier"})
	failed := ss.waitTask("e2e-c", "notify", message.TaskFailed)
	const want = "lambda function notify-fn failed: ChannelArchived: channel #deploys is archived"
	require.Equal(t, want, failed.Description)
	var reason string
	require.NoError(t, ss.db.QueryRow(ss.ctx, `SELECT reason FROM history
		WHERE stack_id = 'e2e-c' AND kind = 'task-failed' AND task = 'notify'`).Scan(&reason))
	require.Equal(t, want, reason)
	require.Equal(t, "PROVISION", ss.stack("e2e-c").State)
	require.Len(t, ss.lambda.Invocations("notify-fn"), 1, "a function error is not retried by the satisfier")
}

// TestKilledSatisfierTaskIsRedelivered is scenario (d): the satisfier is killed in the middle of
// a Terraform apply; the task message comes back to another satisfier, which runs it to the end,
// and the stack reaches the right state — whose Terraform state a destroy can then use.
func TestKilledSatisfierTaskIsRedelivered(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("sleepy", harness.Lifecycle{
		Up: []string{"infra"}, Down: []string{"teardown"},
		Tasks: harness.TerraformTasks("{type: local, location: slow}", `{sleep_seconds: "3"}`),
	}.YAML())
	ss.startStateManager()
	// A short visibility timeout brings the killed worker's message back quickly; it is renewed
	// while a run lasts, so the run that completes is not interrupted by a redelivery.
	first := ss.startSatisfier("VISIBILITY_TIMEOUT=2s")

	ss.sendEvent("e2e-d", "LAUNCH", map[string]any{"machine": "sleepy"})
	first.WaitForOutput(t, `"msg":"task started"`, 60*time.Second)
	// Kill it while the apply runs its three-second provisioner.
	require.Eventually(t, func() bool { return provisionerRunning(t, first.Pid()) }, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, first.Kill())
	require.NotContains(t, first.Output(), `"msg":"task completed"`, "killed mid-task")

	// The killed run left its state lock behind. A lock older than the lease is a dead run's:
	// the lease is short here (the apply takes 3 s) so the test need not wait the default.
	second := ss.startSatisfier("VISIBILITY_TIMEOUT=2s", "TERRAFORM_LOCK_LEASE=8s")
	st := ss.waitState("e2e-d", "RUN")
	require.Contains(t, second.Output(), "removing a stale terraform state lock", "the dead run's lock was removed")
	require.Equal(t, "e2e-d", st.Metadata["slept"])
	require.Contains(t, second.Output(), `"receiveCount":2`, "the same message, delivered again")
	require.Equal(t, 1, ss.historyCount("e2e-d", "task-completed"))

	ss.sendEvent("e2e-d", "DESTROY", nil)
	ss.waitRemoved("e2e-d")
	state, ok := ss.object("sleepy/e2e-d/slow")
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`, "the state was consistent and not left locked")
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, ss.transitions("e2e-d"))
}

// metadataMachine applies and destroys the basic fixture, a local source, and lets ACCESS change
// metadata in RUN.
var metadataMachine = harness.Lifecycle{
	Up: []string{"infra"}, Down: []string{"teardown"}, NoOps: []string{"ACCESS"},
	Tasks: harness.TerraformTasks("{type: local, location: basic}", ""),
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
	require.Equal(t, 2, ss.historyCount("e2e-meta", "task-completed"))

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

// provisionerRunning reports whether a descendant of the process pid runs `sleep`: the slow
// fixture's provisioner, so the satisfier is in the middle of an apply. It reads /proc (Linux).
func provisionerRunning(t *testing.T, pid int) bool {
	t.Helper()
	parent := map[int]int{}
	var sleeps []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range stats {
		data, err := os.ReadFile(stat)
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid …"; comm may hold spaces, so split around the last ')'.
		text := string(data)
		open, end := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(text[end+1:])
		p, err1 := strconv.Atoi(strings.TrimSpace(text[:open]))
		pp, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			continue
		}
		parent[p] = pp
		if text[open+1:end] == "sleep" {
			sleeps = append(sleeps, p)
		}
	}
	for _, p := range sleeps {
		for q, hops := parent[p], 0; q > 1 && hops < 10; q, hops = parent[q], hops+1 {
			if q == pid {
				return true
			}
		}
	}
	return false
}
