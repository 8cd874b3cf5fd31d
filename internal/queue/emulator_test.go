package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// These tests run the Poller and Send against the AWS emulator, i.e. the real SQS protocol.

// startPoller runs p in the background and returns a function that cancels it and waits for Run
// to return; the test fails if Run does not return in time or returns an error.
func startPoller(t *testing.T, p *queue.Poller, h queue.BatchHandler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitLimit):
				t.Error("Poller.Run did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// testPoller is a poller with short waits, so the tests do not sit in 20 s long polls.
func testPoller(t *testing.T, url string) *queue.Poller {
	return &queue.Poller{Client: harness.SQSClient(t), QueueURL: url, WaitTime: time.Second, RetryDelay: time.Second}
}

// messagesInQueue counts the messages SQS still holds, visible or in flight.
func messagesInQueue(t *testing.T, url string) int {
	t.Helper()
	out, err := harness.SQSClient(t).GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	require.NoError(t, err)
	total := 0
	for _, v := range out.Attributes {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		total += n
	}
	return total
}

// handled is a concurrency-safe log of handler calls.
type handled struct {
	mu    sync.Mutex
	calls []queue.Message
}

func (h *handled) add(m queue.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, m)
}

func (h *handled) snapshot() []queue.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]queue.Message(nil), h.calls...)
}

// pollAll polls url, handling every message successfully in groups of 2, until n were handled,
// and returns what was.
func pollAll(t *testing.T, url string, n int) *handled {
	t.Helper()
	log := &handled{}
	startPoller(t, testPoller(t, url), queue.InOrderByGroup(func(_ context.Context, m queue.Message) error {
		log.add(m)
		return nil
	}, 2))
	require.Eventually(t, func() bool { return len(log.snapshot()) >= n }, waitLimit, 50*time.Millisecond)
	return log
}

// bodiesOf returns the bodies of the calls whose group is group (all calls if group is "*").
func (h *handled) bodiesOf(group string) []string {
	var out []string
	for _, m := range h.snapshot() {
		if group == "*" || m.GroupID == group {
			out = append(out, m.Body)
		}
	}
	return out
}

func TestPollerFIFOFailureRedeliversRestOfGroupInOrder(t *testing.T) {
	t.Parallel()
	// A visibility timeout far beyond the test's waits: a2 can only come back in time through
	// RetryDelay's ChangeMessageVisibility.
	url, dlqURL := harness.CreateQueueWithAttributes(t, "queue-fifo-order", true, deployed.EventQueueMaxReceiveCount, map[string]string{"VisibilityTimeout": "300"})
	ctx := context.Background()
	var msgs []queue.Outgoing
	for i, body := range []string{"a1", "b1", "a2", "b2", "a3", "a4"} {
		msgs = append(msgs, queue.Outgoing{Body: body, GroupID: strings.ToUpper(body[:1]), DedupID: strconv.Itoa(i)})
	}
	require.NoError(t, queue.Send(ctx, harness.SQSClient(t), url, msgs))

	var log handled
	h := queue.InOrderByGroup(func(_ context.Context, m queue.Message) error {
		log.add(m)
		if m.Body == "a2" && m.ReceiveCount == 1 {
			return errors.New("transient failure of a2")
		}
		return nil
	}, 4)
	startPoller(t, testPoller(t, url), h)

	require.Eventually(t, func() bool { return len(log.bodiesOf("A")) >= 5 }, waitLimit, 50*time.Millisecond)
	require.Eventually(t, func() bool { return messagesInQueue(t, url) == 0 }, waitLimit, 100*time.Millisecond)
	// a3 and a4 were never handled before a2 succeeded, whatever the batches were.
	require.Equal(t, []string{"a1", "a2", "a2", "a3", "a4"}, log.bodiesOf("A"))
	require.Equal(t, []string{"b1", "b2"}, log.bodiesOf("B"))
	var a2Counts []int
	for _, m := range log.snapshot() {
		if m.Body == "a2" {
			a2Counts = append(a2Counts, m.ReceiveCount)
		}
	}
	require.Equal(t, []int{1, 2}, a2Counts)
	require.Equal(t, 0, messagesInQueue(t, dlqURL))
}

// sendRecorder is an HTTP transport that records the SendMessageBatch requests going to the
// emulator, which accepts batches of any size, so that the chunking itself can be checked.
type sendRecorder struct {
	mu      sync.Mutex
	batches [][]int // the body sizes of each request's entries
}

