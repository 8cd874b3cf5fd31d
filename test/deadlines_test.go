package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// No stack waits in silence (README.md, "Every dispatched task ends"). The times are scaled down
// with the deployed ratios: the task queue's visibility timeout is six times the satisfier's
// timeout (here 1 s and 6 s for 15 min and 90 min), and maxReceiveCount is the deployed one.

// fragileMachine's work task is retried once; a stack whose provisioning failed for good is torn
// down by DESTROY (its failure handling). Only a task message carrying the stack's metadata
// `fault` marker is hit by the satisfier's fault, so DESTROY removes the marker first.
var fragileMachine = harness.Lifecycle{
	Up: []string{"work"}, Down: []string{"cleanup"}, DestroyWhileProvisioning: true,
	Tasks: `
  work:
    executor: lambda
    config: {name: work-fn}
    timeoutSeconds: TIMEOUT
    retry: {attempts: 1, backoffSeconds: 1}
  cleanup:
    executor: lambda
    config: {name: cleanup-fn}
`,
}.YAML()

// deadlineSettings are the state manager's settings scaled down: a 1-second satisfier and a task
// queue visibility of six times that, maxReceiveCount as deployed, a sweep every second.
func deadlineSettings(ss *satisfierSystem) []string {
	return []string{"MACHINES_DIR=" + ss.machines, "FENCE_BUCKET=" + ss.bucket, "SWEEP_INTERVAL=1s", "TASK_TIMEOUT=1s", "TASK_QUEUE_VISIBILITY_TIMEOUT=6s",
		fmt.Sprintf("TASK_QUEUE_MAX_RECEIVE_COUNT=%d", deployed.TaskQueueMaxReceiveCount), "TASK_DEAD_LETTER_QUEUE_URL=" + ss.taskDLQ}
}

// failedRuns are the work task's runs of a stack settled by the state manager, by how.
func (ss *satisfierSystem) failedRuns(stackID string) map[string]string {
	ss.t.Helper()
	rows, err := ss.db.Query(ss.ctx, `SELECT task_run_id, coalesce(detail->>'settledBy', '') FROM history
		WHERE stack_id = $1 AND kind = 'task-failed' AND task = 'work' ORDER BY id`, stackID)
	require.NoError(ss.t, err)
	out := map[string]string{}
	for rows.Next() {
		var run, by string
		require.NoError(ss.t, rows.Scan(&run, &by))
		out[run] = by
	}
	require.NoError(ss.t, rows.Err())
	return out
}

// requireHealthyLifecycles drives the other stacks through DESTROY to removal and checks they
// never noticed the fault: each task completed once, none failed.
func (ss *satisfierSystem) requireHealthyLifecycles(ids []string) {
	ss.t.Helper()
	for _, id := range ids {
		ss.waitState(id, "RUN")
		ss.sendEvent(id, "DESTROY", nil)
	}
	for _, id := range ids {
		ss.waitRemoved(id)
		require.Equal(ss.t, 2, ss.historyCount(id, "task-completed"), id)
		require.Zero(ss.t, ss.count("SELECT count(*) FROM history WHERE stack_id = $1 AND kind IN ('task-failed', 'ignored')", id), id)
	}
}

// tearDown is the failure handling: DESTROY (dropping the fault marker) from a provision that
// failed for good, to removal.
func (ss *satisfierSystem) tearDown(id string) {
	ss.t.Helper()
	ss.sendEvent(id, "DESTROY", map[string]any{"metadata": map[string]any{"fault": nil}})
	ss.waitRemoved(id)
	require.Equal(ss.t, []string{"INIT->PROVISION", "PROVISION->TEARDOWN", "TEARDOWN->DESTROYED"}, ss.transitions(id))
}

