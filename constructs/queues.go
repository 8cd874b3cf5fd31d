package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"
)

func (s *Stackseam) queues(p resolved) {
	retention := awscdk.Duration_Days(jsii.Number(queueRetentionDays))
	secure := func(q *awssqs.QueueProps) *awssqs.QueueProps {
		q.Encryption = awssqs.QueueEncryption_SQS_MANAGED // SSE-SQS: encrypted without KMS grants for every sender
		q.EnforceSSL = jsii.Bool(true)
		q.RetentionPeriod = retention
		return q
	}
	s.EventDeadLetterQueue = awssqs.NewQueue(s.Construct, jsii.String("EventDeadLetterQueue"), secure(&awssqs.QueueProps{Fifo: jsii.Bool(true)}))
	s.EventQueue = awssqs.NewQueue(s.Construct, jsii.String("EventQueue"), secure(&awssqs.QueueProps{
		Fifo: jsii.Bool(true),
		// Publishers may leave out the deduplication id; the satisfier sets one per task run.
		ContentBasedDeduplication: jsii.Bool(true),
		// High-throughput FIFO: ordering and deduplication are per stack (message group), so
		// stacks do not share one throughput limit.
		DeduplicationScope:  awssqs.DeduplicationScope_MESSAGE_GROUP,
		FifoThroughputLimit: awssqs.FifoThroughputLimit_PER_MESSAGE_GROUP_ID,
		VisibilityTimeout:   seconds(visibilityTimeoutPerFuncTimeout * p.StateManagerTimeout),
		DeadLetterQueue:     &awssqs.DeadLetterQueue{Queue: s.EventDeadLetterQueue, MaxReceiveCount: jsii.Number(float64(p.EventQueueMaxReceiveCount))},
	}))
	// Approvals have a queue of their own: SendMessage on the event queue lets a publisher send
	// any event, so only the queue a message came from can tell an approver's APPROVE from a
	// publisher's (README.md, "Plan, approve, apply").
	s.ApprovalDeadLetterQueue = awssqs.NewQueue(s.Construct, jsii.String("ApprovalDeadLetterQueue"), secure(&awssqs.QueueProps{Fifo: jsii.Bool(true)}))
	s.ApprovalQueue = awssqs.NewQueue(s.Construct, jsii.String("ApprovalQueue"), secure(&awssqs.QueueProps{
		Fifo:                      jsii.Bool(true),
		ContentBasedDeduplication: jsii.Bool(true),
		VisibilityTimeout:         seconds(visibilityTimeoutPerFuncTimeout * p.StateManagerTimeout),
		DeadLetterQueue:           &awssqs.DeadLetterQueue{Queue: s.ApprovalDeadLetterQueue, MaxReceiveCount: jsii.Number(float64(p.EventQueueMaxReceiveCount))},
	}))
	// The intake: CloudSeam's publishers sent to a standard queue with no group id and no
	// deduplication id, and the event queue must keep content-based deduplication for
	// EventBridge schedules, which would collapse their identical bodies. The state manager
	// forwards each intake message into the event queue under a deduplication id of its own.
	s.IntakeDeadLetterQueue = awssqs.NewQueue(s.Construct, jsii.String("IntakeDeadLetterQueue"), secure(&awssqs.QueueProps{}))
	s.IntakeQueue = awssqs.NewQueue(s.Construct, jsii.String("IntakeQueue"), secure(&awssqs.QueueProps{
		VisibilityTimeout: seconds(visibilityTimeoutPerFuncTimeout * p.StateManagerTimeout),
		DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: s.IntakeDeadLetterQueue, MaxReceiveCount: jsii.Number(float64(p.EventQueueMaxReceiveCount))},
	}))
	s.TaskDeadLetterQueue = awssqs.NewQueue(s.Construct, jsii.String("TaskDeadLetterQueue"), secure(&awssqs.QueueProps{}))
	s.TaskQueue = awssqs.NewQueue(s.Construct, jsii.String("TaskQueue"), secure(&awssqs.QueueProps{
		VisibilityTimeout: seconds(visibilityTimeoutPerFuncTimeout * p.SatisfierTimeout),
		DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: s.TaskDeadLetterQueue, MaxReceiveCount: jsii.Number(float64(p.TaskQueueMaxReceiveCount))},
	}))
}

func (s *Stackseam) notificationTopic(p resolved) {
	if p.ExistingNotificationTopic != nil {
		s.NotificationTopic = p.ExistingNotificationTopic
		s.notificationKey = p.ExistingNotificationTopic.MasterKey()
		return
	}
	var props awssns.TopicProps
	if p.NotificationTopicProps != nil {
		props = *p.NotificationTopicProps
		s.notificationKey = props.MasterKey
	}
	if props.MasterKey == nil {
		// The AWS managed key: encrypted at rest with no key to manage or pay for, and its key
		// policy already lets this account's principals publish through SNS.
		props.MasterKey = awskms.Alias_FromAliasName(s.Construct, jsii.String("NotificationTopicKey"), jsii.String("alias/aws/sns"))
	}
	if props.EnforceSSL == nil {
		props.EnforceSSL = jsii.Bool(true)
	}
	s.NotificationTopic = awssns.NewTopic(s.Construct, jsii.String("NotificationTopic"), &props)
}
