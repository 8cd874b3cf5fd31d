// Package dispatch is the task satisfier's per-message handler: it hands each task message to the
// executor its task names and publishes the one result — TASK_COMPLETED or TASK_ERROR — that the
// state manager waits for, within the run's time limit and the result's size limits.
package dispatch

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/executor/redact"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/internal/queue"
)

// Defaults of the Dispatcher's zero-valued fields.
const (
	// DefaultTimeout is Lambda's longest run: a task takes no longer in local mode than it could
	// in Lambda.
	DefaultTimeout = 15 * time.Minute
	// DefaultMargin leaves room for Terraform's default stop grace, storing the log and
	// publishing the result.
	DefaultMargin = 30 * time.Second
)

// Limits on a result, so the state manager can always read it: SQS takes at most 256 KiB per
// message, and a long Terraform error belongs in the log, not in every history row.
const (
	maxResultBytes      = 250 * 1024
	maxDescriptionBytes = 8 * 1024
)

// Dispatcher runs task messages and publishes their results. Its Handle method is the
// per-message handler of the task queue.
type Dispatcher struct {
	// Executors by the name a machine's task gives (terraform, lambda).
	Executors map[string]executor.Executor
	// Publish sends one result to the event queue. Required.
	Publish func(ctx context.Context, msg queue.Outgoing) error
	// Redact masks secrets in descriptions and outputs. Defaults to a nil Redactor, which masks
	// URL passwords only.
	Redact *redact.Redactor
	// Timeout bounds a run whose task sets no timeoutSeconds. Defaults to DefaultTimeout.
	Timeout time.Duration
	// Margin is kept free before the deadline of the handler's context (a Lambda invocation's
	// end): a run is stopped that much earlier, so there is time to stop Terraform cleanly, store
	// its log and publish the result. Defaults to DefaultMargin.
	Margin time.Duration
	// Current, when set, reports whether a task's run is still current for its stack (the fence,
	// internal/fence). A run that is not is not started: its TASK_ERROR says it is stale (the
	// state manager ignores it). An error reading it makes the message come back.
	Current func(ctx context.Context, task message.Task) (bool, error)
	// HandOver, when set, takes the runs of tasks that run on CodeBuild (message.TaskSpec.OnCodeBuild):
	// it starts the run's build (internal/executor/codebuild) with the run's time limit and
	// reports the build's id and whether it started it; the build publishes the result, so Handle
	// publishes none. An error makes the message come back. Nil: a task that its machine puts on
	// CodeBuild explicitly (runner: codebuild) fails saying so, and one put there only by its
	// timeoutSeconds runs here, within this satisfier's own time.
	HandOver func(ctx context.Context, task message.Task, limit time.Duration) (buildID string, started bool, err error)
	// InBuild marks the one-task runner inside a build: it runs the task it was handed itself,
	// whatever its runner.
	InBuild bool
	// Metrics receives one EMF record per published result; nil records none.
	Metrics *metrics.Recorder
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Handle runs one task message and publishes exactly one result for it: TASK_COMPLETED, or
// TASK_ERROR when the task failed, timed out, names an unknown executor or is malformed. A
// message that names no stack cannot be answered: it is logged and acknowledged.
//
// It returns an error — the message is delivered again — only when the result could not be
// published, or when the function's time ran out before the task could start.
func (d *Dispatcher) Handle(ctx context.Context, m queue.Message) error {
	log := d.logger().With("messageId", m.ID)
	task, err := message.ParseTask([]byte(m.Body))
	if err != nil && task.Stack.ID == "" {
		log.ErrorContext(ctx, "malformed task message names no stack: acknowledged without a result",
			"error", err.Error(), "body", executor.Shorten(d.Redact.String(m.Body), 2048))
		return nil
	}
	log = log.With("stackId", task.Stack.ID, "task", task.Task.Name, "taskRunId", task.TaskRunID)
	if err != nil {
		return d.publish(ctx, log, m, failed(task, err.Error()), time.Now())
	}
	ex, ok := d.Executors[task.Task.Executor]
	if !ok {
		return d.publish(ctx, log, m, failed(task, fmt.Sprintf("unknown executor %q: this satisfier runs %s tasks",
			task.Task.Executor, strings.Join(d.executorNames(), " and "))), time.Now())
	}

	if d.Current != nil {
		current, err := d.Current(ctx, task)
		if err != nil {
			return fmt.Errorf("error checking that run %s of task %s is current: %w", task.TaskRunID, task.Task.Name, err)
		}
		if !current {
			log.InfoContext(ctx, "stale task run not started", "event", "TASK_STALE", "outcome", "stale")
			return d.publish(ctx, log, m, failed(task, executor.Stale(task).Error()), time.Now())
		}
	}
	if task.Task.OnCodeBuild() && !d.InBuild {
		if d.HandOver != nil {
			return d.handOver(ctx, log, task)
		}
		if task.Task.Runner == message.RunnerCodeBuild {
			return d.publish(ctx, log, m, failed(task, fmt.Sprintf("task %s runs on CodeBuild (runner: codebuild), "+
				"but this satisfier has no CodeBuild project to hand it to: set CODEBUILD_PROJECT", task.Task.Name)), time.Now())
		}
	}
	limit, why := d.limit(ctx, task)
	if limit <= 0 {
		// Not the task's fault: another invocation, with its own time, will run it.
		return fmt.Errorf("task %s not started: the function's time is up (%s left, %s kept for stopping cleanly)",
			task.Task.Name, time.Until(deadline(ctx)).Round(time.Second), d.margin())
	}
	log.InfoContext(ctx, "task started", "event", "TASK_STARTED", "outcome", "started", "executor", task.Task.Executor, "state", task.Stack.State,
		"timeLimit", limit.String(), "receiveCount", m.ReceiveCount)
	started := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, limit)
	out, runErr := ex.Run(runCtx, task)
	stopped := runErr != nil && runCtx.Err() != nil
	timedOut := stopped && errors.Is(runCtx.Err(), context.DeadlineExceeded)
	cancel()

	res := message.Result{Event: message.EventTaskCompleted, StackID: task.Stack.ID, Task: task.Task,
		TaskRunID: task.TaskRunID, Log: out.Log}
	switch {
	case timedOut:
		res.Event = message.EventTaskError
		res.Description = fmt.Sprintf("timed out after %s (%s) and was stopped: %v", limit, why, runErr)
	case stopped:
		// Not the run's time: the satisfier itself was told to stop (SIGTERM: a build stopped,
		// a local satisfier shut down).
		res.Event = message.EventTaskError
		res.Description = fmt.Sprintf("stopped after %s, before it finished, because the satisfier was told to stop: %v",
			time.Since(started).Round(time.Second), runErr)
	case runErr != nil:
		res.Event = message.EventTaskError
		res.Description = runErr.Error()
	default:
		res.Outputs = d.redactOutputs(out.Outputs)
		if err := res.Outputs.Validate("outputs"); err != nil {
			res = failed(task, fmt.Sprintf("the task succeeded but its outputs cannot be stored: %v", err))
			res.Log = out.Log
		} else {
			res.Description = strings.Join(out.Notes, "; ")
			res.Outcome = out.Outcome
		}
	}
	return d.publish(ctx, log, m, res, started)
}