func (r *sendRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("X-Amz-Target") == "AmazonSQS.SendMessageBatch" && req.Body != nil {
		data, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(data))
		var in struct {
			Entries []struct{ MessageBody string }
		}
		if err := json.Unmarshal(data, &in); err != nil {
			return nil, err
		}
		sizes := make([]int, len(in.Entries))
		for i, e := range in.Entries {
			sizes[i] = len(e.MessageBody)
		}
		r.mu.Lock()
		r.batches = append(r.batches, sizes)
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// recordingClient is an SQS client for the emulator whose SendMessageBatch requests are recorded.
func recordingClient(t *testing.T) (*sqs.Client, *sendRecorder) {
	rec := &sendRecorder{}
	client := sqs.NewFromConfig(harness.AWSConfig(t), func(o *sqs.Options) {
		o.HTTPClient = &http.Client{Transport: rec}
	})
	return client, rec
}

// entryCounts returns how many entries each recorded request had, and checks that none carried
// more than 256 KiB of bodies.
func (r *sendRecorder) entryCounts(t *testing.T) []int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var counts []int
	for _, sizes := range r.batches {
		total := 0
		for _, n := range sizes {
			total += n
		}
		require.LessOrEqual(t, total, 256*1024)
		counts = append(counts, len(sizes))
	}
	return counts
}

func TestSendChunksAcrossBatchesInOrder(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "queue-send-25", true, 3)
	msgs := make([]queue.Outgoing, 25)
	want := make([]string, 25)
	for i := range msgs {
		want[i] = fmt.Sprintf("event-%02d", i)
		msgs[i] = queue.Outgoing{Body: want[i], GroupID: "stack-1", DedupID: want[i]}
	}
	client, rec := recordingClient(t)
	require.NoError(t, queue.Send(context.Background(), client, url, msgs))
	require.Equal(t, []int{10, 10, 5}, rec.entryCounts(t))

	log := pollAll(t, url, 25)
	require.Equal(t, want, log.bodiesOf("stack-1"), "a FIFO group keeps the order of the slice given to Send")
	require.Eventually(t, func() bool { return messagesInQueue(t, url) == 0 }, waitLimit, 100*time.Millisecond)
}

func TestSendSplitsBatchOver256KiB(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "queue-send-big", false, 3)
	client, rec := recordingClient(t)
	// Five 100 KiB bodies: 500 KiB, more than one SendMessageBatch may carry.
	msgs := make([]queue.Outgoing, 5)
	want := make([]string, 5)
	for i := range msgs {
		want[i] = strconv.Itoa(i) + strings.Repeat("x", 100*1024-1)
		msgs[i] = queue.Outgoing{Body: want[i]}
	}
	require.NoError(t, queue.Send(context.Background(), client, url, msgs))
	require.Equal(t, []int{2, 2, 1}, rec.entryCounts(t))

	log := pollAll(t, url, 5)
	require.ElementsMatch(t, want, log.bodiesOf("*"))
}

func TestPollerFinishesInFlightBatchOnCancel(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueueWithAttributes(t, "queue-cancel", false, 3, map[string]string{"VisibilityTimeout": "300"})
	require.NoError(t, queue.Send(context.Background(), harness.SQSClient(t), url, []queue.Outgoing{{Body: "slow"}}))

	started, release := make(chan struct{}), make(chan struct{})
	var handlerCtxErr error
	h := queue.InOrderByGroup(func(ctx context.Context, m queue.Message) error {
		close(started)
		<-release
		handlerCtxErr = ctx.Err()
		return nil
	}, 1)
	// The default 20 s long poll: cancellation must not wait for it to end.
	p := &queue.Poller{Client: harness.SQSClient(t), QueueURL: url}
	stop := startPoller(t, p, h)

	select {
	case <-started:
	case <-time.After(waitLimit):
		t.Fatal("the message was never handled")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned while a batch was in flight")
	case <-time.After(100 * time.Millisecond): // only gives a wrong early return the chance to show
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
	}

	require.NoError(t, handlerCtxErr, "the in-flight handler's context must not be cancelled")
	require.Equal(t, 0, messagesInQueue(t, url), "the finished message is deleted")
}

