package harness_test

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// The emulator must receive from FIFO queues as SQS does (README, "Development"): as many
// messages of one group as fit, in order; nothing of a group while any of its messages is in
// flight. The tests of in-order batch handling and of dead-lettering rely on it.

// fifoQueue is a FIFO test queue with the emulator's client.
type fifoQueue struct {
	t      *testing.T
	ctx    context.Context
	client *sqs.Client
	url    string
	dlq    string
	n      int
}

func newFIFOQueue(t *testing.T, name string, maxReceiveCount int) *fifoQueue {
	// Visibility far beyond the test: messages come back only when the test says so.
	url, dlq := harness.CreateQueueWithAttributes(t, name, true, maxReceiveCount, map[string]string{"VisibilityTimeout": "600"})
	return &fifoQueue{t: t, ctx: context.Background(), client: harness.SQSClient(t), url: url, dlq: dlq}
}

// send sends each body to group, in order.
func (q *fifoQueue) send(group string, bodies ...string) {
	q.t.Helper()
	for _, b := range bodies {
		q.n++
		_, err := q.client.SendMessage(q.ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.url), MessageBody: aws.String(b),
			MessageGroupId: aws.String(group), MessageDeduplicationId: aws.String(strconv.Itoa(q.n))})
		require.NoError(q.t, err)
	}
}

// receive makes one ReceiveMessage call on url.
func (q *fifoQueue) receive(url string, max int32) []sqstypes.Message {
	q.t.Helper()
	out, err := q.client.ReceiveMessage(q.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: max,
		WaitTimeSeconds: 1, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{
			sqstypes.MessageSystemAttributeNameMessageGroupId, sqstypes.MessageSystemAttributeNameApproximateReceiveCount}})
	require.NoError(q.t, err)
	return out.Messages
}

func (q *fifoQueue) delete(msgs ...sqstypes.Message) {
	q.t.Helper()
	for _, m := range msgs {
		_, err := q.client.DeleteMessage(q.ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle})
		require.NoError(q.t, err)
	}
}

// release makes msgs visible again at once, in the order given.
func (q *fifoQueue) release(msgs ...sqstypes.Message) {
	q.t.Helper()
	for _, m := range msgs {
		_, err := q.client.ChangeMessageVisibility(q.ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q.url),
			ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
		require.NoError(q.t, err)
	}
}

func bodies(msgs []sqstypes.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = aws.ToString(m.Body)
	}
	return out
}

// byGroup returns the bodies of msgs per message group, in the order received.
func byGroup(msgs []sqstypes.Message) map[string][]string {
	out := map[string][]string{}
	for _, m := range msgs {
		g := m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]
		out[g] = append(out[g], aws.ToString(m.Body))
	}
	return out
}

// pick returns the messages of msgs with the given bodies, in the order given.
func pick(t *testing.T, msgs []sqstypes.Message, want ...string) []sqstypes.Message {
	t.Helper()
	var out []sqstypes.Message
	for _, b := range want {
		i := slices.IndexFunc(msgs, func(m sqstypes.Message) bool { return aws.ToString(m.Body) == b })
		require.GreaterOrEqual(t, i, 0, "no message %q", b)
		out = append(out, msgs[i])
	}
	return out
}

func receiveCounts(msgs []sqstypes.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]
	}
	return out
}

func TestFIFOReceiveDeliversWholeGroupsInOrder(t *testing.T) {
	t.Parallel()
	q := newFIFOQueue(t, "fifo-groups", 10)
	q.send("A", "a1")
	q.send("B", "b1")
	q.send("A", "a2", "a3")
	q.send("B", "b2")
	q.send("A", "a4", "a5")

	first := q.receive(q.url, 10)
	require.Len(t, first, 7, "one receive holds every message of both groups")
	require.Equal(t, map[string][]string{"A": {"a1", "a2", "a3", "a4", "a5"}, "B": {"b1", "b2"}}, byGroup(first))
	require.Empty(t, q.receive(q.url, 10), "both groups are in flight")

	// Acknowledge a1 and a2: a3..a5 are still in flight, so group A stays locked, even for a
	// message sent now; group B's new message is delivered once B's are gone.
	q.delete(pick(t, first, "a1", "a2")...)
	q.send("A", "a6")
	require.Empty(t, q.receive(q.url, 10), "a group with a message in flight delivers nothing")
	q.delete(pick(t, first, "b1", "b2")...)
	q.send("B", "b3")
	require.Equal(t, []string{"b3"}, bodies(q.receive(q.url, 10)))

	// Released one by one, a3..a5 each go back to the front of their group; they are still
	// delivered in send order, before a6.
	q.release(pick(t, first, "a3", "a4", "a5")...)
	again := q.receive(q.url, 10)
	require.Equal(t, []string{"a3", "a4", "a5", "a6"}, bodies(again))
	require.Equal(t, []string{"2", "2", "2", "1"}, receiveCounts(again))

	// MaxNumberOfMessages bounds a receive; the rest of the group waits behind it.
	q.release(again...)
	two := q.receive(q.url, 2)
	require.Equal(t, []string{"a3", "a4"}, bodies(two))
	require.Empty(t, q.receive(q.url, 10))
	q.delete(two...)
	require.Equal(t, []string{"a5", "a6"}, bodies(q.receive(q.url, 10)))
}

func TestFIFOReceiveRedrivesEachMessageAtMaxReceiveCount(t *testing.T) {
	t.Parallel()
	q := newFIFOQueue(t, "fifo-redrive", 2)
	q.send("A", "a1", "a2", "a3")

	// Messages received behind a failing one count receives as well: after two receives of
	// the whole group, all three go to the dead-letter queue on the third, in order.
	for range 2 {
		msgs := q.receive(q.url, 10)
		require.Equal(t, []string{"a1", "a2", "a3"}, bodies(msgs))
		q.release(msgs...)
	}
	require.Empty(t, q.receive(q.url, 10))
	require.Equal(t, []string{"a1", "a2", "a3"}, bodies(q.receive(q.dlq, 10)))
}
