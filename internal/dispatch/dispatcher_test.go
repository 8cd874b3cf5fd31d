package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/dispatch"
	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/executor/redact"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

// bundle is a Dispatcher running lambda tasks against a fake Lambda, with the results it
// published.
type bundle struct {
	fake *harness.LambdaFake
	d    *dispatch.Dispatcher

	mu        sync.Mutex
	published []queue.Outgoing
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{fake: harness.NewLambdaFake(t)}
	client := lambda.New(lambda.Options{
		Region: harness.Region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		BaseEndpoint: aws.String(b.fake.URL),
	})
	b.d = &dispatch.Dispatcher{
		Executors: map[string]executor.Executor{"lambda": &lambdainvoke.Invoker{Client: client}},
		Publish: func(_ context.Context, m queue.Outgoing) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.published = append(b.published, m)
			return nil
		},
	}
	return b
}

// handle runs one task message and returns the one result it published.
func (b *bundle) handle(t *testing.T, ctx context.Context, body string) (queue.Outgoing, message.Event) {
	t.Helper()
	require.NoError(t, b.d.Handle(ctx, queue.Message{ID: "msg-1", Body: body, ReceiveCount: 1}))
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Len(t, b.published, 1, "exactly one result per task message")
	out := b.published[0]
	b.published = nil
	ev, err := message.ParseEvent([]byte(out.Body))
	require.NoError(t, err, "the state manager accepts the result")
	return out, ev
}

func taskBody(t *testing.T, name, executorName string, config map[string]any, timeoutSeconds int) string {
	t.Helper()
	body, err := json.Marshal(message.Task{
		Task:      message.TaskSpec{Name: name, Executor: executorName, Config: config, TimeoutSeconds: timeoutSeconds},
		Stack:     message.Stack{ID: "stack-1", Machine: "m", State: "PROVISION", Metadata: message.Metadata{"k": "v"}},
		TaskRunID: "run-" + name,
	})
	require.NoError(t, err)
	return string(body)
}

func TestDispatcherPublishesCompletedResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Returns("fn", `{"url":"u","list":[1]}`)

	out, ev := b.handle(t, context.Background(), taskBody(t, "notify", "lambda", map[string]any{"name": "fn"}, 0))

	require.Equal(t, "stack-1", out.GroupID, "the stack's FIFO group")
	require.Equal(t, dispatch.DedupID("run-notify"), out.DedupID)
	require.Equal(t, message.EventTaskCompleted, ev.Event)
	require.Equal(t, "stack-1", ev.StackID)
	require.Equal(t, "run-notify", ev.TaskRunID)
	require.Equal(t, "notify", ev.Task.Name)
	require.Equal(t, message.Metadata{"url": "u", "list": "[1]"}, ev.Outputs)
	require.Equal(t, "output list is a list and was stored as its JSON text", ev.Description)
}

func TestDispatcherFunctionErrorIsTaskError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Fails("fn", "Boom", "no capacity")

	_, ev := b.handle(t, context.Background(), taskBody(t, "notify", "lambda", map[string]any{"name": "fn"}, 0))

	require.Equal(t, message.EventTaskError, ev.Event)
	require.Equal(t, "lambda function fn failed: Boom: no capacity", ev.Description)
	require.Empty(t, ev.Outputs)
}

func TestDispatcherUnknownExecutorIsTaskError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ev := b.handle(t, context.Background(), taskBody(t, "x", "shell", map[string]any{}, 0))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Equal(t, `unknown executor "shell": this satisfier runs lambda tasks`, ev.Description)
}

func TestDispatcherMalformedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Names a stack: the stack hears about it (the state manager records the result, whose
	// missing taskRunId it rejects, in the stack's history).
	out, err := json.Marshal(map[string]any{"task": map[string]any{"name": "x"}, "stack": map[string]any{"id": "stack-1"}})
	require.NoError(t, err)
	require.NoError(t, b.d.Handle(context.Background(), queue.Message{ID: "msg-9", Body: string(out)}))
	require.Len(t, b.published, 1)
	require.Equal(t, dispatch.DedupID("message:msg-9"), b.published[0].DedupID)
	var res message.Result
	require.NoError(t, json.Unmarshal([]byte(b.published[0].Body), &res))
	require.Equal(t, message.EventTaskError, res.Event)
	require.Equal(t, "stack-1", res.StackID)
	require.Equal(t, "malformed task message: missing taskRunId, task.executor, stack.machine", res.Description)

	// Names no stack: nobody to tell; acknowledged.
	b.published = nil
	for _, body := range []string{`{"task":`, `{}`, `[]`} {
		require.NoError(t, b.d.Handle(context.Background(), queue.Message{ID: "msg-10", Body: body}))
	}
	require.Empty(t, b.published)
}