func TestPollerMovesAlwaysFailingMessageToDLQ(t *testing.T) {
	t.Parallel()
	url, dlqURL := harness.CreateQueue(t, "queue-dlq", true, deployed.EventQueueMaxReceiveCount)
	client := harness.SQSClient(t)
	require.NoError(t, queue.Send(context.Background(), client, url, []queue.Outgoing{
		{Body: "poison", GroupID: "stack-1", DedupID: "poison"},
	}))

	var log handled
	startPoller(t, testPoller(t, url), queue.InOrderByGroup(func(_ context.Context, m queue.Message) error {
		log.add(m)
		return errors.New("always fails")
	}, 1))

	var inDLQ []types.Message
	require.Eventually(t, func() bool {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		require.NoError(t, err)
		inDLQ = append(inDLQ, out.Messages...)
		return len(inDLQ) > 0
	}, waitLimit, 10*time.Millisecond)
	require.Len(t, inDLQ, 1)
	require.Equal(t, "poison", aws.ToString(inDLQ[0].Body))

	var counts []int
	for _, m := range log.snapshot() {
		counts = append(counts, m.ReceiveCount)
	}
	require.Equal(t, upTo(deployed.EventQueueMaxReceiveCount), counts)
}

// upTo returns 1..n.
func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// sendPoisonAndFollowers sends, to a FIFO queue, a poison message and two later messages of its
// group, and two messages of another group.
func sendPoisonAndFollowers(t *testing.T, url string) {
	t.Helper()
	var msgs []queue.Outgoing
	for i, m := range [][2]string{{"P", "poison"}, {"P", "p1"}, {"O", "o1"}, {"P", "p2"}, {"O", "o2"}} {
		msgs = append(msgs, queue.Outgoing{GroupID: m[0], Body: m[1], DedupID: strconv.Itoa(i)})
	}
	require.NoError(t, queue.Send(context.Background(), harness.SQSClient(t), url, msgs))
}

// failPoison handles every message but "poison", which always fails.
func failPoison(log *handled) func(context.Context, queue.Message) error {
	return func(_ context.Context, m queue.Message) error {
		log.add(m)
		if m.Body == "poison" {
			return errors.New("always fails")
		}
		return nil
	}
}

// receiveAll receives from url until n messages came, and returns their bodies.
func receiveAll(t *testing.T, url string, n int) []string {
	t.Helper()
	var got []string
	require.Eventually(t, func() bool {
		out, err := harness.SQSClient(t).ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		require.NoError(t, err)
		for _, m := range out.Messages {
			got = append(got, aws.ToString(m.Body))
		}
		return len(got) >= n
	}, waitLimit, 10*time.Millisecond)
	return got
}

// SQS delivers the later messages of a group with a failing one and counts their receives, so
// without DeadLetter they reach the dead-letter queue together with the poison, never handled.
// This is the failure DeadLetter exists for; it also shows that the emulator behaves like SQS.
func TestPollerWithoutDeadLetterLosesMessagesBehindPoison(t *testing.T) {
	t.Parallel()
	url, dlqURL := harness.CreateQueue(t, "queue-poison-bare", true, deployed.EventQueueMaxReceiveCount)
	sendPoisonAndFollowers(t, url)
	var log handled
	startPoller(t, testPoller(t, url), queue.InOrderByGroup(failPoison(&log), 2))

	require.Equal(t, []string{"poison", "p1", "p2"}, receiveAll(t, dlqURL, 3))
	require.Equal(t, []string{"o1", "o2"}, log.bodiesOf("O"))
	require.Equal(t, slices.Repeat([]string{"poison"}, deployed.EventQueueMaxReceiveCount), log.bodiesOf("P"),
		"p1 and p2 were never handled")
}

func TestDeadLetterMovesPoisonOnLastReceiveAndItsGroupGoesOn(t *testing.T) {
	t.Parallel()
	url, dlqURL := harness.CreateQueue(t, "queue-poison", true, deployed.EventQueueMaxReceiveCount)
	sendPoisonAndFollowers(t, url)
	var log handled
	dl := &queue.DeadLetter{Client: harness.SQSClient(t), QueueURL: url}
	startPoller(t, testPoller(t, url), queue.InOrderByGroup(dl.Wrap(failPoison(&log)), 2))

	require.Equal(t, []string{"poison"}, receiveAll(t, dlqURL, 1))
	require.Eventually(t, func() bool { return messagesInQueue(t, url) == 0 }, waitLimit, 100*time.Millisecond)
	// The poison was tried maxReceiveCount times, nothing of its group overtook it, and once it
	// was moved the later messages were handled, in order, once each.
	want := append(slices.Repeat([]string{"poison"}, deployed.EventQueueMaxReceiveCount), "p1", "p2")
	require.Equal(t, want, log.bodiesOf("P"))
	var counts []int
	for _, m := range log.snapshot() {
		if m.Body == "poison" {
			counts = append(counts, m.ReceiveCount)
		}
	}
	require.Equal(t, upTo(deployed.EventQueueMaxReceiveCount), counts)
	require.Equal(t, []string{"o1", "o2"}, log.bodiesOf("O"), "the other group is not held up")
	require.Equal(t, 1, messagesInQueue(t, dlqURL), "only the poison was dead-lettered (received above, so in flight there)")
}

