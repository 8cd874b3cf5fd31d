package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRedrivePolicy(t *testing.T) {
	const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/events.fifo"
	p, err := parseRedrivePolicy(url, `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:events-dlq.fifo","maxReceiveCount":5}`)
	require.NoError(t, err)
	require.Equal(t, redrivePolicy{maxReceiveCount: 5, dlqURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/events-dlq.fifo"}, p)

	// SetQueueAttributes callers often give the count as a string.
	p, err = parseRedrivePolicy("http://127.0.0.1:4566/000000000000/q", `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:q-dlq","maxReceiveCount":"3"}`)
	require.NoError(t, err)
	require.Equal(t, redrivePolicy{maxReceiveCount: 3, dlqURL: "http://127.0.0.1:4566/000000000000/q-dlq"}, p)

	p, err = parseRedrivePolicy(url, "")
	require.NoError(t, err)
	require.Zero(t, p, "no policy, nothing to move")

	for _, bad := range []string{`{`, `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:d","maxReceiveCount":0}`,
		`{"deadLetterTargetArn":"not-an-arn","maxReceiveCount":5}`, `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:d"}`} {
		_, err := parseRedrivePolicy(url, bad)
		require.Error(t, err, bad)
	}
}

// An outage the Gate confirmed is not the message's fault: it is never moved, whatever its receive
// count (the nil Client proves no call to SQS is even tried).
func TestDeadLetterNeverMovesAPausedMessage(t *testing.T) {
	t.Parallel()
	d := &DeadLetter{QueueURL: "http://127.0.0.1:1/000000000000/events.fifo"}
	outage := fmt.Errorf("%w: %w", ErrPaused, errors.New("connection refused"))
	err := d.Wrap(func(context.Context, Message) error { return outage })(t.Context(), Message{ID: "m", ReceiveCount: 99})
	require.ErrorIs(t, err, ErrPaused)
}
