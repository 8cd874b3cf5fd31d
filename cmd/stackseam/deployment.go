package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/stackseam/stackseam/constructs/deployed"
)

// deployment is what a deployed stackseam's CloudFormation stack outputs name.
type deployment struct {
	stackName string
	// queueURL is the event queue, queryFunction the query function (its ARN when the stack
	// outputs one, else its name), bucket the bucket. Empty when the stack does not output it.
	queueURL, queryFunction, bucket string
	// approvalURL is the approvals queue (approve, reject).
	approvalURL string
}

// stackNameFlag is --stack-name: the CloudFormation stack of a deployed stackseam, whose outputs
// name its queue, query function and bucket.
type stackNameFlag struct{ name string }

func (f *stackNameFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "stack-name", "", "the CloudFormation stack `NAME` of a deployed stackseam: its outputs name the queue, query function and bucket (default $"+deployed.EnvStackName+")")
}

// lookupDeployment reads the outputs of the stack name through DescribeStacks (at endpoint, when
// not nil).
func lookupDeployment(ctx context.Context, cfg aws.Config, endpoint *string, name string) (*deployment, error) {
	client := cloudformation.NewFromConfig(cfg, func(o *cloudformation.Options) {
		if endpoint != nil {
			o.BaseEndpoint = endpoint
		}
	})
	out, err := client.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	if err != nil {
		return nil, fmt.Errorf("error reading the outputs of stack %s: %w", name, err)
	}
	if len(out.Stacks) != 1 {
		return nil, fmt.Errorf("error reading the outputs of stack %s: DescribeStacks returned %d stacks", name, len(out.Stacks))
	}
	s := out.Stacks[0]
	switch s.StackStatus {
	case cfntypes.StackStatusCreateInProgress, cfntypes.StackStatusCreateFailed, cfntypes.StackStatusRollbackComplete,
		cfntypes.StackStatusDeleteInProgress, cfntypes.StackStatusDeleteComplete:
		return nil, fmt.Errorf("stack %s is %s: it has no usable outputs", name, s.StackStatus)
	}
	d := &deployment{stackName: name}
	var fnName, fnArn string
	for _, o := range s.Outputs {
		v := aws.ToString(o.OutputValue)
		switch aws.ToString(o.OutputKey) {
		case deployed.OutputEventQueueURL:
			d.queueURL = v
		case deployed.OutputApprovalQueueURL:
			d.approvalURL = v
		case deployed.OutputQueryFunctionName:
			fnName = v
		case deployed.OutputQueryFunctionArn:
			fnArn = v
		case deployed.OutputBucketName:
			d.bucket = v
		}
	}
	d.queryFunction = first(fnArn, fnName)
	return d, nil
}

// errNoOutput is wrapped when the stack lacks an output a command needs.
var errNoOutput = errors.New("missing stack output")

func (d *deployment) need(value, output string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("%w: stack %s has no output %s (is it a stackseam stack, deployed with this version?)", errNoOutput, d.stackName, output)
	}
	return value, nil
}
