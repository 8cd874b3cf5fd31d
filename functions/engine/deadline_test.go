package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/message"
)

func TestDeadlinesAfter(t *testing.T) {
	t.Parallel()
	d := Deadlines{DefaultTimeout: 15 * time.Minute, Visibility: 90 * time.Minute, Receives: 3}
	require.Equal(t, 3*(15+90)*time.Minute, d.After(0), "the executor's default timeout")
	require.Equal(t, 3*(2*time.Minute+90*time.Minute), d.After(120), "the task's own timeout")
	require.Zero(t, Deadlines{}.After(60), "no policy, no deadline")
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
