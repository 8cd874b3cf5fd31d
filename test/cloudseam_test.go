package test

import (
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/fence"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// The tests of this file hold what a team moving from CloudSeam relies on
// (docs/migrating-from-cloudseam.md): its messages, its stack ids and its stored stacks.

// TestCloudSeamShapedResultsSettleTasks: a stack named like a branch (feature/login), published
// in CloudSeam's shape (action, not event), runs its life on results shaped as CloudSeam's
// satisfier sends them — the task, no taskRunId — with no result signing key (as CloudSeam ran).
// Its fence is the S3 object fences/feature/login; a null metadata value removes the key.
func TestCloudSeamShapedResultsSettleTasks(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	bucket := harness.CreateBucket(t, "cs-"+t.Name())
	s.startStateManager(1, "FENCE_BUCKET="+bucket)
	const id = "feature/login"
	s.send(id, `{"stackId":"feature/login","machine":"pair","action":"LAUNCH","metadata":{"branch":"feature/login","owner":"ana"}}`)
	tasks := tasksByName(s.receiveTasks(2))
	require.Equal(t, id, tasks["infra"].Stack.ID)

	// The fence is one object under fences/, named by the whole stack id.
	s3c := harness.S3Client(t)
	obj, err := s3c.GetObject(s.ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(fence.Key(id))})
	require.NoError(t, err)
	raw, err := io.ReadAll(obj.Body)
	require.NoError(t, err)
	require.Contains(t, string(raw), tasks["infra"].TaskRunID)
	require.Equal(t, "fences/feature/login", fence.Key(id))

	cloudSeamResult := func(event, task string, extra string) string {
		spec, err := json.Marshal(tasks[task].Task)
		require.NoError(t, err)
		return `{"action":"` + event + `","stackId":"feature/login","task":` + string(spec) + extra + `}`
	}
	s.send(id, cloudSeamResult("TASK_COMPLETED", "infra", ""))
	s.send(id, cloudSeamResult("TASK_ERROR", "dns", `,"description":"dns zone busy"`))
	s.waitTask(id, "dns", message.TaskFailed)
	st := s.stack(id)
	require.Equal(t, "PROVISION", st.State)
	require.Equal(t, "completed", string(tasksOf(st)["infra"].Status))
	require.Equal(t, "dns zone busy", tasksOf(st)["dns"].Description)

	// CloudSeam's way out: RETRY_FAILED_TASKS, then the retried run settled by name again.
	s.sendEvent(id, "RETRY_FAILED_TASKS", nil)
	retried := s.receiveTasks(1)[0]
	require.Equal(t, "dns", retried.Task.Name)
	s.send(id, cloudSeamResult("TASK_COMPLETED", "dns", ""))
	s.waitState(id, "RUN")
	require.Equal(t, 3, s.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind IN ('task-completed', 'task-failed')
		AND (detail->>'byTaskName')::boolean`, id), "each by-name settling is recorded as such")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'task-completed' AND task = 'dns'
		AND task_run_id = $2`, id, retried.TaskRunID), "the retried run is the one the by-name result settled")

	// null removes a metadata key, as the README says.
	s.send(id, `{"stackId":"feature/login","action":"ACCESS","metadata":{"owner":null}}`)
	require.Eventually(t, func() bool { _, ok := s.stack(id).Metadata["owner"]; return !ok }, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "feature/login", s.stack(id).Metadata["branch"])

	s.sendEvent(id, "DESTROY", nil)
	tasks = tasksByName(s.receiveTasks(1))
	// A late by-name result for a task the state no longer has changes nothing.
	s.send(id, `{"action":"TASK_COMPLETED","stackId":"feature/login","task":{"name":"infra"}}`)
	s.send(id, cloudSeamResult("TASK_COMPLETED", "teardown", ""))
	s.waitRemoved(id)
	require.Equal(t, 1, s.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'ignored' AND task_run_id = ''
		AND reason LIKE 'result for task infra, which is not a task of stack feature/login in state TEARDOWN%'`, id))
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, s.transitions(id))
	require.Equal(t, 0, s.count("SELECT count(*) FROM rejections"))
}

// legacyMachine has no terminal state and a state with a task but no NEXT: CloudSeam's validator
// accepted both; stackseam warns and runs it.
const legacyMachine = `version: 1.0
events: [LAUNCH, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    tasks: [teardown]
tasks:
  teardown: {executor: lambda, config: {name: teardown-fn}}
`

// TestMachineWithoutTerminalStateRuns: a machine CloudSeam accepted without a terminal state is
// accepted with warnings; its stack launches, DESTROY runs the destroy task, and the stack then
// rests in GONE with the task done and its row kept (it is never removed), as the README says.
func TestMachineWithoutTerminalStateRuns(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	machines := machinesDir(t, "legacy", legacyMachine)
	m, err := catalog.ParseFile(filepath.Join(machines, "legacy.yml"))
	require.NoError(t, err)
	var warnings []string
	for _, w := range m.Warnings {
		warnings = append(warnings, w.Rule)
	}
	require.ElementsMatch(t, []string{machine.RuleNoTerminal, machine.RuleNextRequired}, warnings)

	s.startStateManager(1, "MACHINES_DIR="+machines)
	const id = "release/2.0"
	s.send(id, `{"stackId":"release/2.0","machine":"legacy","action":"LAUNCH"}`)
	s.waitState(id, "RUN")
	s.send(id, `{"stackId":"release/2.0","action":"DESTROY"}`)
	teardown := s.receiveTasks(1)[0]
	require.Equal(t, "teardown", teardown.Task.Name)
	s.send(id, `{"action":"TASK_COMPLETED","stackId":"release/2.0","task":{"name":"teardown"}}`)
	s.waitTask(id, "teardown", message.TaskCompleted)
	st := s.stack(id)
	require.Equal(t, "GONE", st.State, "the stack rests where DESTROY led, its task done")
	require.Equal(t, 0, s.historyCount(id, "removed"), "and is never removed")
	require.Equal(t, 0, s.count("SELECT count(*) FROM rejections"))
}

// cloudSeamRows are stacks as CloudSeam's PostgreSQL repository stores them: (id, machine,
// JSON.stringify(stack)), where a Stack's own properties are id, previousState, machine, _state
// (its state, behind a getter), tasks and metadata. old-2 has the tasks of CloudSeam's first
// versions ({name, satisfied}).
var cloudSeamRows = [][3]string{
	{"feature/login", "pair", `{"id":"feature/login","previousState":"PROVISION","machine":"pair","_state":"RUN","tasks":[],"metadata":{"branch":"feature/login","owner":null}}`},
	{"qa-1", "pair", `{"id":"qa-1","previousState":"INIT","machine":"pair","_state":"PROVISION","tasks":[{"name":"infra","status":"SATISFIED"},{"name":"dns","status":"PENDING"}],"metadata":{"branch":"qa"}}`},
	{"old-2", "pair", `{"id":"old-2","previousState":"INIT","machine":"pair","_state":"PROVISION","tasks":[{"name":"infra","satisfied":false},{"name":"dns","satisfied":true}],"metadata":{}}`},
}

// TestImportedCloudSeamStacksContinue: stackseam shares CloudSeam's database (its tables in their
// own schema, CloudSeam's public.stacks untouched); `stackseam import cloudseam` brings the stacks
// over (a dry run first, then twice), and each continues its life where CloudSeam left it through
// the shipped binaries: a pending task settled by a CloudSeam-shaped result, a pending task
// dispatched again, and a DESTROY that removes a stack, which a later import does not bring back.
func TestImportedCloudSeamStacksContinue(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	_, err := s.db.Exec(s.ctx, `CREATE TABLE public.stacks ("id" VARCHAR(30) NOT NULL UNIQUE, "machine" VARCHAR(30) NOT NULL,
		"data" TEXT NOT NULL, CONSTRAINT stacks_pk PRIMARY KEY ("id"))`)
	require.NoError(t, err)
	for _, r := range cloudSeamRows {
		_, err := s.db.Exec(s.ctx, "INSERT INTO public.stacks (id, machine, data) VALUES ($1, $2, $3)", r[0], r[1], r[2])
		require.NoError(t, err)
	}
	// CloudSeam's table belongs to CloudSeam's user; stackseam's may read it for the import.
	_, err = s.db.Exec(s.ctx, "GRANT SELECT ON public.stacks TO "+pgx.Identifier{s.appDB.User}.Sanitize())
	require.NoError(t, err)

	s.startStateManager(1)
	cli := harness.BuildBinary(t, "./cmd/stackseam")
	env := append(harness.AWSEnv(t), s.databaseEnv()...)
	importCloudSeam := func(args ...string) (int, string) {
		t.Helper()
		// The CLI's one AWS service here is Secrets Manager (--endpoint-url wins over the
		// per-service variable, as the SDK's base endpoint does).
		args = append([]string{"import", "cloudseam", "--endpoint-url", s.secrets.URL}, args...)
		p := harness.StartProcess(t, cli, env, args...)
		_ = p.Wait()
		return p.ExitCode(), p.Output()
	}

	code, out := importCloudSeam("--dry-run")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "3 stacks: 3 would be imported (dry run: nothing was written)")
	require.Equal(t, 0, s.count("SELECT count(*) FROM stackseam.stacks"))

	code, out = importCloudSeam()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "3 stacks: 3 imported, 0 already in stackseam")
	code, out = importCloudSeam()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "3 stacks: 0 imported, 3 already in stackseam")
	require.Equal(t, 3, s.count("SELECT count(*) FROM public.stacks"), "CloudSeam's table is left as it was")
	require.Equal(t, message.Metadata{"branch": "feature/login"}, s.stack("feature/login").Metadata)

	// qa-1 waits for dns; CloudSeam's satisfier answers by name.
	s.send("qa-1", `{"action":"TASK_COMPLETED","stackId":"qa-1","task":{"name":"dns","executor":"lambda","config":{"name":"dns-fn"}}}`)
	s.waitState("qa-1", "RUN")

	// old-2's infra never ran (CloudSeam was switched off): it is dispatched again.
	s.sendEvent("old-2", message.EventRetryPendingTasks, nil)
	infra := s.receiveTasks(1)[0]
	require.Equal(t, "infra", infra.Task.Name)
	s.send("old-2", s.result(infra, message.EventTaskCompleted, nil))
	s.waitState("old-2", "RUN")

	// feature/login is destroyed and removed; importing again does not bring it back.
	s.sendEvent("feature/login", "DESTROY", nil)
	teardown := s.receiveTasks(1)[0]
	s.send("feature/login", s.result(teardown, message.EventTaskCompleted, nil))
	s.waitRemoved("feature/login")
	code, out = importCloudSeam()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "0 imported, 2 already in stackseam, 1 imported before and since removed")
	require.Equal(t, 2, s.count("SELECT count(*) FROM stackseam.stacks"))
	require.Equal(t, []string{"RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, s.transitions("feature/login"))
	require.Equal(t, 0, s.count("SELECT count(*) FROM rejections"))
}
