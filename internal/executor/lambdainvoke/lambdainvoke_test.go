package lambdainvoke_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// invoker returns an Invoker whose client talks to fake.
func invoker(fake *harness.LambdaFake) *lambdainvoke.Invoker {
	client := lambda.New(lambda.Options{
		Region:       harness.Region,
		Credentials:  aws.NewCredentialsCache(credentials{}),
		BaseEndpoint: aws.String(fake.URL),
	})
	return &lambdainvoke.Invoker{Client: client}
}

type credentials struct{}

func (credentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: harness.AccessKeyID, SecretAccessKey: harness.SecretAccessKey, Source: "test"}, nil
}

func task(config map[string]any) message.Task {
	return message.Task{
		Task:      message.TaskSpec{Name: "notify", Executor: "lambda", Config: config},
		Stack:     message.Stack{ID: "feature-1", Machine: "m", State: "PROVISION", Metadata: message.Metadata{"branch": "feature/1", "replicas": json.Number("3"), "public": true}},
		TaskRunID: "run-1",
	}
}

func TestInvokeSendsStackAndReturnsOutputs(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	fake.Returns("deploy", `{"url":"https://x.example","port":8080,"ready":true,"tags":{"a":"b"},"gone":null}`)

	out, err := invoker(fake).Run(context.Background(), task(map[string]any{"name": "deploy", "args": map[string]any{"size": json.Number("2"), "tier": "web"}}))
	require.NoError(t, err)

	require.Equal(t, message.Metadata{"url": "https://x.example", "port": json.Number("8080"), "ready": true, "tags": `{"a":"b"}`}, out.Outputs)
	require.Equal(t, []string{"output gone is null and was left out", "output tags is an object and was stored as its JSON text"}, out.Notes)

	calls := fake.Invocations("deploy")
	require.Len(t, calls, 1)
	require.Equal(t, "RequestResponse", calls[0].InvocationType, "a synchronous invocation")
	require.JSONEq(t, `{"stackId":"feature-1","metadata":{"branch":"feature/1","replicas":3,"public":true},"args":{"size":2,"tier":"web"}}`,
		string(calls[0].Payload))
}

func TestInvokeWithoutArgsOrMetadata(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	fake.Returns("plain", `null`)
	tk := task(map[string]any{"name": "plain"})
	tk.Stack.Metadata = nil

	out, err := invoker(fake).Run(context.Background(), tk)
	require.NoError(t, err)
	require.Empty(t, out.Outputs)
	require.Empty(t, out.Notes)
	require.JSONEq(t, `{"stackId":"feature-1","metadata":{}}`, string(fake.Invocations("plain")[0].Payload),
		"no args key when the task has none; metadata is always an object")
}

func TestInvokeFunctionErrorFailsTheTask(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	fake.Fails("broken", "ValueError", "the database is read-only")
	fake.Function("odd", func(context.Context, []byte) harness.LambdaResponse {
		return harness.LambdaResponse{Payload: []byte(`"Task timed out after 3.00 seconds"`), FunctionError: "Unhandled"}
	})

	_, err := invoker(fake).Run(context.Background(), task(map[string]any{"name": "broken"}))
	require.EqualError(t, err, "lambda function broken failed: ValueError: the database is read-only")

	_, err = invoker(fake).Run(context.Background(), task(map[string]any{"name": "odd"}))
	require.EqualError(t, err, `lambda function odd failed (Unhandled error): "Task timed out after 3.00 seconds"`)
}

func TestInvokeNonObjectResultHasNoOutputs(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	for name, payload := range map[string]string{"text": `"done"`, "list": `[1,2]`, "number": `42`, "garbage": `not json`} {
		fake.Returns(name, payload)
	}
	want := map[string]string{"text": "a string", "list": "a list", "number": "a number", "garbage": "not JSON"}
	for name, kind := range want {
		out, err := invoker(fake).Run(context.Background(), task(map[string]any{"name": name}))
		require.NoError(t, err, name)
		require.Empty(t, out.Outputs, name)
		require.Equal(t, []string{"lambda function " + name + " returned " + kind + ", not a JSON object, so the task has no outputs"}, out.Notes)
	}
}

func TestInvokeUnknownFunction(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	_, err := invoker(fake).Run(context.Background(), task(map[string]any{"name": "missing"}))
	require.ErrorContains(t, err, "error invoking lambda function missing")
	require.ErrorContains(t, err, "ResourceNotFoundException")
	require.ErrorContains(t, err, "Function not found")
}

func TestInvokeByARN(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	fake.Returns("by-arn", `{"ok":true}`)
	out, err := invoker(fake).Run(context.Background(), task(map[string]any{"name": "arn:aws:lambda:us-east-1:123456789012:function:by-arn"}))
	require.NoError(t, err)
	require.Equal(t, true, out.Outputs["ok"])
}

func TestInvokeStopsWithContext(t *testing.T) {
	t.Parallel()
	fake := harness.NewLambdaFake(t)
	fake.Function("slow", func(ctx context.Context, _ []byte) harness.LambdaResponse {
		<-ctx.Done() // until the caller gives up
		return harness.LambdaResponse{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The fake answers only when the caller gives up, so returning at all
	// shows the invoke honours the context.
	_, err := invoker(fake).Run(ctx, task(map[string]any{"name": "slow"}))
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded), err.Error())
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	_, err := lambdainvoke.ParseConfig(map[string]any{})
	// A task message is judged by the rules the machine parser applies, in the same words.
	require.EqualError(t, err, "the lambda task's config is invalid: a lambda config needs name: the function to invoke")
	_, err = lambdainvoke.ParseConfig(map[string]any{"name": "f", "args": []any{"x"}, "extra": true})
	require.EqualError(t, err, "the lambda task's config is invalid: config.args must be a mapping "+
		"(it becomes the JSON object sent to the function), not a list; unknown key \"extra\" in a lambda config (allowed: name, args)")
	_, err = lambdainvoke.ParseConfig(map[string]any{"name": 3})
	require.EqualError(t, err, "the lambda task's config is invalid: config.name must be a string, not an integer")
	c, err := lambdainvoke.ParseConfig(map[string]any{"name": "f", "args": map[string]any{"a": "b"}})
	require.NoError(t, err)
	require.Equal(t, "f", c.Name)
	require.JSONEq(t, `{"a":"b"}`, string(c.Args))
}
