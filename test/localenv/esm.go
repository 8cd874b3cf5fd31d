package localenv

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Invoker runs one invocation of a function; *RIE is one.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) (RIEResult, error)
}

// EventSourceMapping behaves like a Lambda SQS event-source mapping: it long-polls the queue,
// forms batches of up to BatchSize messages (waiting up to MaximumBatchingWindow to fill one),
// invokes the function with an SQS event, and deletes what succeeded. With
// ReportBatchItemFailures only the messages not named in the response's batchItemFailures are
// deleted; a function error, a crash or a timeout fails the whole batch and deletes nothing, as
// does a response naming a message that was not in the batch. It never changes a message's
// visibility: failed messages come back after the queue's visibility timeout, and the queue's
// own redrive policy (maxReceiveCount) moves them to the dead-letter queue.
//
// Each Invoker is one execution environment: one loop per invoker, so len(Invokers) is the
// mapping's concurrency (ScalingConfig.MaximumConcurrency, scaled down).
type EventSourceMapping struct {
	// UUID identifies the mapping in the Lambda API (see LambdaFake.AddEventSourceMapping).
	// Defaults to a random one.
	UUID string
	// FunctionName is the function's name.
	FunctionName string
	// QueueURL is the queue polled; EventSourceARN its ARN.
	QueueURL, EventSourceARN string
	// BatchSize is the most messages per invocation. Defaults to 10.
	BatchSize int
	// MaximumBatchingWindow is how long to keep receiving to fill a batch. Defaults to 0: one
	// receive per batch.
	MaximumBatchingWindow time.Duration
	// ReportBatchItemFailures is FunctionResponseTypes=[ReportBatchItemFailures].
	ReportBatchItemFailures bool
	// MaximumConcurrency is what the template says (ScalingConfig); the concurrency run is
	// len(Invokers). Reported by the Lambda API only.
	MaximumConcurrency int
	// Invokers run the function, one invocation at a time each.
	Invokers []Invoker
	// PollWait is each receive's long-poll wait. Defaults to 20s, as Lambda's pollers wait; a
	// receive waiting when the mapping is disabled may still deliver one batch (Lambda's
	// "Disabling" state), so tests that pause a mapping set less.
	PollWait time.Duration
	// SQS is the client for the queue.
	SQS *sqs.Client
	// Logger receives one line per batch. Defaults to discarding.
	Logger *slog.Logger

	enabled                           atomic.Bool
	busy                              atomic.Int64 // loops receiving or invoking
	invocations, deleted, failedBatch atomic.Int64
	cancel                            context.CancelFunc
	wg                                sync.WaitGroup
	lastModified                      atomic.Int64
}

// Start starts polling, enabled. Stop ends it.
func (m *EventSourceMapping) Start() {
	if m.UUID == "" {
		id := RandomHex(16)
		m.UUID = id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
	}
	if m.BatchSize < 1 {
		m.BatchSize = 10
	}
	if m.PollWait <= 0 {
		m.PollWait = 20 * time.Second
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m.SetEnabled(true)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	for _, inv := range m.Invokers {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.loop(ctx, inv)
		}()
	}
}

// Stop stops polling and waits for the invocations in flight.
func (m *EventSourceMapping) Stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
}

// SetEnabled pauses (false) or resumes (true) polling, as UpdateEventSourceMapping's Enabled
// does. A batch in flight is finished.
func (m *EventSourceMapping) SetEnabled(on bool) {
	m.enabled.Store(on)
	m.lastModified.Store(time.Now().Unix())
}

// Enabled reports whether the mapping polls.
func (m *EventSourceMapping) Enabled() bool { return m.enabled.Load() }

// Idle reports that no loop is receiving or invoking: after SetEnabled(false), once Idle,
// nothing more is consumed until the mapping is enabled again.
func (m *EventSourceMapping) Idle() bool { return m.busy.Load() == 0 }

// Invocations is how many times the function was invoked.
func (m *EventSourceMapping) Invocations() int64 { return m.invocations.Load() }

// Deleted is how many messages were deleted after their invocation succeeded.
func (m *EventSourceMapping) Deleted() int64 { return m.deleted.Load() }

// FailedBatches is how many invocations failed as a whole (nothing deleted).
func (m *EventSourceMapping) FailedBatches() int64 { return m.failedBatch.Load() }

func (m *EventSourceMapping) loop(ctx context.Context, inv Invoker) {
	for ctx.Err() == nil {
		if !m.Enabled() {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		m.busy.Add(1)
		m.poll(ctx, inv)
		m.busy.Add(-1)
	}
}

// poll receives one batch and invokes the function with it.
func (m *EventSourceMapping) poll(ctx context.Context, inv Invoker) {
	batch, err := m.receive(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.Logger.Warn("event-source mapping: receive failed", "function", m.FunctionName, "error", err.Error())
			sleep(ctx, time.Second)
		}
		return
	}
	if len(batch) == 0 {
		return
	}
	// Like Lambda, a batch received is invoked even if the mapping was just disabled or is
	// stopping: the function decides, and what it does not finish comes back.
	m.invoke(context.WithoutCancel(ctx), inv, batch)
}

