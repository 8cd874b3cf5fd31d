package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/test/harness"
)

// receiveSigned takes one message off the queue with its body and signature attribute.
func receiveSigned(t *testing.T, url string) (body, signature string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := harness.SQSClient(t).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url),
		MaxNumberOfMessages: 1, WaitTimeSeconds: 2, MessageAttributeNames: []string{"All"}})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	m := out.Messages[0]
	_, err = harness.SQSClient(t).DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
	require.NoError(t, err)
	if a, ok := m.MessageAttributes[signing.Attribute]; ok {
		signature = aws.ToString(a.StringValue)
	}
	return aws.ToString(m.Body), signature
}

// TestCompleteSendsASignedResultByTaskName: an operator's result for a manual step names the task,
// parses as the state manager parses it, and carries the signature of the key the state manager
// checks (here RESULT_SIGNING_KEY; deployed, the secret).
func TestCompleteSendsASignedResultByTaskName(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "cli-complete", true, 5)
	secret := strings.Repeat("s", 40)
	key, err := signing.NewKey(secret)
	require.NoError(t, err)
	env := awsEnv(t, map[string]string{"EVENT_QUEUE_URL": url, "RESULT_SIGNING_KEY": secret})

	code, stdout, stderr := runEnv(t, env, now, "complete", "--stack", "feature/login", "--task", "approve")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "sent TASK_COMPLETED to stack feature/login\n", stdout)
	body, sig := receiveSigned(t, url)
	require.True(t, key.Verify(body, sig), "signed with the key: %s", body)
	ev, err := message.ParseEvent([]byte(body))
	require.NoError(t, err)
	require.Equal(t, message.EventTaskCompleted, ev.Event)
	require.Equal(t, "approve", ev.Task.Name)
	require.Empty(t, ev.TaskRunID)

	code, _, stderr = runEnv(t, env, now, "complete", "--stack", "feature/login", "--task", "approve", "--failed", "rejected by QA")
	require.Equal(t, exitOK, code, stderr)
	body, sig = receiveSigned(t, url)
	require.True(t, key.Verify(body, sig))
	ev, err = message.ParseEvent([]byte(body))
	require.NoError(t, err)
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Equal(t, "rejected by QA", ev.Description)

	// No key: the result goes unsigned, and the command says so.
	delete(env, "RESULT_SIGNING_KEY")
	code, _, stderr = runEnv(t, env, now, "complete", "--stack", "s", "--task", "approve")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stderr, "the result goes unsigned")
	_, sig = receiveSigned(t, url)
	require.Empty(t, sig)

	code, _, stderr = runEnv(t, env, now, "complete", "--stack", "s")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--stack and --task are required")
}
