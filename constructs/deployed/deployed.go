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

// The stack outputs the operator CLI reads (`stackseam --stack-name NAME`, DescribeStacks) to
// find a deployment's parts without copying URLs around; the CDK app in infra/ defines them.
const (
	// OutputEventQueueURL is the event queue's URL (send, retry).
	OutputEventQueueURL = "EventQueueUrl"
	// OutputIntakeQueueURL is the intake queue's URL: a standard queue for publishers that send
	// no group id nor deduplication id (CloudSeam's); the state manager forwards it to the event
	// queue.
	OutputIntakeQueueURL = "IntakeQueueUrl"
	// OutputApprovalQueueURL is the approvals queue's URL (approve, reject).
	OutputApprovalQueueURL = "ApprovalQueueUrl"
	// OutputQueryFunctionName is the query function's name (stacks, show, history, the console).
	OutputQueryFunctionName = "QueryFunctionName"
	// OutputQueryFunctionArn is the query function's ARN.
	OutputQueryFunctionArn = "QueryFunctionArn"
	// OutputBucketName is the bucket (machines/, Terraform sources and state, logs/).
	OutputBucketName = "BucketName"
)

// EnvStackName is the variable the CLI reads when --stack-name is not given.
const EnvStackName = "STACKSEAM_STACK_NAME"
