package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// TestSweepSettlesOverdueRuns: a run with no result by its deadline is failed by the sweep, once,
// with a reason naming its log; its late genuine result is recorded as ignored.
func TestSweepSettlesOverdueRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	b.app.Now = func() time.Time { return now }
	b.app.Deadlines = engine.Deadlines{DefaultTimeout: time.Second, Visibility: time.Second, Receives: 1}
	require.NoError(t, b.handle(t, "late-1", `{"stackId":"late-1","event":"LAUNCH","machine":"pair"}`, nil))
	require.Len(t, b.tasks.sent, 2)

	now = now.Add(time.Second)
	res, err := b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Zero(t, res.Overdue, "within the deadline")

	now = now.Add(2 * time.Second)
	res, err = b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, res.Overdue)
	st, err := b.store.GetStack(t.Context(), "late-1")
	require.NoError(t, err)
	for _, tk := range st.Tasks {
		require.Equal(t, message.TaskFailed, tk.Status)
		require.Contains(t, tk.Description, "no result within 2s of its dispatch")
		require.Contains(t, tk.Description, "the satisfier may have crashed or hung")
		require.Contains(t, tk.Description, message.TaskLogKey("pair", "late-1", tk.Name, tk.RunID))
	}
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM history WHERE stack_id = 'late-1' AND kind = 'task-failed' AND detail->>'settledBy' = 'deadline'`))

	res, err = b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Zero(t, res.Overdue, "settled once")

	var task message.Task
	require.NoError(t, json.Unmarshal([]byte(b.tasks.sent[0].Body), &task))
	late := fmt.Sprintf(`{"event":"TASK_COMPLETED","stackId":"late-1","taskRunId":%q,"task":{"name":%q,"executor":"lambda","config":{}}}`,
		task.TaskRunID, task.Task.Name)
	require.NoError(t, b.handle(t, "late-1", late, nil))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM history WHERE stack_id = 'late-1' AND kind = 'ignored' AND task_run_id = $1`, task.TaskRunID),
		"the late result is recorded as ignored")
	st, err = b.store.GetStack(t.Context(), "late-1")
	require.NoError(t, err)
	require.Equal(t, "PROVISION", st.State)
}

// TestSweepSettlesDeadLetteredTasksAndKeepsThem: a task message in the task dead-letter queue
// fails its run at the next sweep, and stays in the queue for inspection.
func TestSweepSettlesDeadLetteredTasksAndKeepsThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dlq, _ := harness.CreateQueue(t, "applier-task-dlq", false, deployed.TaskQueueMaxReceiveCount)
	client := harness.SQSClient(t)
	b.app.TaskDeadLetters = &TaskDeadLetterQueue{Client: client, URL: dlq, Receives: deployed.TaskQueueMaxReceiveCount, Visibility: time.Second}
	require.NoError(t, b.handle(t, "dead-1", `{"stackId":"dead-1","event":"LAUNCH","machine":"pair"}`, nil))
	require.Len(t, b.tasks.sent, 2)
	_, err := client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(b.tasks.sent[0].Body)})
	require.NoError(t, err)
	_, err = client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String("not a task")})
	require.NoError(t, err)

	res, err := b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 1, res.DeadLettered)
	var task message.Task
	require.NoError(t, json.Unmarshal([]byte(b.tasks.sent[0].Body), &task))
	st, err := b.store.GetStack(t.Context(), "dead-1")
	require.NoError(t, err)
	for _, tk := range st.Tasks {
		if tk.RunID == task.TaskRunID {
			require.Equal(t, message.TaskFailed, tk.Status)
			require.Contains(t, tk.Description, fmt.Sprintf("dead-lettered after %d receives", deployed.TaskQueueMaxReceiveCount))
		} else {
			require.Equal(t, message.TaskPending, tk.Status, "the other task is untouched")
		}
	}

	out, err := client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(dlq),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	require.NoError(t, err)
	kept := out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)] + "+" + out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]
	require.Contains(t, []string{"0+2", "1+1", "2+0"}, kept, "both messages are kept")

	time.Sleep(1100 * time.Millisecond) // the peek's visibility timeout, so the next sweep sees them again
	res, err = b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Zero(t, res.DeadLettered, "a run is settled once")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM history WHERE stack_id = 'dead-1' AND kind = 'task-failed' AND detail->>'settledBy' = 'dead-letter'`))
}

// unavailable fails Get for one machine as a source that is down would (a transient error).
type unavailable struct {
	Machines
	down string
}

func (u unavailable) Get(ctx context.Context, name string) (*machine.Machine, error) {
	if name == u.down {
		return nil, errors.New("machine source unavailable")
	}
	return u.Machines.Get(ctx, name)
}

// TestSweepSettlesOverdueRunsWhileTheMachineSourceIsDown: the machine source failing (S3 down)
// does not hold up settling: under the stack's lock the applier only reads the versions already
// parsed (or stored), so every overdue run is settled, and the rest of the sweep runs.
func TestSweepSettlesOverdueRunsWhileTheMachineSourceIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ms := b.app.Machines // holds pair2, a copy of pair
	now := time.Now().UTC()
	b.app.Now = func() time.Time { return now }
	b.app.Deadlines = engine.Deadlines{DefaultTimeout: time.Second, Visibility: time.Second, Receives: 1}
	require.NoError(t, b.handle(t, "held-1", `{"stackId":"held-1","event":"LAUNCH","machine":"pair2"}`, nil))
	require.NoError(t, b.handle(t, "free-1", `{"stackId":"free-1","event":"LAUNCH","machine":"pair"}`, nil))
	require.Len(t, b.tasks.sent, 4)
	b.app.Machines = unavailable{Machines: ms, down: "pair2"}

	now = now.Add(time.Minute)
	res, err := b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 4, res.Overdue, "both stacks' runs")
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM history WHERE stack_id = 'free-1' AND kind = 'task-failed'`))
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM history WHERE stack_id = 'held-1' AND kind = 'task-failed'`))

	res, err = b.app.Sweep(t.Context(), time.Hour)
	require.NoError(t, err)
	require.Zero(t, res.Overdue, "each run is settled once")
}
