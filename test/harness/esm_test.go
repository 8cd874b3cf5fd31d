package harness_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// recorder is a function that fails the messages whose body starts with "bad" (by
// batchItemFailures) and, while failWhole is set, every batch as a whole (a function error).
type recorder struct {
	mu        sync.Mutex
	seen      map[string][]string // body → ApproximateReceiveCount of each delivery
	batches   [][]string
	failWhole bool
}

func (r *recorder) invoke(_ context.Context, payload []byte) (harness.RIEResult, error) {
	var ev events.SQSEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return harness.RIEResult{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var resp events.SQSEventResponse
	var bodies []string
	for _, m := range ev.Records {
		r.seen[m.Body] = append(r.seen[m.Body], m.Attributes["ApproximateReceiveCount"])
		bodies = append(bodies, m.Body)
		if strings.HasPrefix(m.Body, "bad") {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
		}
	}
	r.batches = append(r.batches, bodies)
	if r.failWhole {
		return harness.RIEResult{Payload: []byte(`{"errorMessage":"down","errorType":"errorString"}`), Failed: true}, nil
	}
	body, _ := json.Marshal(resp)
	return harness.RIEResult{Payload: body}, nil
}

func (r *recorder) deliveries(body string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen[body]...)
}

func send(t *testing.T, url string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		_, err := harness.SQSClient(t).SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(b)})
		require.NoError(t, err)
	}
}

func bodiesIn(t *testing.T, url string) []string {
	t.Helper()
	out, err := harness.SQSClient(t).ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 0,
	})
	require.NoError(t, err)
	var bodies []string
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies
}

func approximateMessages(t *testing.T, url string) (visible, inFlight string) {
	t.Helper()
	out, err := harness.SQSClient(t).GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	})
	require.NoError(t, err)
	return out.Attributes["ApproximateNumberOfMessages"], out.Attributes["ApproximateNumberOfMessagesNotVisible"]
}

// With ReportBatchItemFailures only the successes are deleted; a failed message comes back after
// the visibility timeout, and the queue's redrive moves it to the dead-letter queue after
// maxReceiveCount receives.
func TestEventSourceMappingPartialFailuresAndRedrive(t *testing.T) {
	t.Parallel()
	url, dlq := harness.CreateQueueWithAttributes(t, "esm-partial", false, 2, map[string]string{"VisibilityTimeout": "3"})
	send(t, url, "ok-1", "bad-1", "ok-2")
	r := &recorder{seen: map[string][]string{}}
	m := harness.StartEventSourceMapping(t, &harness.EventSourceMapping{
		FunctionName: "fn", QueueURL: url, EventSourceARN: "arn:aws:sqs:us-east-1:000000000000:esm-partial",
		BatchSize: 10, MaximumBatchingWindow: time.Second, ReportBatchItemFailures: true,
		Invokers: []harness.Invoker{harness.InvokerFunc(r.invoke)},
	})
	require.Eventually(t, func() bool {
		return len(r.deliveries("bad-1")) == 2 && len(bodiesIn(t, dlq)) == 1
	}, 60*time.Second, 200*time.Millisecond)
	// The redrive happens on the receive after the last one.
	visible, inFlight := approximateMessages(t, url)
	require.Equal(t, "0", visible)
	require.Equal(t, "0", inFlight)
	require.Equal(t, []string{"1"}, r.deliveries("ok-1"))
	require.Equal(t, []string{"1"}, r.deliveries("ok-2"))
	require.Equal(t, []string{"1", "2"}, r.deliveries("bad-1"))
	require.Equal(t, int64(2), m.Deleted())
	require.Equal(t, int64(0), m.FailedBatches())
}

// A function error fails the whole batch: nothing is deleted, and every message comes back.
func TestEventSourceMappingFunctionErrorDeletesNothing(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueueWithAttributes(t, "esm-error", false, 5, map[string]string{"VisibilityTimeout": "1"})
	send(t, url, "ok-1")
	r := &recorder{seen: map[string][]string{}, failWhole: true}
	m := harness.StartEventSourceMapping(t, &harness.EventSourceMapping{
		FunctionName: "fn", QueueURL: url, EventSourceARN: "arn:aws:sqs:us-east-1:000000000000:esm-error",
		BatchSize: 1, ReportBatchItemFailures: true, Invokers: []harness.Invoker{harness.InvokerFunc(r.invoke)},
	})
	require.Eventually(t, func() bool { return len(r.deliveries("ok-1")) == 2 }, 30*time.Second, 100*time.Millisecond)
	r.mu.Lock()
	r.failWhole = false
	r.mu.Unlock()
	require.Eventually(t, func() bool { return m.Deleted() == 1 }, 30*time.Second, 100*time.Millisecond)
	require.GreaterOrEqual(t, m.FailedBatches(), int64(2))
	require.Equal(t, "1", r.deliveries("ok-1")[0])
	require.Equal(t, "2", r.deliveries("ok-1")[1])
}

