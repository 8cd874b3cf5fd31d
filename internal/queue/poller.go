package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Poller receives from one queue in local mode.
type Poller struct {
	Client      *sqs.Client
	QueueURL    string
	Workers     int           // concurrent receive loops; Defaults to 1.
	MaxMessages int32         // per receive, 1..10; Defaults to 10.
	WaitTime    time.Duration // long-poll wait, rounded up to whole seconds, at most 20s; Defaults to 20s (tests set ~1s).
	RetryDelay  time.Duration // a failed message becomes visible again after this (ChangeMessageVisibility), rounded up to whole seconds; Defaults to 0 = keep the queue's visibility timeout.
	Logger      *slog.Logger  // Defaults to slog.Default().

	// VisibilityTimeout, when set, is the visibility timeout messages are received with, renewed
	// every third of it while their batch is being handled: a handler (a Terraform run) may then
	// take longer than the timeout without its message being delivered to another worker
	// meanwhile, and a crashed worker's messages still come back soon. Rounded up to whole
	// seconds. Defaults to 0 = the queue's visibility timeout, never renewed.
	VisibilityTimeout time.Duration

	// Gate, when set, stops receiving while it is closed (a dependency of every message is down),
	// so an outage does not spend the messages' receive counts. Defaults to nil = always receive.
	Gate *Gate
}

// Backoff after failed receives: doubling from receiveBackoffMin up to receiveBackoffMax, so an
// unreachable queue costs a log line every half minute at most, not a busy loop.
const (
	receiveBackoffMin = 200 * time.Millisecond
	receiveBackoffMax = 30 * time.Second
)

// maxVisibilitySeconds is the longest visibility timeout SQS accepts: 12 hours.
const maxVisibilitySeconds = 12 * 60 * 60

// ackAttempts is how often a delete or visibility change is tried before it is given up; a lost
// delete only means the message is handled again, so a few quick tries are enough.
const ackAttempts = 3

// Run polls until ctx is cancelled, then finishes the batches in flight and returns nil.
// Successful messages are deleted with DeleteMessageBatch; failed ones are left (or their
// visibility changed to RetryDelay). Receive errors (queue unreachable) are logged and retried with
// capped exponential backoff — never a busy loop, never exit.
//
// The handler gets a context that ctx's cancellation does not reach, and so do the deletes: a
// message being handled at shutdown is finished and acknowledged rather than abandoned halfway
// (a Terraform run killed mid-apply leaves a locked state behind). A long poll in progress is
// cancelled at once, so shutdown waits only for handlers.
func (p *Poller) Run(ctx context.Context, h BatchHandler) error {
	if p.Client == nil || p.QueueURL == "" {
		return errors.New("queue: Poller needs a Client and a QueueURL")
	}
	workers := max(p.Workers, 1)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { p.receiveLoop(ctx, h) })
	}
	wg.Wait()
	return nil
}

func (p *Poller) logger() *slog.Logger {
	return cmp.Or(p.Logger, slog.Default()).With("queueUrl", p.QueueURL)
}

func (p *Poller) receiveInput() *sqs.ReceiveMessageInput {
	maxMessages := p.MaxMessages
	if maxMessages <= 0 || maxMessages > 10 {
		maxMessages = 10
	}
	wait := int32(20)
	if p.WaitTime > 0 {
		wait = min(int32(ceilSeconds(p.WaitTime)), 20)
	}
	return &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(p.QueueURL),
		MaxNumberOfMessages: maxMessages,
		WaitTimeSeconds:     wait,
		VisibilityTimeout:   p.visibilitySeconds(),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount,
			types.MessageSystemAttributeNameMessageGroupId,
			types.MessageSystemAttributeNameSenderId,
		},
		MessageAttributeNames: []string{"All"},
	}
}

