// Package deployed holds the construct's default settings that code outside the construct needs
// too: the end-to-end tests run the functions with what the construct deploys, and read it here
// rather than keeping copies that could drift. It imports nothing, so tests need not link the CDK.
package deployed

const (
	// EventQueueMaxReceiveCount is the event queue's default maxReceiveCount: how many times an
	// event is received before SQS moves it to the event dead-letter queue.
	EventQueueMaxReceiveCount = 5
	// TaskQueueMaxReceiveCount is the task queue's default maxReceiveCount.
	TaskQueueMaxReceiveCount = 3
)
