package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

// deployedEnv stands up what --stack-name reaches: a CloudFormation stack (protocol-level fake)
// whose outputs name a query function (the Lambda Invoke API fake, answering with a read-only
// Reader on r's database, as the deployed function does), the event queue and the bucket. It
// returns the CLI's environment, which names the stack only: no database, no queue URL.
func deployedEnv(t *testing.T, r *recorder) (map[string]string, *harness.CloudFormationFake, *harness.LambdaFake) {
	t.Helper()
	ro, err := store.Open(context.Background(), store.Config{DatabaseURL: r.url, ReadOnly: true, MaxConns: 2})
	require.NoError(t, err)
	t.Cleanup(ro.Close)
	reader := query.NewReader(ro)
	lambdaFake := harness.NewLambdaFake(t)
	lambdaFake.Function("stackseam-query-fn", func(ctx context.Context, payload []byte) harness.LambdaResponse {
		resp, err := reader.Handle(ctx, payload)
		if err != nil {
			return harness.HandlerError("error", err.Error())
		}
		body, err := json.Marshal(resp)
		require.NoError(t, err)
		return harness.LambdaResponse{Payload: body}
	})
	queueURL, _ := harness.CreateQueue(t, "cli-deployed-events", true, 5)
	cfn := harness.NewCloudFormationFake(t)
	cfn.Put("Stackseam", harness.FakeStack{Outputs: map[string]string{
		deployed.OutputEventQueueURL:     queueURL,
		deployed.OutputQueryFunctionName: "stackseam-query-fn",
		deployed.OutputBucketName:        "stackseam-bucket",
		"DashboardName":                  "ignored",
	}})
	env := awsEnv(t, map[string]string{
		"AWS_ENDPOINT_URL_CLOUDFORMATION": cfn.URL,
		"AWS_ENDPOINT_URL_LAMBDA":         lambdaFake.URL,
		deployed.EnvStackName:             "Stackseam",
	})
	return env, cfn, lambdaFake
}

// With only the stack's name, stacks, show and history answer through the query function
// exactly what they answer from the database (the same golden files), and send finds the queue.
func TestStackNameReadsThroughTheQueryFunction(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	r.record()
	env, cfn, lambdaFake := deployedEnv(t, r)
	check := func(name string, args ...string) {
		t.Helper()
		code, stdout, stderr := runEnv(t, env, now, args...)
		require.Equal(t, exitOK, code, "%v: %s", args, stderr)
		require.Empty(t, stderr)
		golden(t, name, stdout)
	}
	check("stacks.txt", "stacks")
	check("stacks.json", "stacks", "--output", "json")
	check("stacks-feature-env.txt", "stacks", "--machine", "feature-env", "--state", "DEPROVISION")
	check("show-feature-9.txt", "show", "feature-9")
	check("show-feature-9.json", "show", "feature-9", "--output", "json")
	check("history-feature-123.txt", "history", "feature-123")
	check("history-feature-123.json", "history", "--output", "json", "feature-123")
	check("history-qa.txt", "history", "qa", "--stack-name", "Stackseam")

	code, _, stderr := runEnv(t, env, now, "show", "feature-123")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "stack feature-123 does not exist: it was removed at 2024-05-01 12:01:50 UTC")

	// --follow polls the function with the last cursor; the stack was removed, so it prints the
	// timeline the database gives and stops.
	code, viaInvoke, stderr := runEnv(t, env, now, "history", "--follow", "--output", "json", "feature-123")
	require.Equal(t, exitOK, code, stderr)
	code, viaDatabase, stderr := runEnv(t, r.env(), now, "history", "--follow", "--output", "json", "feature-123")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, viaDatabase, viaInvoke)
	require.Greater(t, strings.Count(viaInvoke, "\n"), 15)

	// Every read went through the function; the stack was described once per command.
	invocations := lambdaFake.Invocations("stackseam-query-fn")
	require.GreaterOrEqual(t, len(invocations), 10)
	for _, call := range invocations {
		require.Equal(t, "stackseam-query-fn", call.Function)
		_, bad := query.ParseRequest(call.Payload)
		require.Nil(t, bad, "the CLI sends strict requests: %s", call.Payload)
	}
	require.Len(t, cfn.Calls(), 10)

	code, stdout, stderr := runEnv(t, env, now, "send", "--stack", "qa", "--event", "ACCESS", "--output", "json")
	require.Equal(t, exitOK, code, stderr)
	var sent struct {
		QueueURL string `json:"queueUrl"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &sent))
	require.Contains(t, sent.QueueURL, "cli-deployed-events")
	require.Equal(t, "qa", receiveOne(t, sent.QueueURL).body["stackId"])
}

// A missing stack, a stack without the outputs, and a refused request are failures that say
// what is wrong; the database flags still win over the stack name.
func TestStackNameFailuresAndPrecedence(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	r.record()
	env, cfn, lambdaFake := deployedEnv(t, r)

	code, _, stderr := runEnv(t, env, now, "stacks", "--stack-name", "Nope")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "error reading the outputs of stack Nope")
	require.Contains(t, stderr, "Stack with id Nope does not exist")

	cfn.Put("Bare", harness.FakeStack{Outputs: map[string]string{"Other": "x"}})
	code, _, stderr = runEnv(t, env, now, "history", "qa", "--stack-name", "Bare")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "stack Bare has no output QueryFunctionName")
	code, _, stderr = runEnv(t, env, now, "retry", "qa", "--stack-name", "Bare")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "stack Bare has no output EventQueueUrl")
	cfn.Put("Gone", harness.FakeStack{Status: "DELETE_COMPLETE"})
	code, _, stderr = runEnv(t, env, now, "stacks", "--stack-name", "Gone")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "stack Gone is DELETE_COMPLETE")

	// A function that fails (its database is down) is a failure with the function's message.
	lambdaFake.Fails("broken-fn", "errorString", "query failed: error listing stacks: connection refused")
	cfn.Put("Broken", harness.FakeStack{Outputs: map[string]string{deployed.OutputQueryFunctionName: "broken-fn"}})
	code, _, stderr = runEnv(t, env, now, "stacks", "--stack-name", "Broken")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "the query function broken-fn failed: query failed: error listing stacks: connection refused")

	// A request the function refuses comes back as its reason.
	code, _, stderr = runEnv(t, env, now, "show", "not a stack id")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "invalid-request: id:")

	// --database-url beats STACKSEAM_STACK_NAME: no invocation.
	before := len(lambdaFake.Invocations("stackseam-query-fn"))
	code, _, stderr = runEnv(t, env, now, "stacks", "--database-url", r.url)
	require.Equal(t, exitOK, code, stderr)
	require.Len(t, lambdaFake.Invocations("stackseam-query-fn"), before)
}