// handOver starts the build of a CodeBuild-run task; the build publishes its result.
func (d *Dispatcher) handOver(ctx context.Context, log *slog.Logger, task message.Task) error {
	limit, _ := d.taskLimit(task)
	started := time.Now()
	buildID, fresh, err := d.HandOver(ctx, task, limit)
	if err != nil {
		return fmt.Errorf("error handing run %s of task %s over to CodeBuild: %w", task.TaskRunID, task.Task.Name, err)
	}
	outcome := "handed-over"
	if !fresh {
		outcome = "already-handed-over" // a redelivered hand-over: the run's build exists
	}
	log.InfoContext(ctx, "task handed over to CodeBuild", "event", "TASK_HANDED_OVER", "outcome", outcome,
		"buildId", buildID, "executor", task.Task.Executor, "state", task.Stack.State, "timeLimit", limit.String(),
		"durationMs", time.Since(started).Milliseconds())
	return nil
}

// Fail publishes a TASK_ERROR for task's run on behalf of a runner that could not: a CodeBuild
// build that ended without reporting. logURL names the run's log ("" for none). A result the run
// did publish has the same deduplication id, and the state manager ignores a second result for a
// settled run, so failing a run that did report changes nothing.
func (d *Dispatcher) Fail(ctx context.Context, task message.Task, description, logURL string) error {
	log := d.logger().With("stackId", task.Stack.ID, "task", task.Task.Name, "taskRunId", task.TaskRunID)
	res := failed(task, description)
	res.Log = logURL
	return d.publish(ctx, log, queue.Message{ID: "run:" + task.TaskRunID}, res, time.Now())
}

// failed builds the TASK_ERROR result for task.
func failed(task message.Task, description string) message.Result {
	return message.Result{Event: message.EventTaskError, StackID: task.Stack.ID, Task: task.Task,
		TaskRunID: task.TaskRunID, Description: description}
}