func TestDeadLetterMovesPanickingMessage(t *testing.T) {
	t.Parallel()
	url, dlqURL := harness.CreateQueue(t, "queue-poison-panic", false, 2)
	require.NoError(t, queue.Send(context.Background(), harness.SQSClient(t), url, []queue.Outgoing{{Body: "panics"}}))
	var calls atomic.Int32
	dl := &queue.DeadLetter{Client: harness.SQSClient(t), QueueURL: url}
	startPoller(t, testPoller(t, url), queue.InOrderByGroup(dl.Wrap(func(context.Context, queue.Message) error {
		calls.Add(1)
		panic("bug")
	}), 1))
	require.Equal(t, []string{"panics"}, receiveAll(t, dlqURL, 1), "a standard dead-letter queue takes the copy too")
	require.Eventually(t, func() bool { return messagesInQueue(t, url) == 0 }, waitLimit, 100*time.Millisecond)
	require.Equal(t, int32(2), calls.Load())
}

func TestPollerSurvivesPanickingBatchHandler(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueueWithAttributes(t, "queue-panic", false, 5, map[string]string{"VisibilityTimeout": "300"})
	require.NoError(t, queue.Send(context.Background(), harness.SQSClient(t), url, []queue.Outgoing{{Body: "m"}}))

	var log handled
	startPoller(t, testPoller(t, url), func(_ context.Context, batch []queue.Message) []string {
		for _, m := range batch {
			log.add(m)
			if m.ReceiveCount == 1 {
				panic("bug in the batch handler")
			}
		}
		return nil
	})

	require.Eventually(t, func() bool { return len(log.snapshot()) >= 2 }, waitLimit, 50*time.Millisecond)
	require.Eventually(t, func() bool { return messagesInQueue(t, url) == 0 }, waitLimit, 100*time.Millisecond)
}

// countingHandler counts the log records at or above a level.
type countingHandler struct {
	mu    sync.Mutex
	count int
}

func (c *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (c *countingHandler) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	return nil
}
func (c *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler { return c }
func (c *countingHandler) WithGroup(string) slog.Handler            { return c }

func (c *countingHandler) warnings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

func TestPollerKeepsRetryingUnreachableQueue(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "queue-gone", false, 1)
	missing := strings.Replace(url, "queue-gone", "queue-never-created", 1)
	logs := &countingHandler{}
	p := testPoller(t, missing)
	p.Logger = slog.New(logs)
	p.Workers = 2

	stop := startPoller(t, p, func(context.Context, []queue.Message) []string {
		t.Error("nothing can be received from a missing queue")
		return nil
	})

	require.Eventually(t, func() bool { return logs.warnings() >= 4 }, waitLimit, 20*time.Millisecond)
	stop() // Run returns nil once cancelled, though every receive failed
}

func TestPollerNeedsClientAndURL(t *testing.T) {
	t.Parallel()
	err := (&queue.Poller{}).Run(context.Background(), func(context.Context, []queue.Message) []string { return nil })
	require.Error(t, err)
}

func TestPollerRenewsVisibilityWhileHandling(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "queue-renew", false, 5)
	require.NoError(t, queue.Send(context.Background(), harness.SQSClient(t), url, []queue.Outgoing{{Body: "long task"}}))

	var log handled
	p := testPoller(t, url)
	p.Workers = 2
	p.VisibilityTimeout = 3 * time.Second
	startPoller(t, p, queue.InOrderByGroup(func(_ context.Context, m queue.Message) error {
		log.add(m)
		if m.ReceiveCount == 1 {
			// Outlast two visibility timeouts: without renewals the other worker would get the
			// message meanwhile.
			time.Sleep(7 * time.Second)
		}
		return nil
	}, 1))

	require.Eventually(t, func() bool { return messagesInQueue(t, url) == 0 && len(log.snapshot()) > 0 }, waitLimit, 100*time.Millisecond)
	require.Equal(t, []string{"long task"}, log.bodiesOf("*"), "handled once")
}
