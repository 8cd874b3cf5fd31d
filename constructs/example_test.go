package stackseam_test

import (
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"

	stackseam "github.com/stackseam/stackseam/constructs"
)

// An application that already has a VPC and a PostgreSQL database embeds stackseam: the
// construct creates the queues, the bucket and both functions, and lets the state manager into
// the existing database. (This is the README's embedding example; it is compiled by `go test`.)
func ExampleNewStackseam_existingResources() {
	app := awscdk.NewApp(nil)
	stack := awscdk.NewStack(app, jsii.String("Platform"), &awscdk.StackProps{
		// Vpc_FromLookup needs a concrete account and region.
		Env: &awscdk.Environment{
			Account: jsii.String(os.Getenv("CDK_DEFAULT_ACCOUNT")),
			Region:  jsii.String(os.Getenv("CDK_DEFAULT_REGION")),
		},
	})
	vpc := awsec2.Vpc_FromLookup(stack, jsii.String("Vpc"), &awsec2.VpcLookupOptions{
		VpcId: jsii.String("vpc-0123456789abcdef0"),
	})
	dbSecret := awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("DatabaseSecret"),
		jsii.String("arn:aws:secretsmanager:eu-west-1:123456789012:secret:platform/postgres-AbCdEf"))
	dbGroup := awsec2.SecurityGroup_FromSecurityGroupId(stack, jsii.String("DatabaseGroup"),
		jsii.String("sg-0123456789abcdef0"), nil)

	seam := stackseam.NewStackseam(stack, "Stackseam", &stackseam.StackseamProps{
		ExistingVpc:                   vpc,
		ExistingDatabaseSecret:        dbSecret,
		ExistingDatabaseSecurityGroup: dbGroup,
		MachinesDir:                   "machines",                 // uploaded to machines/ on deploy
		AllowedFunctions:              []string{"notify-release"}, // the Lambda executor may call this one only
	})

	// CI publishes events; Terraform tasks manage the records of one hosted zone.
	ci := awsiam.Role_FromRoleName(stack, jsii.String("CI"), jsii.String("github-actions"), nil)
	seam.GrantPublishEvents(ci)
	seam.AddTerraformPermissions(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"),
		Resources: jsii.Strings("arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"),
	}))
	awscdk.NewCfnOutput(stack, jsii.String("EventQueueUrl"), &awscdk.CfnOutputProps{Value: seam.EventQueue.QueueUrl()})

	app.Synth(nil)
}
