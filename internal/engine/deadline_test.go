package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
)

func TestDeadlinesAfter(t *testing.T) {
	t.Parallel()
	d := Deadlines{DefaultTimeout: 15 * time.Minute, Visibility: 90 * time.Minute, Receives: 3}
	require.Equal(t, 3*(15+90)*time.Minute, d.After(message.TaskSpec{}), "the executor's default timeout")
	require.Equal(t, 3*(2*time.Minute+90*time.Minute), d.After(message.TaskSpec{TimeoutSeconds: 120}), "the task's own timeout")
	require.Zero(t, Deadlines{}.After(message.TaskSpec{TimeoutSeconds: 60}), "no policy, no deadline")

	// On CodeBuild: the hand-over (a default run), the build's hour in CodeBuild's queue, and the
	// build's timeout (the task's limit, the margin allowance and the start allowance).
	handOver := 3 * (15 + 90) * time.Minute
	eightHours := message.TaskSpec{Executor: "terraform", TimeoutSeconds: message.MaxTimeoutSeconds, Runner: message.RunnerCodeBuild}
	require.Equal(t, max(3*(8*time.Hour+90*time.Minute), handOver+time.Hour+8*time.Hour), d.After(eightHours))
	short := message.TaskSpec{Executor: "terraform", Runner: message.RunnerCodeBuild}
	require.Equal(t, handOver+time.Hour+23*time.Minute, d.After(short), "the default 15 minutes, in a build")
	oneShot := Deadlines{DefaultTimeout: 15 * time.Minute, Visibility: 90 * time.Minute, Receives: 1}
	require.Equal(t, 105*time.Minute+time.Hour+8*time.Hour, oneShot.After(eightHours),
		"8 hours fit in the deadline even with a single receive")
	require.Greater(t, oneShot.After(message.TaskSpec{Executor: "terraform", TimeoutSeconds: 7200}), 3*time.Hour,
		"a terraform task beyond 15 minutes is on CodeBuild without saying so")
}

// A task's runner reaches the satisfier in its task message.
func TestDispatchCarriesTheRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.m.Tasks["infra"].Runner = message.RunnerCodeBuild
	d := b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env"})
	runners := map[string]string{}
	for _, m := range d.Dispatch {
		runners[m.Task.Task.Name] = m.Task.Task.Runner
	}
	require.Equal(t, map[string]string{"infra": message.RunnerCodeBuild, "dns": ""}, runners)
}

// TestEveryDispatchedRunGetsADeadline: first dispatches and retries (after their backoff delay)
// carry the deadline the policy derives, and a settled run keeps the one it had.
func TestEveryDispatchedRunGetsADeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.m.Tasks["infra"].TimeoutSeconds = 60
	b.deadlines = Deadlines{DefaultTimeout: 10 * time.Minute, Visibility: time.Hour, Receives: 3}
	d := b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env"})
	require.Len(t, d.Dispatch, 2)
	tasks := map[string]message.StackTask{}
	for _, tk := range d.Stack.Tasks {
		tasks[tk.Name] = tk
	}
	require.NotNil(t, tasks["infra"].Deadline)
	require.Equal(t, b.now.Add(3*(time.Minute+time.Hour)), *tasks["infra"].Deadline)
	require.Equal(t, b.now.Add(3*(10*time.Minute+time.Hour)), *tasks["dns"].Deadline)
	for _, m := range d.Dispatch {
		require.NotNil(t, m.Task.Stack.Tasks[0].Deadline, "the task message carries the deadlines too")
	}

	d = b.result(b.runOf("dns"), false) // dns retries after 10 s
	require.Len(t, d.Dispatch, 1)
	dns := d.Stack.Tasks[1]
	require.Equal(t, b.now.Add(10*time.Second).Add(3*(10*time.Minute+time.Hour)), *dns.Deadline, "counted from the end of the delay")
}

// TestSettledRunIsMarkedAndItsLateResultIgnored: a TASK_ERROR the state manager applies for an
// overdue run fails the task like any other (retry policy included), says so in history and in
// the notification, and the run's genuine result arriving later is ignored.
func TestSettledRunIsMarkedAndItsLateResultIgnored(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra := b.runOf("infra")
	d := b.apply(message.Event{Event: message.EventTaskError, TaskRunID: infra, Description: "no result within 3h",
		SettledBy: message.SettledByDeadline})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, message.TaskFailed, d.Stack.Tasks[0].Status)
	require.Equal(t, message.SettledByDeadline, d.History[0].Detail["settledBy"])
	require.Len(t, d.Notifications, 1)
	require.Equal(t, message.SettledByDeadline, d.Notifications[0].SettledBy)

	late := b.result(infra, true)
	require.Equal(t, Ignored, late.Outcome)
	require.Equal(t, KindIgnored, late.History[0].Kind, "the late result is recorded")

	dns := b.runOf("dns") // dns has a retry policy: a forced failure is retried like any other
	d = b.apply(message.Event{Event: message.EventTaskError, TaskRunID: dns, SettledBy: message.SettledByDeadLetter})
	require.Len(t, d.Dispatch, 1)
	require.NotEqual(t, dns, b.runOf("dns"))
	require.Equal(t, Ignored, b.result(dns, true).Outcome, "the old run's result is stale")
}