func TestDispatcherTimeoutSecondsStopsTheRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Function("slow", func(ctx context.Context, _ []byte) harness.LambdaResponse {
		<-ctx.Done()
		return harness.LambdaResponse{}
	})
	// The fake answers only when the caller gives up: the limit stopped it.
	_, ev := b.handle(t, context.Background(), taskBody(t, "notify", "lambda", map[string]any{"name": "slow"}, 1))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.True(t, strings.HasPrefix(ev.Description, "timed out after 1s (the task's timeoutSeconds: 1) and was stopped: "), ev.Description)
}

func TestDispatcherKeepsMarginBeforeDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.d.Margin = 2 * time.Second
	b.fake.Function("slow", func(ctx context.Context, _ []byte) harness.LambdaResponse {
		<-ctx.Done()
		return harness.LambdaResponse{}
	})
	// A Lambda invocation with 3.5s left: the run gets 1s, and 2s stay for reporting.
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	_, ev := b.handle(t, ctx, taskBody(t, "notify", "lambda", map[string]any{"name": "slow"}, 600))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.True(t, strings.HasPrefix(ev.Description,
		"timed out after 1s (the function's remaining time, less 2s to stop cleanly and report) and was stopped"), ev.Description)
	require.NoError(t, ctx.Err(), "the result went out before the invocation's deadline")
}

func TestDispatcherDoesNotStartWithoutTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.d.Margin = 5 * time.Second
	b.fake.Returns("fn", `{}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := b.d.Handle(ctx, queue.Message{ID: "m", Body: taskBody(t, "notify", "lambda", map[string]any{"name": "fn"}, 0)})
	require.ErrorContains(t, err, "task notify not started: the function's time is up")
	require.Empty(t, b.published, "the message comes back for another invocation")
	require.Empty(t, b.fake.Invocations("fn"))
}

func TestDispatcherPublishFailureRedelivers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Returns("fn", `{}`)
	b.d.Publish = func(context.Context, queue.Outgoing) error { return errors.New("queue unreachable") }
	err := b.d.Handle(context.Background(), queue.Message{ID: "m", Body: taskBody(t, "notify", "lambda", map[string]any{"name": "fn"}, 0)})
	require.EqualError(t, err, "error publishing the TASK_COMPLETED result of task notify run run-notify: queue unreachable")
}

func TestDispatcherRejectsOutputsTheStateManagerCannotStore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Returns("long-value", fmt.Sprintf(`{"v":%q}`, strings.Repeat("x", 9000)))
	_, ev := b.handle(t, context.Background(), taskBody(t, "a", "lambda", map[string]any{"name": "long-value"}, 0))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Equal(t, "the task succeeded but its outputs cannot be stored: outputs.v is 9000 bytes; at most 8192 are allowed", ev.Description)

	// 190 values of 1.5 KB each pass the per-value rule but not the size of a whole event's
	// outputs (nor the 256 KiB of a queue message).
	big := map[string]string{}
	for i := range 190 {
		big[fmt.Sprintf("k%03d", i)] = strings.Repeat("y", 1500)
	}
	raw, err := json.Marshal(big)
	require.NoError(t, err)
	b.fake.Returns("big", string(raw))
	out, ev := b.handle(t, context.Background(), taskBody(t, "b", "lambda", map[string]any{"name": "big"}, 0))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Contains(t, ev.Description, "outputs is 285760 bytes (keys and values); at most 32768 are allowed")
	require.Less(t, len(out.Body), 4096)
}

func TestDispatcherRedactsSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.d.Redact = redact.FromEnviron([]string{"DB_PASSWORD=correct-horse-battery"})
	b.fake.Fails("leaky", "AuthError", "login with correct-horse-battery refused")
	b.fake.Returns("echo", `{"dsn":"postgres://app:correct-horse-battery@db/app"}`)

	_, ev := b.handle(t, context.Background(), taskBody(t, "a", "lambda", map[string]any{"name": "leaky"}, 0))
	require.Equal(t, "lambda function leaky failed: AuthError: login with [redacted:DB_PASSWORD] refused", ev.Description)
	_, ev = b.handle(t, context.Background(), taskBody(t, "b", "lambda", map[string]any{"name": "echo"}, 0))
	require.Equal(t, "postgres://app:[redacted:DB_PASSWORD]@db/app", ev.Outputs["dsn"])
}

func TestDedupIDFitsSQS(t *testing.T) {
	t.Parallel()
	id := dispatch.DedupID(strings.Repeat("é", 200))
	require.Len(t, id, 64)
	require.NotEqual(t, id, dispatch.DedupID("other"))
	require.Equal(t, id, dispatch.DedupID(strings.Repeat("é", 200)), "stable across redeliveries")
}

func TestDispatcherCheck(t *testing.T) {
	t.Parallel()
	require.Error(t, (&dispatch.Dispatcher{}).Check())
	require.NoError(t, setup(t).d.Check())
}

// TestStaleRunIsNotStarted: a run the stack's fence no longer names is not run; its one result is
// a TASK_ERROR saying it is stale. A fence that cannot be read makes the message come back.
func TestStaleRunIsNotStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.Returns("fn", `{}`)
	var asked []string
	b.d.Current = func(_ context.Context, task message.Task) (bool, error) {
		asked = append(asked, task.TaskRunID)
		return task.TaskRunID == "run-current", nil
	}
	_, ev := b.handle(t, context.Background(), taskBody(t, "stale", "lambda", map[string]any{"name": "fn"}, 0))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Contains(t, ev.Description, "stale run: run run-stale of task stale is no longer current for stack stack-1")
	require.Empty(t, b.fake.Invocations("fn"), "not run")

	_, ev = b.handle(t, context.Background(), taskBody(t, "current", "lambda", map[string]any{"name": "fn"}, 0))
	require.Equal(t, message.EventTaskCompleted, ev.Event)
	require.Len(t, b.fake.Invocations("fn"), 1)
	require.Equal(t, []string{"run-stale", "run-current"}, asked)

	b.d.Current = func(context.Context, message.Task) (bool, error) { return false, errors.New("s3 down") }
	err := b.d.Handle(context.Background(), queue.Message{ID: "msg-2", Body: taskBody(t, "x", "lambda", map[string]any{"name": "fn"}, 0)})
	require.ErrorContains(t, err, "s3 down")
	require.Empty(t, b.published, "no result: the message comes back")
}

// codebuildBody is a terraform task message whose machine puts the task on CodeBuild, explicitly
// or by a timeoutSeconds beyond Lambda's.
func codebuildBody(t *testing.T, name, runner string, timeoutSeconds int) string {
	t.Helper()
	body, err := json.Marshal(message.Task{
		Task:      message.TaskSpec{Name: name, Executor: "terraform", Config: map[string]any{}, TimeoutSeconds: timeoutSeconds, Runner: runner},
		Stack:     message.Stack{ID: "stack-1", Machine: "m", State: "PROVISION"},
		TaskRunID: "run-" + name,
	})
	require.NoError(t, err)
	return string(body)
}

// ranHere is a terraform executor that records the runs it was given.
type ranHere struct {
	mu   sync.Mutex
	runs []string
}

func (r *ranHere) Run(_ context.Context, task message.Task) (executor.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, task.TaskRunID)
	return executor.Outcome{}, nil
}

// A CodeBuild-run task is handed over with its own time limit, not the function's, and no result
// is published for it: the build publishes it. A failed hand-over brings the message back.
func TestCodeBuildTasksAreHandedOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	here := &ranHere{}
	b.d.Executors["terraform"] = here
	type call struct {
		run   string
		limit time.Duration
	}
	var calls []call
	fail := false
	b.d.HandOver = func(_ context.Context, task message.Task, limit time.Duration) (string, bool, error) {
		if fail {
			return "", false, errors.New("CodeBuild is down")
		}
		calls = append(calls, call{task.TaskRunID, limit})
		return "project:build-1", true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a Lambda invocation's minute
	defer cancel()
	require.NoError(t, b.d.Handle(ctx, queue.Message{ID: "m1", Body: codebuildBody(t, "long", "", 7200)}))
	require.NoError(t, b.d.Handle(ctx, queue.Message{ID: "m2", Body: codebuildBody(t, "chosen", message.RunnerCodeBuild, 0)}))
	require.Equal(t, []call{{"run-long", 2 * time.Hour}, {"run-chosen", dispatch.DefaultTimeout}}, calls)
	require.Empty(t, b.published, "the build publishes the result, not the hand-over")
	require.Empty(t, here.runs, "nothing ran here")

	fail = true
	err := b.d.Handle(ctx, queue.Message{ID: "m3", Body: codebuildBody(t, "again", message.RunnerCodeBuild, 0)})
	require.ErrorContains(t, err, "CodeBuild is down")
	require.Empty(t, b.published)
}

// Without a CodeBuild project, a task its machine puts on CodeBuild explicitly fails saying what to
// set; one put there only by its timeoutSeconds runs here. In a build (InBuild) every task runs.
func TestCodeBuildTasksWithoutAProject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	here := &ranHere{}
	b.d.Executors["terraform"] = here
	_, ev := b.handle(t, context.Background(), codebuildBody(t, "chosen", message.RunnerCodeBuild, 0))
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Contains(t, ev.Description, "set CODEBUILD_PROJECT")
	require.Empty(t, here.runs)

	_, ev = b.handle(t, context.Background(), codebuildBody(t, "long", "", 7200))
	require.Equal(t, message.EventTaskCompleted, ev.Event, ev.Description)

	b.d.InBuild = true
	_, ev = b.handle(t, context.Background(), codebuildBody(t, "in-build", message.RunnerCodeBuild, 0))
	require.Equal(t, message.EventTaskCompleted, ev.Event, ev.Description)
	require.Equal(t, []string{"run-long", "run-in-build"}, here.runs)
}
