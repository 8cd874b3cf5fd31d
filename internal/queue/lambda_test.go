package queue_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/queue"
)

func loadEvent(t *testing.T, path string) events.SQSEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var ev events.SQSEvent
	require.NoError(t, json.Unmarshal(data, &ev))
	return ev
}

func TestLambdaHandlerReportsFailedItems(t *testing.T) {
	t.Parallel()
	ev := loadEvent(t, "testdata/sqs_fifo_event.json")
	var got []queue.Message
	h := queue.LambdaHandler(func(_ context.Context, batch []queue.Message) []string {
		got = batch
		// A duplicate and an ID not in the batch must not reach Lambda: an unknown ID would make
		// it retry the whole batch.
		return []string{"2e1424d4-f796-459a-8184-9c92662be6da", "not-in-batch", "2e1424d4-f796-459a-8184-9c92662be6da"}
	})

	resp, err := h(context.Background(), ev)

	require.NoError(t, err)
	require.Equal(t, []events.SQSBatchItemFailure{{ItemIdentifier: "2e1424d4-f796-459a-8184-9c92662be6da"}}, resp.BatchItemFailures)
	// Source is the queue Lambda read the record from, and SenderID the sender SQS recorded:
	// neither can be set by whoever sent the message.
	const source, sender = "arn:aws:sqs:eu-west-1:123456789012:stackseam-events.fifo", "AIDAIENQZJOLO23YVJ4VO"
	require.Equal(t, []queue.Message{
		{ID: "059f36b4-87a3-44ab-83d2-661975830a7d", Body: `{"stackId":"master","event":"DEPLOY","machine":"app"}`, GroupID: "master", ReceiveCount: 1, Source: source, SenderID: sender},
		{ID: "2e1424d4-f796-459a-8184-9c92662be6da", Body: `{"stackId":"master","event":"DESTROY"}`, GroupID: "master", ReceiveCount: 3, Source: source, SenderID: sender},
		{ID: "b1a2c3d4-0000-4000-8000-000000000003", Body: `{"stackId":"feature-123","event":"DEPLOY","machine":"app"}`, GroupID: "feature-123", ReceiveCount: 1, Source: source, SenderID: sender},
	}, got)
}

func TestLambdaHandlerWithInOrderByGroup(t *testing.T) {
	t.Parallel()
	ev := loadEvent(t, "testdata/sqs_fifo_event.json")
	r := newRecorder()
	r.panics["059f36b4-87a3-44ab-83d2-661975830a7d"] = true
	h := queue.LambdaHandler(queue.InOrderByGroup(r.handle, 2))

	resp, err := h(context.Background(), ev)

	// The first "master" message panics, so the second is failed without being handled; the other
	// stack is done.
	require.NoError(t, err)
	require.Equal(t, []events.SQSBatchItemFailure{
		{ItemIdentifier: "059f36b4-87a3-44ab-83d2-661975830a7d"},
		{ItemIdentifier: "2e1424d4-f796-459a-8184-9c92662be6da"},
	}, resp.BatchItemFailures)
	require.Equal(t, []string{"b1a2c3d4-0000-4000-8000-000000000003"}, r.byGroup["feature-123"])
}

func TestLambdaHandlerAllDone(t *testing.T) {
	t.Parallel()
	h := queue.LambdaHandler(func(context.Context, []queue.Message) []string { return nil })

	resp, err := h(context.Background(), loadEvent(t, "testdata/sqs_fifo_event.json"))

	require.NoError(t, err)
	out, err := json.Marshal(resp)
	require.NoError(t, err)
	require.JSONEq(t, `{"batchItemFailures":[]}`, string(out))
}

func TestInLambda(t *testing.T) {
	t.Setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
	require.True(t, queue.InLambda())
	t.Setenv("AWS_LAMBDA_RUNTIME_API", "")
	require.False(t, queue.InLambda())
}

func TestServeOutsideLambdaNeedsPoller(t *testing.T) {
	t.Setenv("AWS_LAMBDA_RUNTIME_API", "")
	err := queue.Serve(context.Background(), func(context.Context, []queue.Message) []string { return nil }, nil)
	require.ErrorContains(t, err, "no poller")
}