// publish sends res to the stack's FIFO group with a deduplication id derived from the task run,
// so a run redelivered after its result was sent does not report twice within SQS's window.
func (d *Dispatcher) publish(ctx context.Context, log *slog.Logger, m queue.Message, res message.Result, started time.Time) error {
	res.Description = executor.Shorten(d.Redact.String(res.Description), maxDescriptionBytes)
	body, err := json.Marshal(res)
	if err == nil && len(body) > maxResultBytes {
		size := len(body)
		res.Event, res.Outputs = message.EventTaskError, nil
		res.Description = fmt.Sprintf("the task's result is %d bytes, more than the %d bytes a result may take "+
			"(a queue message carries at most 256 KiB): return fewer or smaller outputs", size, maxResultBytes)
		body, err = json.Marshal(res)
	}
	if err != nil {
		return fmt.Errorf("error encoding the result of task %s: %w", res.Task.Name, err)
	}
	dedupKey := res.TaskRunID
	if dedupKey == "" {
		dedupKey = "message:" + m.ID
	}
	// The handler's context may be at its deadline already (a timed-out run); the result must
	// still go out, within the margin kept for it.
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.margin())
	defer cancel()
	if err := d.Publish(pubCtx, queue.Outgoing{Body: string(body), GroupID: res.StackID, DedupID: DedupID(dedupKey)}); err != nil {
		return fmt.Errorf("error publishing the %s result of task %s run %s: %w", res.Event, res.Task.Name, res.TaskRunID, err)
	}
	took := time.Since(started)
	result := "completed"
	if res.Event == message.EventTaskError {
		result = "failed"
	}
	executorName := res.Task.Executor
	if executorName == "" {
		executorName = "unknown"
	}
	d.Metrics.Record([]metrics.Dim{{Name: metrics.DimExecutor, Value: executorName}, {Name: metrics.DimResult, Value: result}},
		metrics.Value{Name: metrics.TaskRuns, Unit: metrics.Count, Value: 1},
		metrics.Value{Name: metrics.TaskRunDuration, Unit: metrics.Milliseconds, Value: float64(took.Milliseconds())})
	attrs := []any{"event", res.Event, "outcome", result, "durationMs", took.Milliseconds()}
	if res.Description != "" {
		attrs = append(attrs, "description", executor.Shorten(res.Description, 2048))
	}
	if res.Log != "" {
		attrs = append(attrs, "log", res.Log)
	}
	if res.Event == message.EventTaskError {
		log.WarnContext(ctx, "task failed", attrs...)
	} else {
		log.InfoContext(ctx, "task completed", append(attrs, "outputs", len(res.Outputs))...)
	}
	return nil
}

// DedupID is the FIFO deduplication id of the result of one task run: a hash, because a
// taskRunId is not guaranteed to fit SQS's 128 characters of its allowed alphabet.
func DedupID(taskRunID string) string {
	sum := sha256.Sum256([]byte("stackseam-result:" + taskRunID))
	return hex.EncodeToString(sum[:])
}

// limit is how long one run of task may take, and why: the task's timeoutSeconds (or the
// default), cut short by the handler's deadline less the margin.
func (d *Dispatcher) limit(ctx context.Context, task message.Task) (time.Duration, string) {
	limit, why := d.taskLimit(task)
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - d.margin(); left < limit {
			limit = left.Truncate(time.Second)
			why = fmt.Sprintf("the function's remaining time, less %s to stop cleanly and report", d.margin())
		}
	}
	return limit, why
}

// taskLimit is the time limit task itself asks for: its timeoutSeconds, or the default.
func (d *Dispatcher) taskLimit(task message.Task) (time.Duration, string) {
	if task.Task.TimeoutSeconds > 0 {
		return time.Duration(task.Task.TimeoutSeconds) * time.Second, fmt.Sprintf("the task's timeoutSeconds: %d", task.Task.TimeoutSeconds)
	}
	if d.Timeout > 0 {
		return d.Timeout, "the default task timeout"
	}
	return DefaultTimeout, "the default task timeout"
}

func deadline(ctx context.Context) time.Time {
	dl, _ := ctx.Deadline()
	return dl
}

func (d *Dispatcher) margin() time.Duration {
	if d.Margin > 0 {
		return d.Margin
	}
	return DefaultMargin
}

func (d *Dispatcher) logger() *slog.Logger {
	return cmp.Or(d.Logger, slog.Default())
}

func (d *Dispatcher) executorNames() []string {
	names := make([]string, 0, len(d.Executors))
	for name := range d.Executors {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// redactOutputs masks secrets in string outputs: a script that outputs a credential from the
// environment must not spread it through the queue and the database.
func (d *Dispatcher) redactOutputs(outputs message.Metadata) message.Metadata {
	if len(outputs) == 0 {
		return nil
	}
	out := make(message.Metadata, len(outputs))
	for k, v := range outputs {
		if s, ok := v.(string); ok {
			v = d.Redact.String(s)
		}
		out[k] = v
	}
	return out
}

// errNoExecutors keeps a misconfigured satisfier from starting: it could only fail every task.
var errNoExecutors = errors.New("dispatch: a Dispatcher needs at least one executor and a Publish function")

// Check reports a Dispatcher that cannot work, so main can refuse to start.
func (d *Dispatcher) Check() error {
	if len(d.Executors) == 0 || d.Publish == nil {
		return errNoExecutors
	}
	return nil
}