// receive long-polls for a batch: one receive, then more while the batching window lasts and
// the batch is not full.
func (m *EventSourceMapping) receive(ctx context.Context) ([]sqstypes.Message, error) {
	var batch []sqstypes.Message
	var deadline time.Time
	for len(batch) < m.BatchSize {
		wait := int32((m.PollWait + time.Second - 1) / time.Second)
		if len(batch) > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			wait = int32((left + time.Second - 1) / time.Second)
		}
		out, err := m.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(m.QueueURL),
			MaxNumberOfMessages:         int32(min(10, m.BatchSize-len(batch))),
			WaitTimeSeconds:             wait,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			if len(batch) > 0 {
				return batch, nil
			}
			return nil, err
		}
		if len(batch) == 0 {
			if len(out.Messages) == 0 {
				return nil, nil
			}
			deadline = time.Now().Add(m.MaximumBatchingWindow)
		}
		batch = append(batch, out.Messages...)
		if m.MaximumBatchingWindow <= 0 {
			break
		}
	}
	return batch, nil
}

func (m *EventSourceMapping) invoke(ctx context.Context, inv Invoker, batch []sqstypes.Message) {
	payload, err := json.Marshal(m.event(batch))
	if err != nil {
		m.Logger.Error("event-source mapping: encoding the event", "error", err.Error())
		return
	}
	m.invocations.Add(1)
	res, err := inv.Invoke(ctx, payload)
	if err != nil || res.Failed {
		m.failedBatch.Add(1)
		m.Logger.Info("event-source mapping: batch failed; its messages come back after the visibility timeout",
			"function", m.FunctionName, "messages", len(batch), "timedOut", res.TimedOut, "error", fmt.Sprint(err), "response", truncate(res.Payload, 300))
		return
	}
	failed := map[string]bool{}
	if m.ReportBatchItemFailures {
		// As Lambda documents: null, {} and an empty or null batchItemFailures are complete
		// success; a response that is not a JSON batch response, or names an identifier not in
		// the batch (empty, null, misspelt key), is complete failure.
		var resp events.SQSEventResponse
		if err := json.Unmarshal(res.Payload, &resp); err != nil {
			m.failedBatch.Add(1)
			m.Logger.Info("event-source mapping: the response is not a batch response; the batch failed",
				"function", m.FunctionName, "response", truncate(res.Payload, 300))
			return
		}
		inBatch := map[string]bool{}
		for _, msg := range batch {
			inBatch[aws.ToString(msg.MessageId)] = true
		}
		for _, f := range resp.BatchItemFailures {
			if !inBatch[f.ItemIdentifier] {
				m.failedBatch.Add(1)
				m.Logger.Info("event-source mapping: batchItemFailures names a message not in the batch; the batch failed",
					"function", m.FunctionName, "itemIdentifier", f.ItemIdentifier)
				return
			}
			failed[f.ItemIdentifier] = true
		}
	}
	var entries []sqstypes.DeleteMessageBatchRequestEntry
	for i, msg := range batch {
		if !failed[aws.ToString(msg.MessageId)] {
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: msg.ReceiptHandle})
		}
	}
	for start := 0; start < len(entries); start += 10 {
		chunk := entries[start:min(start+10, len(entries))]
		out, err := m.SQS.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(m.QueueURL), Entries: chunk})
		if err != nil {
			m.Logger.Warn("event-source mapping: delete failed", "function", m.FunctionName, "error", err.Error())
			continue
		}
		m.deleted.Add(int64(len(out.Successful)))
	}
	m.Logger.Info("event-source mapping: batch done", "function", m.FunctionName, "messages", len(batch), "failed", len(failed))
}

// event is the SQS event Lambda gives the function for batch.
func (m *EventSourceMapping) event(batch []sqstypes.Message) events.SQSEvent {
	region := Region
	if parts := strings.Split(m.EventSourceARN, ":"); len(parts) > 3 && parts[3] != "" {
		region = parts[3]
	}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(batch))}
	for i, msg := range batch {
		body := aws.ToString(msg.Body)
		sum := md5.Sum([]byte(body))
		attrs := map[string]events.SQSMessageAttribute{}
		for name, a := range msg.MessageAttributes {
			attrs[name] = events.SQSMessageAttribute{
				DataType: aws.ToString(a.DataType), StringValue: a.StringValue, BinaryValue: a.BinaryValue,
				StringListValues: a.StringListValues, BinaryListValues: a.BinaryListValues,
			}
		}
		ev.Records[i] = events.SQSMessage{
			MessageId: aws.ToString(msg.MessageId), ReceiptHandle: aws.ToString(msg.ReceiptHandle), Body: body,
			Md5OfBody: hex.EncodeToString(sum[:]), Md5OfMessageAttributes: aws.ToString(msg.MD5OfMessageAttributes),
			Attributes: msg.Attributes, MessageAttributes: attrs,
			EventSource: "aws:sqs", EventSourceARN: m.EventSourceARN, AWSRegion: region,
		}
	}
	return ev
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Schedule invokes a function on a clock with a fixed payload, as an EventBridge rule with a
// rate expression and a constant Input does.
type Schedule struct {
	// Every is the rule's rate.
	Every time.Duration
	// Payload is the target's Input.
	Payload []byte
	// Invoker runs the function (EventBridge invokes asynchronously; the schedule waits, so
	// invocations of one schedule never overlap).
	Invoker Invoker

	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts the clock; the first invocation is one period from now. Stop ends it.
func (s *Schedule) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _ = s.Fire(ctx)
			}
		}
	}()
}

// Fire invokes the function once now, as the rule would.
func (s *Schedule) Fire(ctx context.Context) (RIEResult, error) {
	return s.Invoker.Invoke(ctx, s.Payload)
}

// Stop stops the clock and waits for an invocation in flight.
func (s *Schedule) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// InvokerFunc is a function as an Invoker.
type InvokerFunc func(ctx context.Context, payload []byte) (RIEResult, error)

// Invoke calls f.
func (f InvokerFunc) Invoke(ctx context.Context, payload []byte) (RIEResult, error) {
	return f(ctx, payload)
}
