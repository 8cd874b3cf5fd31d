package applier

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/internal/store"
)

// No stack waits in silence (README.md, "Every dispatched task ends"): the sweep settles as
// failed every task run that can no longer get a result, through the same path as any event
// (apply), so history, notifications, metrics and the machine's retry policy all apply. It
// applies the TASK_ERROR itself rather than sending it through the event queue: it needs no
// signature and no queue round trip, and its idempotency key (one per run) makes a second sweep,
// or a second state manager sweeping at once, change nothing.

// overdueBatch bounds the runs one sweep settles by deadline; the next sweep takes the rest.
const overdueBatch = 200

// settleOverdue fails every pending run past its deadline.
func (a *Applier) settleOverdue(ctx context.Context, now time.Time) (int, error) {
	runs, err := a.Store.OverdueRuns(ctx, now, overdueBatch)
	if err != nil {
		return 0, err
	}
	settled := 0
	var firstErr error // one stack's failure (its machine cannot be loaded) does not stop the others
	for _, r := range runs {
		logKey := message.TaskLogKey(r.Machine, r.StackID, r.Task, r.RunID)
		reason := fmt.Sprintf("no result within %s of its dispatch (deadline %s) — the satisfier may have crashed or hung; "+
			"its log, if any, is at %s in the satisfier's bucket, and the satisfier's log lines carry taskRunId %s",
			r.Deadline.Sub(r.DispatchedAt).Round(time.Second), r.Deadline.Format(time.RFC3339), logKey, r.RunID)
		ok, err := a.settleRun(ctx, r.StackID, r.Task, r.RunID, reason, message.SettledByDeadline, "deadline-sweep")
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if ok {
			settled++
		}
	}
	if settled > 0 {
		a.Metrics.Record(nil, metrics.Value{Name: metrics.TasksOverdue, Unit: metrics.Count, Value: float64(settled)})
	}
	return settled, firstErr
}

// settleRun applies a TASK_ERROR for one run on the state manager's own authority. It reports
// whether the run was settled by it (false: the run had already been settled or replaced, so the
// error was ignored, or it had been applied before).
func (a *Applier) settleRun(ctx context.Context, stackID, task, runID, reason, by, messageID string) (bool, error) {
	ev := message.Event{StackID: stackID, Event: message.EventTaskError, TaskRunID: runID,
		Task: &message.TaskSpec{Name: task}, Description: reason, SettledBy: by}
	key := store.SettleKeyPrefix(by) + stackID + ":" + runID
	log := a.logger().With("stackId", stackID, "event", ev.Event, "taskRunId", runID, "settledBy", by)
	res, err := a.apply(ctx, ev, key, messageID, log)
	if err != nil {
		return false, fmt.Errorf("error settling run %s of stack %s (%s): %w", runID, stackID, by, err)
	}
	flushErr := res.flushErr
	if !res.flushed {
		flushErr = a.flush(ctx, res.Outbox)
	}
	if err := flushErr; err != nil {
		// Committed: the stale-outbox pass of a later sweep sends what is left.
		log.Warn("messages of a settled run not sent yet", "error", err.Error())
	}
	a.logDecision(log, res.ApplyResult, 0)
	settled := !res.Duplicate && res.Decision.Outcome == engine.Applied
	if settled {
		log.Warn("task run settled as failed: no result will come", "task", task, "reason", reason)
	}
	return settled, nil
}

// TaskDeadLetterQueue is the task queue's dead-letter queue, which the sweep peeks: a task message
// there has been received maxReceiveCount times without its run being settled, so the satisfier
// died on it every time (out of memory, a hard timeout, a crash). The sweep settles each such run
// as failed at once and leaves the message where it is, kept for inspection (it is received with
// a short visibility timeout and never deleted); the run's idempotency key remembers it was
// settled, so later peeks change nothing.
type TaskDeadLetterQueue struct {
	Client *sqs.Client
	URL    string
	// Receives is the task queue's maxReceiveCount, for the reason a person reads.
	Receives int
	// Visibility hides the messages one sweep has seen from its next receives, so one sweep sees
	// more than ten; short, so a person inspecting the queue sees them again at once. Defaults to
	// 2 seconds.
	Visibility time.Duration
	// MaxReceives bounds the ReceiveMessage calls of one sweep (ten messages each). Defaults to 10.
	MaxReceives int
}

// settleDeadLettered peeks the task dead-letter queue and settles the runs of its messages.
func (a *Applier) settleDeadLettered(ctx context.Context) (int, error) {
	q := a.TaskDeadLetters
	if q == nil || q.Client == nil || q.URL == "" {
		return 0, nil
	}
	visibility := q.Visibility
	if visibility <= 0 {
		visibility = 2 * time.Second
	}
	receives := q.MaxReceives
	if receives <= 0 {
		receives = 10
	}
	settled := 0
	var firstErr error // as in settleOverdue: the other messages are still settled
	for range receives {
		out, err := q.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: 0,
			VisibilityTimeout: int32(visibility / time.Second),
		})
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("error peeking the task dead-letter queue: %w", err)
			}
			break
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			n, err := a.settleDeadLetter(ctx, q, m)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			settled += n
		}
	}
	if settled > 0 {
		a.Metrics.Record(nil, metrics.Value{Name: metrics.TasksDeadLettered, Unit: metrics.Count, Value: float64(settled)})
	}
	return settled, firstErr
}

func (a *Applier) settleDeadLetter(ctx context.Context, q *TaskDeadLetterQueue, m types.Message) (int, error) {
	id := aws.ToString(m.MessageId)
	task, err := message.ParseTask([]byte(aws.ToString(m.Body)))
	if err != nil {
		// Nothing to settle; the message stays for whoever inspects the queue.
		a.logger().Warn("task dead-letter queue holds a message that is not a task", "messageId", id, "error", err.Error())
		return 0, nil
	}
	receives := fmt.Sprintf("%d receives", q.Receives)
	if q.Receives <= 0 {
		receives = "its last receive"
	}
	reason := fmt.Sprintf("dead-lettered after %s without a result — the satisfier died on it each time (out of memory, a hard timeout or a crash); "+
		"the message is kept in the task dead-letter queue for inspection (message id %s); the log, if any, is at %s in the satisfier's bucket",
		receives, id, message.TaskLogKey(task.Stack.Machine, task.Stack.ID, task.Task.Name, task.TaskRunID))
	ok, err := a.settleRun(ctx, task.Stack.ID, task.Task.Name, task.TaskRunID, reason, message.SettledByDeadLetter, id)
	if err != nil || !ok {
		return 0, err
	}
	return 1, nil
}
