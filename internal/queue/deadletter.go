package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// DeadLetter moves a message that fails on its last receive to its queue's dead-letter queue
// itself, and acknowledges it, instead of leaving the move to SQS's redrive on the next receive.
//
// This matters on FIFO queues. SQS delivers a group's later messages in the same receive as a
// failing one, and counts the receive on each of them, although InOrderByGroup does not handle
// them; so by the time SQS dead-letters a poison message, the messages queued behind it have as
// many receives and go to the dead-letter queue with it, never handled: their stack would be
// stuck for good. Moved on its last receive, the poison message leaves its group at once, and the
// later messages in the same batch are handled right after it.
//
// The dead-letter queue and maxReceiveCount are read from the queue's RedrivePolicy
// (sqs:GetQueueAttributes) when a message first fails, and again after policyTTL; the copy is sent
// with sqs:SendMessage. A queue without a RedrivePolicy moves nothing. The copy keeps the body
// and the group and string attributes (a result's signature); on a FIFO dead-letter queue its
// deduplication id is the original message id, so a copy sent twice is kept once. A failure
// marked ErrPaused (an outage the Gate confirmed) is never moved.
type DeadLetter struct {
	Client   *sqs.Client
	QueueURL string
	Logger   *slog.Logger // Defaults to slog.Default().

	mu      sync.Mutex
	policy  redrivePolicy
	fetched time.Time
}

// policyTTL is how long a RedrivePolicy read from the queue is used before it is read again, so
// that a changed policy takes effect without a restart.
const policyTTL = time.Minute

// redrivePolicy is a queue's RedrivePolicy; a zero maxReceiveCount means none.
type redrivePolicy struct {
	maxReceiveCount int
	dlqURL          string
}

// Wrap returns handle with dead-lettering on the last receive: when handle fails (or panics) for
// a message whose ReceiveCount has reached the queue's maxReceiveCount, the message is sent to
// the dead-letter queue, logged as an error, and reported done. If the policy cannot be read or
// the copy cannot be sent, the failure is returned as it was, and SQS's redrive remains.
func (d *DeadLetter) Wrap(handle func(context.Context, Message) error) func(context.Context, Message) error {
	return func(ctx context.Context, m Message) error {
		err := handleRecovering(ctx, handle, m)
		if err == nil || m.ReceiveCount <= 0 || errors.Is(err, ErrPaused) {
			// An outage is not the message's fault: it stays, whatever its receive count.
			return err
		}
		policy, perr := d.redrivePolicy(ctx)
		if perr != nil {
			d.logger().WarnContext(ctx, "cannot read the queue's redrive policy; SQS will redrive the message",
				append(m.logAttrs(), "outcome", "retry", "error", perr.Error())...)
			return err
		}
		if policy.maxReceiveCount == 0 || m.ReceiveCount < policy.maxReceiveCount {
			return err
		}
		dlqID, serr := d.send(ctx, policy.dlqURL, m)
		if serr != nil {
			d.logger().WarnContext(ctx, "cannot move the message to the dead-letter queue; SQS will redrive it",
				append(m.logAttrs(), "outcome", "retry", "error", serr.Error())...)
			return err
		}
		attrs := append(m.logAttrs(), "outcome", "dead-lettered", "receiveCount", m.ReceiveCount,
			"maxReceiveCount", policy.maxReceiveCount, "deadLetterMessageId", dlqID, "error", err.Error())
		if pe, ok := errors.AsType[*panicError](err); ok {
			attrs = append(attrs, "stack", string(pe.stack))
		}
		d.logger().ErrorContext(ctx, "message failed on its last receive; moved to the dead-letter queue", attrs...)
		return nil
	}
}

func (d *DeadLetter) logger() *slog.Logger {
	return cmp.Or(d.Logger, slog.Default())
}

// redrivePolicy returns the queue's redrive policy, read at most once per policyTTL.
func (d *DeadLetter) redrivePolicy(ctx context.Context) (redrivePolicy, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.fetched.IsZero() && time.Since(d.fetched) < policyTTL {
		return d.policy, nil
	}
	out, err := d.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(d.QueueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return redrivePolicy{}, fmt.Errorf("error reading the redrive policy of %s: %w", d.QueueURL, err)
	}
	p, err := parseRedrivePolicy(d.QueueURL, out.Attributes[string(types.QueueAttributeNameRedrivePolicy)])
	if err != nil {
		return redrivePolicy{}, err
	}
	d.policy, d.fetched = p, time.Now()
	return p, nil
}

// parseRedrivePolicy reads a RedrivePolicy attribute. SQS requires the dead-letter queue to be in
// the source queue's account and region, so its URL is the source queue's URL with the last path
// segment replaced by the dead-letter queue's name (the last part of its ARN); this needs no
// sqs:GetQueueUrl and works against local endpoints too.
func parseRedrivePolicy(queueURL, raw string) (redrivePolicy, error) {
	if raw == "" {
		return redrivePolicy{}, nil
	}
	var p struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"` // a number, or a string holding one
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return redrivePolicy{}, fmt.Errorf("error parsing the redrive policy of %s: %w", queueURL, err)
	}
	n, err := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	if err != nil || n < 1 {
		return redrivePolicy{}, fmt.Errorf("error parsing the redrive policy of %s: maxReceiveCount %s", queueURL, p.MaxReceiveCount)
	}
	arn := strings.Split(p.DeadLetterTargetArn, ":")
	slash := strings.LastIndex(queueURL, "/")
	if len(arn) != 6 || arn[5] == "" || slash < 0 {
		return redrivePolicy{}, fmt.Errorf("error parsing the redrive policy of %s: deadLetterTargetArn %q", queueURL, p.DeadLetterTargetArn)
	}
	return redrivePolicy{maxReceiveCount: n, dlqURL: queueURL[:slash+1] + arn[5]}, nil
}

// send copies m to the dead-letter queue and returns the copy's message id.
func (d *DeadLetter) send(ctx context.Context, dlqURL string, m Message) (string, error) {
	in := &sqs.SendMessageInput{QueueUrl: aws.String(dlqURL), MessageBody: aws.String(m.Body)}
	// The attributes go along (a result's signature), so a redrive by hand is accepted.
	for name, v := range m.Attributes {
		if in.MessageAttributes == nil {
			in.MessageAttributes = map[string]types.MessageAttributeValue{}
		}
		in.MessageAttributes[name] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	if strings.HasSuffix(dlqURL, ".fifo") {
		group := m.GroupID
		if group == "" {
			group = "dead-letter" // a FIFO queue needs a group; a FIFO source always gives one
		}
		in.MessageGroupId = aws.String(group)
		in.MessageDeduplicationId = aws.String(m.ID)
	}
	out, err := d.Client.SendMessage(ctx, in)
	if err != nil {
		return "", fmt.Errorf("error sending message %s to %s: %w", m.ID, dlqURL, err)
	}
	return aws.ToString(out.MessageId), nil
}