// TestCrashingSatisfierDeadLettersToTaskError: the satisfier is killed every time it receives one
// stack's task (as by an out-of-memory kill). After the deployed maxReceiveCount the message is
// in the task dead-letter queue and the next sweep fails the run with the reason; the retry policy
// dispatches it again, that run dead-letters too, and the stack rests with the task failed until
// its failure handling (DESTROY) tears it down. The messages stay in the dead-letter queue; a
// redrive by hand does not run them (their runs are not in the stack's fence any more): the
// satisfier reports them stale, and those results are ignored. Other stacks run their lifecycles
// meanwhile.
func TestCrashingSatisfierDeadLettersToTaskError(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("fragile", strings.Replace(fragileMachine, "TIMEOUT", "20", 1)) // a deadline of 3 × (20 s + 6 s): the dead letter comes first
	ss.lambda.Returns("work-fn", `{"done": true}`)
	ss.lambda.Returns("cleanup-fn", `{}`)
	sm := ss.system.startStateManager(1, deadlineSettings(ss)...)
	plain := ss.bin
	ss.bin = harness.BuildBinaryWithTags(t, "./functions/satisfier", faults.BuildTag)
	marker := "crash-" + newID()
	satEnv := []string{"VISIBILITY_TIMEOUT=6s", faults.EnvVar + "=" + faults.CrashOnTask + "=" + marker}
	sats := []*harness.Process{ss.startSatisfier(satEnv...)}

	doomed := "doomed-" + newID()
	started := time.Now()
	ss.sendEvent(doomed, "LAUNCH", map[string]any{"machine": "fragile", "metadata": map[string]any{"fault": marker}})
	sats[0].WaitForOutput(t, faults.Announcement+" "+faults.CrashOnTask, 60*time.Second)
	others := stackIDs("fine", 3)
	for _, id := range others {
		ss.sendEvent(id, "LAUNCH", map[string]any{"machine": "fragile"})
	}

	limit := time.Now().Add(3 * time.Minute)
	for len(ss.failedRuns(doomed)) < 2 {
		require.True(t, time.Now().Before(limit), "the doomed stack's runs were never settled: %v", ss.failedRuns(doomed))
		if sats[len(sats)-1].Exited() {
			sats = append(sats, ss.startSatisfier(satEnv...))
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(started)
	runs := ss.failedRuns(doomed)
	for run, by := range runs {
		require.Equal(t, message.SettledByDeadLetter, by, "run %s", run)
	}
	st := ss.stack(doomed)
	require.Equal(t, "PROVISION", st.State)
	work := tasksOf(st)["work"]
	require.Equal(t, message.TaskFailed, work.Status, "the retry policy is spent: the task rests failed")
	require.Equal(t, 2, work.Attempt)
	require.Contains(t, work.Description, fmt.Sprintf("dead-lettered after %d receives", deployed.TaskQueueMaxReceiveCount))
	require.Contains(t, work.Description, "kept in the task dead-letter queue for inspection")
	require.Equal(t, 1, ss.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'task-dispatched' AND reason = 'automatic retry 1 of 1'`, doomed))
	// Each run was received maxReceiveCount times, each time killing the satisfier.
	crashes := 0
	for _, p := range sats {
		crashes += strings.Count(p.Output(), faults.Announcement+" "+faults.CrashOnTask)
	}
	require.Equal(t, 2*deployed.TaskQueueMaxReceiveCount, crashes)
	require.Contains(t, sm.Output(), "task run settled as failed")
	t.Logf("two runs dead-lettered and settled in %s, %d satisfier crashes", took.Round(time.Second), crashes)

	// The messages are kept; redriven by hand to a satisfier that does not crash, they do not run:
	// the fence no longer names their runs, so the satisfier reports them stale, which changes
	// nothing.
	require.Eventually(t, func() bool { return ss.queueDepth(ss.taskDLQ) == 2 }, 30*time.Second, 100*time.Millisecond)
	for _, p := range sats {
		if !p.Exited() {
			require.NoError(t, p.Stop())
		}
	}
	ss.bin = plain
	ss.startSatisfier("VISIBILITY_TIMEOUT=6s")
	ss.redrive(ss.taskDLQ, ss.taskURL, 2)
	require.Eventually(t, func() bool {
		return ss.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'ignored' AND event = 'TASK_ERROR'`, doomed) == 2
	}, 60*time.Second, 100*time.Millisecond, "the redriven runs' stale reports are recorded as ignored")
	require.Zero(t, ss.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'ignored' AND event = 'TASK_COMPLETED'`, doomed),
		"the redriven runs did not run")
	require.Equal(t, message.TaskFailed, tasksOf(ss.stack(doomed))["work"].Status, "and change nothing")

	ss.requireHealthyLifecycles(others)
	ss.tearDown(doomed)
}

// TestHungSatisfierIsSettledByDeadline: the satisfier stalls on one stack's task longer than the
// run's deadline (maxReceiveCount × (timeout + visibility) = 3 × (1 s + 6 s) = 21 s after its
// dispatch). The sweep fails the run at its deadline with the reason, the retry policy dispatches
// it again, that run is settled by its deadline too, and the stack rests with the task failed
// until its failure handling tears it down; the genuine results that come after are ignored as
// stale. Other stacks run their lifecycles meanwhile on the same satisfier.
func TestHungSatisfierIsSettledByDeadline(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("fragile", strings.Replace(fragileMachine, "TIMEOUT", "1", 1))
	ss.lambda.Returns("work-fn", `{"done": true}`)
	ss.lambda.Returns("cleanup-fn", `{}`)
	sm := ss.system.startStateManager(1, deadlineSettings(ss)...)
	ss.bin = harness.BuildBinaryWithTags(t, "./functions/satisfier", faults.BuildTag)
	marker := "hang-" + newID()
	// Several workers: a stalled one holds up only its own batch.
	sat := ss.startSatisfier("VISIBILITY_TIMEOUT=6s", "WORKERS=4", faults.EnvVar+"="+faults.HangOnTask+"="+marker+"@30s")

	doomed := "stalled-" + newID()
	others := stackIDs("fine", 3)
	ss.sendEvent(doomed, "LAUNCH", map[string]any{"machine": "fragile", "metadata": map[string]any{"fault": marker}})
	for _, id := range others {
		ss.sendEvent(id, "LAUNCH", map[string]any{"machine": "fragile"})
	}
	ss.requireHealthyLifecycles(others)

	require.Eventually(t, func() bool { return len(ss.failedRuns(doomed)) == 2 }, 2*time.Minute, 100*time.Millisecond,
		"the stalled stack's runs were never settled")
	for run, by := range ss.failedRuns(doomed) {
		require.Equal(t, message.SettledByDeadline, by, "run %s", run)
	}
	st := ss.stack(doomed)
	work := tasksOf(st)["work"]
	require.Equal(t, message.TaskFailed, work.Status)
	require.Equal(t, 2, work.Attempt)
	require.Contains(t, work.Description, "no result within 21s of its dispatch")
	require.Contains(t, work.Description, message.TaskLogKey("fragile", doomed, "work", work.RunID))
	// Each run's deadline is stored with it: 21 s after the run was due.
	require.NotNil(t, work.Deadline)
	require.Equal(t, 21*time.Second, work.Deadline.Sub(work.DispatchedAt))
	require.Contains(t, sm.Output(), "task run settled as failed")

	require.Eventually(t, func() bool {
		// A stalled run that wakes after its run was settled finds itself out of the fence and
		// reports itself stale; either way its late result is ignored.
		return ss.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'ignored' AND event IN ('TASK_COMPLETED', 'TASK_ERROR')`, doomed) == 2
	}, 2*time.Minute, 100*time.Millisecond, "both stalled runs' late results were ignored")
	require.Equal(t, 2, strings.Count(sat.Output(), faults.Announcement+" "+faults.HangOnTask))
	require.Equal(t, message.TaskFailed, tasksOf(ss.stack(doomed))["work"].Status)
	ss.tearDown(doomed)
}
