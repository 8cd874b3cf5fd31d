package applier

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
)

// The message attributes a forwarded intake message carries on the event queue: the intake
// message's SQS MessageId, and (with a result signing key) its signature, so that the event is
// applied under the key "intake:<MessageId>" however often it is forwarded.
const (
	IntakeIDAttribute        = "stackseam-intake-id"
	IntakeSignatureAttribute = "stackseam-intake-signature"
)

// Intake forwards the messages of the intake queue (SQS standard, what CloudSeam's publishers
// send to: no group id, no deduplication id) into the event queue, so they are applied like any
// event (README.md, "Publishing from CloudSeam"). Each becomes one event-queue message in its
// stack's group, deduplicated by the intake message's id, never by its content: two sends of one
// body are two events, and a redelivery of one intake message is one.
//
// A body that is not a valid event is rejected and recorded by Applier (never forwarded, never
// retried). The forwarded message carries no approval: approvals are recognised by the queue a
// message is received from (Applier.ApprovalSources), and a forwarded message is received from
// the event queue. A result's signature attribute is copied as it came, so a result is accepted
// through the intake exactly when it would be on the event queue: signed by the satisfier.
type Intake struct {
	Applier       *Applier
	Client        *sqs.Client
	EventQueueURL string
	// Key signs the intake id attribute and makes the deduplication id unguessable; the same
	// source as Applier.ResultKey.
	Key *signing.Source
}

// Handle forwards one intake message. It returns an error only for transient failures (the
// signing key, the event queue), so the message is delivered again.
func (in *Intake) Handle(ctx context.Context, m queue.Message) error {
	ev, err := message.ParseEvent([]byte(m.Body))
	if err != nil {
		return in.Applier.rejectUnparsed(ctx, m, err)
	}
	key, err := in.Key.Key(ctx)
	if err != nil {
		return fmt.Errorf("error reading the result signing key: %w", err)
	}
	attrs := map[string]string{IntakeIDAttribute: m.ID}
	if key.Required() {
		attrs[IntakeSignatureAttribute] = key.Sign(intakeSigned(m.ID))
	}
	// Only the result signature travels on; any other attribute a publisher set (the intake id
	// among them) is dropped, so it cannot be made to look like something it is not.
	if sig := m.Attributes[signing.Attribute]; sig != "" {
		attrs[signing.Attribute] = sig
	}
	out := queue.Outgoing{Body: m.Body, GroupID: ev.StackID,
		// SQS drops a second send within five minutes (a redelivered intake message whose first
		// forward went out); past that, the key "intake:<id>" makes the second one a duplicate.
		DedupID: key.DedupID("intake-" + m.ID), Attributes: attrs}
	err = queue.Send(ctx, in.Client, in.EventQueueURL, []queue.Outgoing{out})
	var sendErr *queue.SendError
	if errors.As(err, &sendErr) && len(sendErr.Failures) == 1 && sendErr.Failures[0].Permanent {
		// SQS refuses this message as sent (a stack id no message group takes): every retry
		// would be refused too.
		return in.Applier.rejectUnparsed(ctx, m, fmt.Errorf("%w: the event queue refuses it: %v", message.ErrInvalid, sendErr.Failures[0].Err))
	}
	if err != nil {
		return fmt.Errorf("error forwarding intake message %s to the event queue: %w", m.ID, err)
	}
	in.Applier.logger().Debug("intake message forwarded", "stackId", ev.StackID, "event", ev.Event, "messageId", m.ID)
	return nil
}

// intakeSigned is what the intake id attribute's signature is computed over: apart from any
// result body, so one cannot stand for the other.
func intakeSigned(id string) string { return "intake:" + id }

// intakeKey is the idempotency key of an event forwarded from the intake queue, or "" when m was
// not forwarded by this deployment's intake: with a key configured, the intake id must carry its
// signature, so a publisher of the event queue cannot claim a key and have a later event dropped.
func (a *Applier) intakeKey(ctx context.Context, m queue.Message) (string, error) {
	id := m.Attributes[IntakeIDAttribute]
	if id == "" {
		return "", nil
	}
	if a.ResultKey.Configured() {
		key, err := a.ResultKey.Key(ctx)
		if err != nil {
			return "", fmt.Errorf("error reading the result signing key: %w", err)
		}
		if !key.Verify(intakeSigned(id), m.Attributes[IntakeSignatureAttribute]) {
			return "", nil
		}
	}
	return "intake:" + id, nil
}