// A function pauses and resumes its own mapping through the Lambda API, as the AWS SDK calls it.
func TestEventSourceMappingLambdaAPI(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "esm-api", false, 5)
	arn := "arn:aws:sqs:us-east-1:000000000000:esm-api"
	r := &recorder{seen: map[string][]string{}}
	m := harness.StartEventSourceMapping(t, &harness.EventSourceMapping{
		FunctionName: "statemanager", QueueURL: url, EventSourceARN: arn, BatchSize: 10, MaximumConcurrency: 2, PollWait: time.Second,
		ReportBatchItemFailures: true, Invokers: []harness.Invoker{harness.InvokerFunc(r.invoke)},
	})
	fake := harness.NewLambdaFake(t)
	fake.AddEventSourceMapping(m)
	client := lambda.NewFromConfig(harness.AWSConfig(t), func(o *lambda.Options) { o.BaseEndpoint = aws.String(fake.URL) })
	ctx := context.Background()

	list, err := client.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{
		FunctionName: aws.String("arn:aws:lambda:us-east-1:000000000000:function:statemanager"), EventSourceArn: aws.String(arn)})
	require.NoError(t, err)
	require.Len(t, list.EventSourceMappings, 1)
	got := list.EventSourceMappings[0]
	require.Equal(t, m.UUID, aws.ToString(got.UUID))
	require.Equal(t, "Enabled", aws.ToString(got.State))
	require.Equal(t, int32(10), aws.ToInt32(got.BatchSize))
	require.Equal(t, int32(2), aws.ToInt32(got.ScalingConfig.MaximumConcurrency))
	require.Equal(t, "ReportBatchItemFailures", string(got.FunctionResponseTypes[0]))

	other, err := client.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("satisfier")})
	require.NoError(t, err)
	require.Empty(t, other.EventSourceMappings)

	upd, err := client.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: got.UUID, Enabled: aws.Bool(false)})
	require.NoError(t, err)
	require.Equal(t, "Disabled", aws.ToString(upd.State))
	require.False(t, m.Enabled())
	// A receive already waiting may still deliver; after it, nothing is consumed while disabled.
	require.Eventually(t, m.Idle, 10*time.Second, 50*time.Millisecond)
	before := m.Invocations()
	send(t, url, "while-paused")
	time.Sleep(2 * time.Second)
	require.Equal(t, before, m.Invocations())
	require.Empty(t, r.deliveries("while-paused"))

	cur, err := client.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: got.UUID})
	require.NoError(t, err)
	require.Equal(t, "Disabled", aws.ToString(cur.State))
	_, err = client.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: got.UUID, Enabled: aws.Bool(true)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(r.deliveries("while-paused")) == 1 }, 30*time.Second, 100*time.Millisecond)

	_, err = client.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String("no-such-uuid")})
	require.ErrorContains(t, err, "ResourceNotFoundException")
}

// A response that is not a batch response fails the batch, as an unknown item identifier does.
func TestEventSourceMappingInvalidResponsesFailTheBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, response string }{
		{"not-json", `not json`},
		{"unknown-id", `{"batchItemFailures": [{"itemIdentifier": "no-such-message"}]}`},
		{"misspelt-key", `{"batchItemFailures": [{"itemId": "x"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, _ := harness.CreateQueueWithAttributes(t, "esm-"+tc.name, false, 5, map[string]string{"VisibilityTimeout": "1"})
			send(t, url, "m")
			var mu sync.Mutex
			calls := 0
			m := harness.StartEventSourceMapping(t, &harness.EventSourceMapping{
				FunctionName: "fn", QueueURL: url, EventSourceARN: "arn:aws:sqs:us-east-1:000000000000:esm-" + tc.name,
				BatchSize: 1, ReportBatchItemFailures: true,
				Invokers: []harness.Invoker{harness.InvokerFunc(func(context.Context, []byte) (harness.RIEResult, error) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					if calls == 1 {
						return harness.RIEResult{Payload: []byte(tc.response)}, nil
					}
					return harness.RIEResult{Payload: []byte(`null`)}, nil // complete success
				})},
			})
			require.Eventually(t, func() bool { return m.Deleted() == 1 }, 30*time.Second, 100*time.Millisecond)
			require.Equal(t, int64(1), m.FailedBatches())
			require.Equal(t, int64(2), m.Invocations(), "the message came back once after the failed batch")
		})
	}
}
