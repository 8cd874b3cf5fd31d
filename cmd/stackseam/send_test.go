package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/test/harness"
)

// awsEnv is the environment that points the CLI at the emulator.
func awsEnv(t *testing.T, extra map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{
		"AWS_ENDPOINT_URL":      harness.AWSEndpoint(t),
		"AWS_REGION":            harness.Region,
		"AWS_ACCESS_KEY_ID":     harness.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": harness.SecretAccessKey,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// received is a message the CLI sent.
type received struct {
	// raw is the body as sent (a signature covers these bytes); body is it decoded.
	raw     string
	body    map[string]any
	group   string
	dedupID string
	// signature is the result signature attribute, empty when the message carries none.
	signature string
}

// receiveOne takes the next message off a queue.
func receiveOne(t *testing.T, url string) received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := harness.SQSClient(t).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 1, WaitTimeSeconds: 2,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameMessageGroupId, types.MessageSystemAttributeNameMessageDeduplicationId},
		MessageAttributeNames: []string{signing.Attribute},
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	m := out.Messages[0]
	_, err = harness.SQSClient(t).DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
	require.NoError(t, err)
	r := received{raw: aws.ToString(m.Body)}
	require.NoError(t, json.Unmarshal([]byte(r.raw), &r.body))
	r.group = m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	r.dedupID = m.Attributes[string(types.MessageSystemAttributeNameMessageDeduplicationId)]
	if a, ok := m.MessageAttributes[signing.Attribute]; ok {
		r.signature = aws.ToString(a.StringValue)
	}
	return r
}

func TestSendAndRetryPublishToTheEventQueue(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "cli-events", true, 5)
	env := awsEnv(t, map[string]string{"EVENT_QUEUE_URL": url})

	code, stdout, stderr := runEnv(t, env, now, "send", "--stack", "feature-123", "--machine", "feature-env",
		"--event", "LAUNCH", "--meta", "owner=alice", "--meta", "branch=feature/123=x")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "sent LAUNCH to stack feature-123 (machine feature-env, metadata branch=feature/123=x owner=alice)\n", stdout)
	m := receiveOne(t, url)
	require.Equal(t, map[string]any{"stackId": "feature-123", "event": "LAUNCH", "machine": "feature-env",
		"metadata": map[string]any{"owner": "alice", "branch": "feature/123=x"}}, m.body)
	require.Equal(t, "feature-123", m.group, "the stack is the FIFO group")
	require.Regexp(t, `^[0-9a-f]{32}$`, m.dedupID, "a fresh deduplication id")

	// Sending the same event again delivers it again.
	code, _, stderr = runEnv(t, env, now, "send", "--stack", "feature-123", "--event", "ACCESS")
	require.Equal(t, exitOK, code, stderr)
	code, _, stderr = runEnv(t, env, now, "send", "--stack", "feature-123", "--event", "ACCESS")
	require.Equal(t, exitOK, code, stderr)
	first, second := receiveOne(t, url), receiveOne(t, url)
	require.Equal(t, first.body, second.body)
	require.NotEqual(t, first.dedupID, second.dedupID)

	// An event id makes the event idempotent, and is its deduplication id.
	code, stdout, stderr = runEnv(t, env, now, "send", "--stack", "feature-123", "--event", "DESTROY",
		"--event-id", "merge-42", "--output", "json")
	require.Equal(t, exitOK, code, stderr)
	var out struct {
		QueueURL, GroupID, DedupID string
		Body                       map[string]any
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &out))
	require.Equal(t, url, out.QueueURL)
	require.Equal(t, "feature-123", out.GroupID)
	require.Equal(t, "merge-42", out.DedupID)
	m = receiveOne(t, url)
	require.Equal(t, out.Body, m.body)
	require.Equal(t, "merge-42", m.body["eventId"])
	require.Equal(t, "merge-42", m.dedupID)

	code, stdout, stderr = runEnv(t, env, now, "send", "--stack", "feature-123", "--event", "DESTROY", "--if-version", "4")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "sent DESTROY to stack feature-123 (if still at version 4)\n", stdout)
	require.Equal(t, map[string]any{"stackId": "feature-123", "event": "DESTROY", "ifVersion": float64(4)}, receiveOne(t, url).body)

	code, stdout, stderr = runEnv(t, env, now, "retry", "feature-123")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "sent RETRY_FAILED_TASKS to stack feature-123\n", stdout)
	require.Equal(t, map[string]any{"stackId": "feature-123", "event": "RETRY_FAILED_TASKS"}, receiveOne(t, url).body)

	code, _, stderr = runEnv(t, env, now, "retry", "feature-123", "--pending")
	require.Equal(t, exitOK, code, stderr)
	m = receiveOne(t, url)
	require.Equal(t, map[string]any{"stackId": "feature-123", "event": "RETRY_PENDING_TASKS"}, m.body)
	require.Equal(t, "feature-123", m.group)

	// The flag wins over EVENT_QUEUE_URL.
	other, _ := harness.CreateQueue(t, "cli-other", true, 5)
	code, _, stderr = runEnv(t, env, now, "retry", "--queue-url", other, "feature-123")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "RETRY_FAILED_TASKS", receiveOne(t, other).body["event"])
}

