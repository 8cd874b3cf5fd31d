package test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/applier"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/test/harness"
)

// intakeMachine is a machine that a stack can be launched, destroyed and launched again on with
// no task in between, and one whose APPROVE needs approval rights.
const intakeMachine = `version: 1
events: [LAUNCH, DESTROY, APPROVE]
approvals: [APPROVE]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WAITING}]
  WAITING:
    on:
      APPROVE: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  RUN:
    on:
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
`

// TestIntakeQueueTakesCloudSeamPublishers sends to the intake queue what a CloudSeam publisher
// sends to its standard queue: bodies alone, no group id, no deduplication id. The event queue is
// deployed as the construct deploys it, with content-based deduplication on (EventBridge targets
// need it), and still nothing is collapsed by content: LAUNCH, DESTROY and an identical LAUNCH
// within seconds all apply; a redelivered intake message applies once; a body that is no event is
// rejected with its reason; an APPROVE through the intake is a publisher's, not an approval.
func TestIntakeQueueTakesCloudSeamPublishers(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	s.eventURL, s.eventDLQ = harness.CreateQueueWithAttributes(t, "events-cbd", true, 5,
		map[string]string{"ContentBasedDeduplication": "true"})
	intakeURL, intakeDLQ := harness.CreateQueue(t, "intake", false, 5)
	approvalURL, _ := harness.CreateQueue(t, "approvals", true, 5)
	machines := machinesDir(t, "intake", intakeMachine)
	secret := strings.Repeat("k", 40)
	s.startStateManager(1, "MACHINES_DIR="+machines, "INTAKE_QUEUE_URL="+intakeURL,
		"APPROVAL_QUEUE_URL="+approvalURL, "RESULT_SIGNING_KEY="+secret)

	publish := func(body string) string {
		t.Helper()
		out, err := s.sqs.SendMessage(s.ctx, &sqs.SendMessageInput{QueueUrl: aws.String(intakeURL), MessageBody: aws.String(body)})
		require.NoError(t, err)
		return aws.ToString(out.MessageId)
	}
	launch := `{"stackId":"old-1","event":"LAUNCH","machine":"intake"}`
	publish(launch)
	s.waitState("old-1", "WAITING")

	// 1. An APPROVE through the intake is a publisher's: refused as needing approval rights,
	// even though the approvals queue is configured and the intake's messages are forwarded.
	publish(`{"stackId":"old-1","event":"APPROVE"}`)
	require.Eventually(t, func() bool {
		return s.count(`SELECT count(*) FROM history WHERE stack_id = 'old-1' AND kind = 'rejected' AND event = 'APPROVE'
			AND reason LIKE '%needs approval rights%'`) == 1
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "WAITING", s.stack("old-1").State)

	// 2. DESTROY, then the very same LAUNCH body again within seconds: both apply.
	publish(`{"stackId":"old-1","event":"DESTROY"}`)
	s.waitRemoved("old-1")
	publish(launch)
	s.waitState("old-1", "WAITING")
	require.Equal(t, []string{"INIT->WAITING", "WAITING->GONE", "INIT->WAITING"}, s.transitions("old-1"))

	// 3. A body that is no event is rejected with its reason, and never reaches the event queue.
	publish(`{"stackId":"old-2","event":`)
	publish(`{"event":"LAUNCH","machine":"intake"}`)
	for _, reason := range []string{"%malformed JSON%", "%stackId is required%"} {
		require.Eventually(t, func() bool { return s.count(`SELECT count(*) FROM rejections WHERE reason LIKE $1`, reason) == 1 },
			30*time.Second, 50*time.Millisecond, reason)
	}
	require.Eventually(t, func() bool { return s.queueDepth(intakeURL) == 0 }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 0, s.queueDepth(intakeDLQ), "rejected bodies are acknowledged, not retried")
	require.Nil(t, s.stack("old-2"))

	// 4. A redelivered intake message: the forward is repeated past the event queue's five-minute
	// deduplication (a new deduplication id, as after a long visibility timeout), carrying the
	// same intake id. It applies once.
	key, err := signing.NewKey(secret)
	require.NoError(t, err)
	destroy := `{"stackId":"old-1","event":"DESTROY"}`
	const intakeID = "0b6f7c1e-redelivered"
	forwarded := func(sig string) queue.Outgoing {
		return queue.Outgoing{Body: destroy, GroupID: "old-1", DedupID: newID(),
			Attributes: map[string]string{applier.IntakeIDAttribute: intakeID, applier.IntakeSignatureAttribute: sig}}
	}
	require.NoError(t, queue.Send(s.ctx, s.sqs, s.eventURL, []queue.Outgoing{forwarded(key.Sign("intake:" + intakeID))}))
	s.waitRemoved("old-1")
	publish(launch)
	s.waitState("old-1", "WAITING")
	require.NoError(t, queue.Send(s.ctx, s.sqs, s.eventURL, []queue.Outgoing{forwarded(key.Sign("intake:" + intakeID))}))
	s.waitDrained()
	require.Equal(t, "WAITING", s.stack("old-1").State, "the second forward of one intake message is a duplicate")
	// A publisher of the event queue who names an intake id without its signature claims no key:
	// its event is its own.
	require.NoError(t, queue.Send(s.ctx, s.sqs, s.eventURL, []queue.Outgoing{forwarded("forged")}))
	s.waitRemoved("old-1")
	require.Equal(t, []string{"INIT->WAITING", "WAITING->GONE", "INIT->WAITING", "WAITING->GONE", "INIT->WAITING", "WAITING->GONE"},
		s.transitions("old-1"))
	require.Equal(t, 0, s.queueDepth(s.eventDLQ))
}

// TestIntakeForwardsEachMessageOnce forwards one intake message twice, as Lambda does when it
// delivers a message again whose first forward went out: the event queue holds it once, in its
// stack's group, with the intake id; nothing is collapsed by content.
func TestIntakeForwardsEachMessageOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	_, err := s.store.Migrate(s.ctx) // the rejections table; no state manager runs here
	require.NoError(t, err)
	eventURL, _ := harness.CreateQueueWithAttributes(t, "events-cbd", true, 5, map[string]string{"ContentBasedDeduplication": "true"})
	in := &applier.Intake{Applier: &applier.Applier{Store: s.store}, Client: s.sqs, EventQueueURL: eventURL,
		Key: signing.Fixed(signing.Key{})}
	body := `{"stackId":"fwd-1","event":"LAUNCH","machine":"pair"}`
	signed := map[string]string{signing.Attribute: "a-result-signature", applier.IntakeIDAttribute: "claimed-by-the-publisher"}
	require.NoError(t, in.Handle(s.ctx, queue.Message{ID: "intake-msg-1", Body: body, Attributes: signed}))
	require.NoError(t, in.Handle(s.ctx, queue.Message{ID: "intake-msg-1", Body: body, Attributes: signed})) // redelivered
	require.NoError(t, in.Handle(s.ctx, queue.Message{ID: "intake-msg-2", Body: body}))                     // sent again

	out, err := s.sqs.ReceiveMessage(s.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(eventURL), MaxNumberOfMessages: 10,
		WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameMessageGroupId}})
	require.NoError(t, err)
	require.Len(t, out.Messages, 2, "one message per intake message")
	for i, m := range out.Messages {
		require.Equal(t, body, aws.ToString(m.Body))
		require.Equal(t, "fwd-1", m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)])
		require.Equal(t, []string{"intake-msg-1", "intake-msg-2"}[i], aws.ToString(m.MessageAttributes[applier.IntakeIDAttribute].StringValue),
			"the intake id is the intake message's, never the publisher's")
	}
	require.Equal(t, "a-result-signature", aws.ToString(out.Messages[0].MessageAttributes[signing.Attribute].StringValue),
		"a result's signature travels as it came")
	require.NotContains(t, out.Messages[1].MessageAttributes, signing.Attribute)

	// A body that is no event is recorded as rejected, not forwarded.
	require.NoError(t, in.Handle(s.ctx, queue.Message{ID: "intake-msg-3", Body: `{"stackId":"fwd-1"}`}))
	require.Equal(t, 1, s.count(`SELECT count(*) FROM rejections WHERE message_id = 'intake-msg-3'`))
}
