package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"
)

func (s *Stackseam) vpc(p resolved) awsec2.IVpc {
	if p.ExistingVpc != nil {
		return p.ExistingVpc
	}
	props := p.VpcProps
	vpc := awsec2.NewVpc(s.Construct, jsii.String("Vpc"), props)
	if props.FlowLogs == nil {
		flowLogs := awslogs.NewLogGroup(s.Construct, jsii.String("VpcFlowLogs"), &awslogs.LogGroupProps{Retention: p.LogRetention})
		vpc.AddFlowLog(jsii.String("FlowLog"), &awsec2.FlowLogOptions{
			Destination: awsec2.FlowLogDestination_ToCloudWatchLogs(flowLogs, nil),
			TrafficType: awsec2.FlowLogTrafficType_ALL,
		})
	}
	return vpc
}

func (s *Stackseam) functionSecurityGroup(id, what string) awsec2.SecurityGroup {
	// Outbound is open: the functions call AWS APIs and Terraform downloads providers and
	// talks to whatever the tasks manage. Nothing may connect in.
	return awsec2.NewSecurityGroup(s.Construct, jsii.String(id), &awsec2.SecurityGroupProps{
		Vpc:              s.Vpc,
		Description:      jsii.String(what + " (Lambda): outbound only"),
		AllowAllOutbound: jsii.Bool(true),
	})
}
