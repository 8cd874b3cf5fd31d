package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

// sturdyMachine runs a Terraform apply (two seconds of provisioner, so it can
// be killed in the middle) and a Lambda invocation on the way up, and a
// Terraform destroy of the same state on the way down.
var sturdyMachine = harness.Lifecycle{
	Up: []string{"infra", "notify"}, Down: []string{"teardown"},
	Tasks: harness.TerraformTasks("{type: local, location: slow}", `{sleep_seconds: "2"}`) + `
  notify:
    executor: lambda
    config: {name: notify-fn}
`,
}.YAML()

// TestSatisfierFaultsConverge extends the satisfier's kill test to several
// stacks and more faults, with the faultinject build of the satisfier: the
// first satisfier dies right after its first task ran, before publishing the
// result; the second loses half its result sends and is killed in the middle
// of a Terraform apply; the third loses half its sends too. Every task is
// run again until its result is on the queue, and the state manager settles
// each run once: every stack takes each transition once, every Terraform
// state is destroyed cleanly (not left locked), nothing is left unsent.
func TestSatisfierFaultsConverge(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("sturdy", sturdyMachine)
	ss.lambda.Returns("notify-fn", `{"notified": true}`)
	// Tasks fail many times here; the dead-letter queue is not what is tested.
	ss.setQueueAttributes(ss.taskURL, map[string]string{"RedrivePolicy": ss.redrivePolicy(ss.taskDLQ, 100)})
	ss.system.startStateManager(1, "MACHINES_DIR="+ss.machines, "FENCE_BUCKET="+ss.bucket, "SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=3s")
	ss.bin = harness.BuildBinaryWithTags(t, "./functions/satisfier", faults.BuildTag)
	generations := [][]string{
		{faults.EnvVar + "=" + faults.CrashBeforeResult + "=1"},
		{faults.EnvVar + "=" + faults.SQSSendFail + "=0.5"},
		{faults.EnvVar + "=" + faults.SQSSendFail + "=0.5"},
	}
	var sats []*harness.Process
	startNext := func() {
		// A killed apply leaves its state lock; the lease after which the next run removes it is
		// short here (applies take 2 s) so the test need not wait the default.
		env := append([]string{"VISIBILITY_TIMEOUT=2s", "RETRY_DELAY=1s", "TERRAFORM_LOCK_LEASE=6s"}, generations[min(len(sats), len(generations)-1)]...)
		sats = append(sats, ss.startSatisfier(env...))
	}
	startNext()

	ids := stackIDs("sturdy", 4)
	var launches []queue.Outgoing
	for _, id := range ids {
		launches = append(launches, queue.Outgoing{Body: fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"sturdy"}`, id),
			GroupID: id, DedupID: newID()})
	}
	require.NoError(t, queue.Send(ss.ctx, ss.sqs, ss.eventURL, launches))

	killed := false
	destroyed := map[string]bool{}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		require.True(t, time.Now().Before(deadline), "not converged; destroyed %v", destroyed)
		current := sats[len(sats)-1]
		if len(sats) == 2 && !killed && provisionerRunning(t, current.Pid()) {
			require.NoError(t, current.Kill()) // in the middle of a Terraform apply
			killed = true
		}
		if current.Exited() {
			startNext()
		}
		states, ok := ss.states(ids)
		require.True(t, ok)
		for _, id := range ids {
			if states[id] == "RUN" && !destroyed[id] {
				destroyed[id] = true
				ss.sendEvent(id, "DESTROY", nil)
			}
		}
		if len(destroyed) == len(ids) && len(states) == 0 && ss.settled(0) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	ss.requireConverged(ids) // sturdy's transitions are pair's
	for _, id := range ids {
		require.Equal(t, 3, ss.historyCount(id, "task-completed"),
			"stack %s: each task settled once", id)
		require.Equal(t, 0, ss.historyCount(id, "task-failed"),
			"stack %s: no run failed (a Terraform state left locked would)", id)
		state, ok := ss.object("sturdy/" + id + "/slow")
		require.True(t, ok)
		require.NotContains(t, state, `"terraform_data"`, "stack %s: destroyed", id)
	}
	require.True(t, killed, "the second satisfier was killed during a Terraform apply")
	require.GreaterOrEqual(t, len(sats), 3)
	require.Contains(t, sats[0].Output(), faults.Announcement+" "+faults.CrashBeforeResult)
	failedSends := 0
	for _, p := range sats[1:] {
		failedSends += strings.Count(p.Output(), faults.Announcement+" "+faults.SQSSendFail)
	}
	require.Positive(t, failedSends)
	t.Logf("%d satisfiers, %d result sends failed", len(sats), failedSends)
}
