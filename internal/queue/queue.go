// Package queue is the SQS plumbing shared by the state manager and the task satisfier: it turns
// a batch from Lambda's SQS event or from local polling into calls of one handler, and sends messages.
package queue

import (
	"context"
	"encoding/json"
	"strconv"
)

// Message is one received queue message, whether it came from Lambda's SQS event or from polling.
type Message struct {
	ID           string // SQS MessageId (stable across redeliveries)
	Body         string
	GroupID      string // MessageGroupId on FIFO queues, "" otherwise
	ReceiveCount int    // ApproximateReceiveCount (1 on first delivery; 0 if SQS did not report it)
	// Attributes are the message's string message attributes (a result's signature).
	Attributes map[string]string
	// Source is the queue the message came from: its ARN in Lambda (the record's
	// eventSourceARN, set by Lambda, not by the sender), the poller's QueueURL in local mode.
	Source string
	// SenderID is the sender SQS recorded (the SenderId system attribute: an IAM user id, or a
	// role id and session name), "" when SQS did not report it.
	SenderID string
}

// BatchHandler processes one batch and returns the IDs of the messages that failed and must be
// delivered again; every other message counts as done.
type BatchHandler func(ctx context.Context, batch []Message) (failed []string)

// SQS system attribute names; Lambda's event and ReceiveMessage use the same keys.
const (
	attrGroupID      = "MessageGroupId"
	attrReceiveCount = "ApproximateReceiveCount"
	attrSenderID     = "SenderId"
)

// messageFromAttributes builds a Message from the fields both sources share.
func messageFromAttributes(id, body string, attrs map[string]string) Message {
	m := Message{ID: id, Body: body, GroupID: attrs[attrGroupID], SenderID: attrs[attrSenderID]}
	if n, err := strconv.Atoi(attrs[attrReceiveCount]); err == nil {
		m.ReceiveCount = n
	}
	return m
}

// stringAttributes keeps the string values of a message's attributes, whichever client's type
// they come in; nil when there are none.
func stringAttributes[V any](attrs map[string]V, value func(V) *string) map[string]string {
	var out map[string]string
	for name, a := range attrs {
		if v := value(a); v != nil {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = *v
		}
	}
	return out
}

// logAttrs names the message in log lines. On the event queue the FIFO group
// is the stack id (docs/design.md §"Moving parts"), and the event name is peeked from the body
// so that every line about a stack carries stackId and event; the body itself
// is never logged (metadata may be sensitive).
func (m Message) logAttrs() []any {
	attrs := []any{"messageId", m.ID}
	if m.GroupID != "" {
		attrs = append(attrs, "stackId", m.GroupID)
	}
	var peek struct {
		Event  string `json:"event"`
		Action string `json:"action"`
	}
	if json.Unmarshal([]byte(m.Body), &peek) == nil {
		if peek.Event == "" {
			peek.Event = peek.Action
		}
		if peek.Event != "" {
			attrs = append(attrs, "event", peek.Event)
		}
	}
	return attrs
}
