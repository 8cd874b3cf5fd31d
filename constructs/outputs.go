package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/stackseam/stackseam/constructs/deployed"
)

// AddOperatorOutputs adds to the stack that holds s the outputs the CLI's --stack-name reads
// (constructs/deployed: the event queue, the bucket, the query function), under exactly those
// output keys. Call it once per stack: an app that embeds the construct gets `stackseam …
// --stack-name NAME` working with this one line.
func (s *Stackseam) AddOperatorOutputs() {
	stack := awscdk.Stack_Of(s.Construct)
	output := func(id, description string, value *string) {
		awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{Value: value, Description: jsii.String(description)})
	}
	output(deployed.OutputEventQueueURL, "Publish events here (FIFO: message group id = stack id)", s.EventQueue.QueueUrl())
	output(deployed.OutputIntakeQueueURL, "CloudSeam publishers send here unchanged (standard queue: no group id, no deduplication id; no order kept)", s.IntakeQueue.QueueUrl())
	output(deployed.OutputApprovalQueueURL, "Approvals go here: stackseam approve|reject --stack-name send to it (GrantApprove)", s.ApprovalQueue.QueueUrl())
	output(deployed.OutputBucketName, "machines/, Terraform sources and state, logs/", s.Bucket.BucketName())
	output(deployed.OutputQueryFunctionName, "The query function: stackseam stacks|show|history --stack-name invoke it (GrantRead)", s.QueryFunction.FunctionName())
	output(deployed.OutputQueryFunctionArn, "The query function's ARN", s.QueryFunction.FunctionArn())
}
