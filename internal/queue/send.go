package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/stackseam/stackseam/internal/faults"
)

// Outgoing is one message to send.
type Outgoing struct {
	Body    string
	GroupID string // FIFO only
	DedupID string // FIFO only
	// DelaySeconds holds the message back (0–900); standard queues only, as
	// FIFO queues accept a delay only per queue.
	DelaySeconds int32
	// Attributes are sent as String message attributes (a result's signature).
	Attributes map[string]string
}

// SendMessageBatch limits: entries per call, and bytes of all bodies together per call.
const (
	maxBatchEntries = 10
	maxBatchBytes   = 256 * 1024
)

// sendAttempts is how often an entry that failed for a transient reason is sent; the SDK already
// retries whole requests that fail (throttling, 5xx), this covers per-entry failures.
const sendAttempts = 3

// MaxMessageBytes is the largest message body SQS accepts on a queue with the default
// MaximumMessageSize (256 KiB). Send refuses a larger body without sending it.
const MaxMessageBytes = 256 * 1024

// SendFailure is one message that Send could not send.
type SendFailure struct {
	Index int    // position of the message in the slice given to Send
	Code  string // SQS error code of the entry, "" when the whole request failed
	Err   error
	// Permanent means the message itself is refused (too large, or SQS says the sender is at
	// fault): sending it again would fail again.
	Permanent bool
}

// SendError reports the messages Send could not send; every other message was sent.
type SendError struct {
	QueueURL string
	Failures []SendFailure // in the order of the slice given to Send
}

// Error names the failed messages by their index, and the first few reasons.
func (e *SendError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "error sending %d message(s) to %s:", len(e.Failures), e.QueueURL)
	for i, f := range e.Failures {
		if i == 5 {
			fmt.Fprintf(&b, " (and %d more)", len(e.Failures)-i)
			break
		}
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " #%d: %v", f.Index, f.Err)
	}
	return b.String()
}

// Unwrap gives the causes, so errors.Is(err, context.Canceled) works.
func (e *SendError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}

// Send sends messages to one queue with SendMessageBatch in chunks of at most 10 entries and
// 256 KiB total; an entry that fails is retried a few times (transient); returns an error naming
// the entries that still failed. A nil/empty slice is a no-op.
//
// The error is a *SendError, so a caller such as an outbox can mark the other messages sent.
// A chunk whose request fails does not stop the later chunks, unless ctx is done. Once a message
// with a GroupID fails, the later messages of that group wait for its retry, or fail with it, so a
// retry does not put it behind them (only a later message in the very same request can overtake
// it). A body over MaxMessageBytes is not sent: it fails as Permanent.
func Send(ctx context.Context, client *sqs.Client, queueURL string, msgs []Outgoing) error {
	if len(msgs) == 0 {
		return nil
	}
	pending := make([]int, len(msgs))
	for i := range msgs {
		pending[i] = i
	}
	failures := make(map[int]SendFailure)
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt-1) * 100 * time.Millisecond):
			}
		}
		last := attempt >= sendAttempts
		var again []int
		// blocked holds the groups with a message not sent in this attempt; final means that
		// message will not be retried, so neither will the rest of its group.
		type block struct {
			err   error
			final bool
		}
		blocked := make(map[string]block)
		// retryOrFail records that msgs[i] was not sent in this attempt, and blocks its group.
		retryOrFail := func(i int, f SendFailure, retryable bool) {
			final := !retryable || last
			if g := msgs[i].GroupID; g != "" {
				if _, ok := blocked[g]; !ok {
					blocked[g] = block{fmt.Errorf("not sent: message #%d of its group failed", i), final}
				}
			}
			if final {
				failures[i] = f
				return
			}
			again = append(again, i)
		}
		for _, chunk := range chunks(msgs, pending) {
			var send []int
			for _, i := range chunk {
				if err := ctx.Err(); err != nil {
					retryOrFail(i, SendFailure{Index: i, Err: context.Cause(ctx)}, false)
				} else if n := len(msgs[i].Body); n > MaxMessageBytes {
					retryOrFail(i, SendFailure{Index: i, Permanent: true,
						Err: fmt.Errorf("the message is %d bytes; SQS accepts at most %d", n, MaxMessageBytes)}, false)
				} else if b, ok := blocked[msgs[i].GroupID]; ok {
					retryOrFail(i, SendFailure{Index: i, Err: b.err}, !b.final)
				} else {
					send = append(send, i)
				}
			}
			if len(send) == 0 {
				continue
			}
			failed, err := sendChunk(ctx, client, queueURL, msgs, send)
			if err != nil {
				// The SDK has retried the request already; what is left is not worth another round.
				for _, i := range send {
					retryOrFail(i, SendFailure{Index: i, Err: err}, false)
				}
				continue
			}
			// Entries are handled in request order so that a group is blocked by its first failure.
			byIndex := make(map[int]types.BatchResultErrorEntry, len(failed))
			for _, f := range failed {
				if i, convErr := strconv.Atoi(aws.ToString(f.Id)); convErr == nil {
					byIndex[i] = f
				}
			}
			for _, i := range send {
				if f, ok := byIndex[i]; ok {
					err := fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
					retryOrFail(i, SendFailure{Index: i, Code: aws.ToString(f.Code), Err: err, Permanent: f.SenderFault}, !f.SenderFault)
				}
			}
		}
		slices.Sort(again)
		pending = again
	}
	if len(failures) == 0 {
		return nil
	}
	sendErr := &SendError{QueueURL: queueURL}
	for i := range msgs {
		if f, ok := failures[i]; ok {
			sendErr.Failures = append(sendErr.Failures, f)
		}
	}
	return sendErr
}

// chunks splits the messages at the given indexes into SendMessageBatch-sized groups, keeping
// their order (FIFO queues keep the order of entries within a group).
func chunks(msgs []Outgoing, indexes []int) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for _, i := range indexes {
		n := len(msgs[i].Body)
		if len(cur) > 0 && (len(cur) == maxBatchEntries || size+n > maxBatchBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, i)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sendChunk sends one chunk; entry IDs are the indexes into msgs.
func sendChunk(ctx context.Context, client *sqs.Client, queueURL string, msgs []Outgoing, chunk []int) ([]types.BatchResultErrorEntry, error) {
	if err := faults.SendBatch(); err != nil { // a failing request, in fault-injection tests
		return nil, err
	}
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL)}
	for _, i := range chunk {
		m := msgs[i]
		e := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m.Body)}
		if m.GroupID != "" {
			e.MessageGroupId = aws.String(m.GroupID)
		}
		if m.DedupID != "" {
			e.MessageDeduplicationId = aws.String(m.DedupID)
		}
		if m.DelaySeconds > 0 {
			e.DelaySeconds = min(m.DelaySeconds, 900)
		}
		for name, v := range m.Attributes {
			if e.MessageAttributes == nil {
				e.MessageAttributes = map[string]types.MessageAttributeValue{}
			}
			e.MessageAttributes[name] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
		in.Entries = append(in.Entries, e)
	}
	out, err := client.SendMessageBatch(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("error sending message batch: %w", err)
	}
	return out.Failed, nil
}