func (p *Poller) receiveLoop(ctx context.Context, h BatchHandler) {
	log := p.logger()
	in := p.receiveInput()
	failures := 0
	for ctx.Err() == nil {
		if p.Gate != nil && !p.Gate.wait(ctx) {
			return
		}
		out, err := p.Client.ReceiveMessage(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := backoff(failures)
			failures++
			log.WarnContext(ctx, "error receiving messages; retrying", "error", err.Error(), "retryIn", delay.String(), "failures", failures)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		if failures > 0 {
			log.InfoContext(ctx, "receiving messages again", "afterFailures", failures)
			failures = 0
		}
		if len(out.Messages) > 0 {
			p.process(context.WithoutCancel(ctx), log, h, out.Messages)
		}
	}
}

// backoff is the wait after the (failures+1)th failed receive in a row: exponential, capped,
// with jitter so that several workers do not retry in lockstep.
func backoff(failures int) time.Duration {
	d := receiveBackoffMax
	if failures < 16 {
		d = min(receiveBackoffMin<<failures, receiveBackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// process handles one received batch and acknowledges it.
func (p *Poller) process(ctx context.Context, log *slog.Logger, h BatchHandler, received []types.Message) {
	batch := make([]Message, len(received))
	receipts := make(map[string]string, len(received))
	for i, r := range received {
		id := aws.ToString(r.MessageId)
		batch[i] = messageFromAttributes(id, aws.ToString(r.Body), r.Attributes)
		batch[i].Source = p.QueueURL
		batch[i].Attributes = stringAttributes(r.MessageAttributes, func(a types.MessageAttributeValue) *string { return a.StringValue })
		receipts[id] = aws.ToString(r.ReceiptHandle)
		if log.Enabled(ctx, slog.LevelDebug) { // logAttrs decodes the body: only when it is logged
			log.DebugContext(ctx, "message received", append(batch[i].logAttrs(), "outcome", "received", "receiveCount", batch[i].ReceiveCount)...)
		}
	}

	stopRenewing := p.renewVisibility(ctx, log, received)
	failed := callRecovering(ctx, log, h, batch)
	stopRenewing()
	isFailed := make(map[string]bool, len(failed))
	for _, id := range failed {
		if _, ok := receipts[id]; !ok {
			log.ErrorContext(ctx, "batch handler reported a failed message that is not in the batch", "messageId", id)
			continue
		}
		isFailed[id] = true
	}

	var done, retry []types.Message
	for _, r := range received {
		if isFailed[aws.ToString(r.MessageId)] {
			retry = append(retry, r)
		} else {
			done = append(done, r)
		}
	}
	p.deleteMessages(ctx, log, done)
	if p.RetryDelay > 0 {
		p.delayMessages(ctx, log, retry)
	}
}

// callRecovering calls h, counting the whole batch as failed if h panics: the messages then come
// back, and the worker lives on.
func callRecovering(ctx context.Context, log *slog.Logger, h BatchHandler, batch []Message) (failed []string) {
	defer func() {
		if r := recover(); r != nil {
			log.ErrorContext(ctx, "batch handler panicked; the whole batch will be delivered again",
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()), "messages", len(batch))
			failed = make([]string, len(batch))
			for i, m := range batch {
				failed[i] = m.ID
			}
		}
	}()
	return h(ctx, batch)
}

func (p *Poller) deleteMessages(ctx context.Context, log *slog.Logger, msgs []types.Message) {
	batchAck(ctx, log, "delete", msgs, func(entries []types.Message) ([]types.BatchResultErrorEntry, error) {
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.QueueURL)}
		for i, m := range entries {
			in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle,
			})
		}
		out, err := p.Client.DeleteMessageBatch(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
}

// visibilitySeconds is VisibilityTimeout as SQS takes it; 0 means the queue's own.
func (p *Poller) visibilitySeconds() int32 {
	if p.VisibilityTimeout <= 0 {
		return 0
	}
	return int32(min(ceilSeconds(p.VisibilityTimeout), maxVisibilitySeconds))
}

// renewVisibility keeps msgs invisible while their batch is being handled, when VisibilityTimeout
// is set, until the returned function is called (which waits for a renewal in progress, so that
// it cannot override the acknowledgements that follow).
func (p *Poller) renewVisibility(ctx context.Context, log *slog.Logger, msgs []types.Message) (stop func()) {
	seconds := p.visibilitySeconds()
	if seconds == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := time.NewTicker(time.Duration(seconds) * time.Second / 3)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				p.changeVisibility(ctx, log, msgs, seconds)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func (p *Poller) delayMessages(ctx context.Context, log *slog.Logger, msgs []types.Message) {
	p.changeVisibility(ctx, log, msgs, int32(min(ceilSeconds(p.RetryDelay), maxVisibilitySeconds)))
}

func (p *Poller) changeVisibility(ctx context.Context, log *slog.Logger, msgs []types.Message, seconds int32) {
	batchAck(ctx, log, "change visibility", msgs, func(entries []types.Message) ([]types.BatchResultErrorEntry, error) {
		in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(p.QueueURL)}
		for i, m := range entries {
			in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: seconds,
			})
		}
		out, err := p.Client.ChangeMessageVisibilityBatch(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
}

// batchAck runs one of the batch acknowledgement calls for msgs (at most 10, one receive's worth),
// retrying the entries that failed for a reason other than the caller's fault. What still fails
// is logged: SQS then delivers the message again after its visibility timeout, which handlers
// must tolerate anyway.
func batchAck(ctx context.Context, log *slog.Logger, what string, msgs []types.Message,
	call func([]types.Message) ([]types.BatchResultErrorEntry, error)) {
	for attempt := 1; len(msgs) > 0; attempt++ {
		failed, err := call(msgs)
		if err != nil {
			if attempt < ackAttempts {
				time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
				continue
			}
			for _, m := range msgs {
				log.WarnContext(ctx, "could not "+what+" message", "messageId", aws.ToString(m.MessageId), "error", err.Error())
			}
			return
		}
		var again []types.Message
		for _, f := range failed {
			i, convErr := strconv.Atoi(aws.ToString(f.Id))
			if convErr != nil || i < 0 || i >= len(msgs) {
				continue
			}
			m := msgs[i]
			if f.SenderFault || attempt >= ackAttempts {
				log.WarnContext(ctx, "could not "+what+" message", "messageId", aws.ToString(m.MessageId),
					"code", aws.ToString(f.Code), "error", aws.ToString(f.Message))
				continue
			}
			again = append(again, m)
		}
		if len(again) > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		msgs = again
	}
}

// ceilSeconds rounds d up to whole seconds, the unit SQS takes.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