func TestSendRefusesBadEventsBeforeSending(t *testing.T) {
	t.Parallel()
	env := awsEnv(t, map[string]string{"EVENT_QUEUE_URL": "http://127.0.0.1:1/000000000000/never-used.fifo"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "--event", "LAUNCH"}, "--stack and --event are required"},
		{[]string{"send", "--stack", "s"}, "--stack and --event are required"},
		{[]string{"send", "--stack", "s", "--event", "NEXT"}, "NEXT is fired by the state manager"},
		{[]string{"send", "--stack", "s", "--event", "TASK_COMPLETED"}, "TASK_COMPLETED is a task result"},
		{[]string{"send", "--stack", "bad id!", "--event", "LAUNCH"}, `stackId "bad id!" is not a valid stack id`},
		{[]string{"send", "--stack", "s", "--event", "launch"}, `event "launch" must match`},
		{[]string{"send", "--stack", "s", "--event", "LAUNCH", "--machine", "no/such"}, `machine "no/such" is not a valid machine name`},
		{[]string{"send", "--stack", "s", "--event", "LAUNCH", "--meta", "novalue"}, `want KEY=VALUE, not "novalue"`},
		{[]string{"send", "--stack", "s", "--event", "LAUNCH", "extra"}, `unexpected argument "extra"`},
		{[]string{"send", "--stack", "s", "--event", "LAUNCH", "--if-version", "-1"}, `want a stack version (a whole number), not "-1"`},
		{[]string{"retry"}, "name one stack"},
		{[]string{"retry", "a", "b"}, "name one stack"},
		{[]string{"retry", "bad id!"}, `stackId "bad id!" is not a valid stack id`},
		{[]string{"retry", "feature//login"}, `stackId "feature//login" is not a valid stack id`},
	} {
		code, stdout, stderr := runEnv(t, env, now, tc.args...)
		require.Equal(t, exitUsage, code, "%v: %s", tc.args, stderr)
		require.Empty(t, stdout, tc.args)
		require.Contains(t, stderr, tc.want, tc.args)
		require.Contains(t, stderr, "usage: stackseam "+tc.args[0], tc.args)
	}

	code, _, stderr := runEnv(t, awsEnv(t, nil), now, "send", "--stack", "s", "--event", "LAUNCH")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "no event queue: set --queue-url or EVENT_QUEUE_URL")
}

func TestSendToAMissingQueueFails(t *testing.T) {
	t.Parallel()
	env := awsEnv(t, nil)
	url := harness.AWSEndpoint(t) + "/000000000000/no-such-queue.fifo"
	code, stdout, stderr := runEnv(t, env, now, "send", "--queue-url", url, "--stack", "s", "--event", "LAUNCH", "--machine", "m")
	require.Equal(t, exitFail, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "stackseam send: error sending LAUNCH to "+url)
}
