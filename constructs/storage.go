package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3deployment"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func (s *Stackseam) bucket(p resolved) {
	if p.ExistingBucket != nil {
		s.Bucket = p.ExistingBucket
		return
	}
	s.LoggingBucket = p.ExistingLoggingBucket
	if s.LoggingBucket == nil {
		logs := awss3.NewBucket(s.Construct, jsii.String("AccessLogsBucket"), &awss3.BucketProps{
			Encryption:        awss3.BucketEncryption_S3_MANAGED, // log delivery cannot write to KMS-encrypted buckets
			BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
			EnforceSSL:        jsii.Bool(true),
			ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
			RemovalPolicy:     p.BucketRemovalPolicy,
			LifecycleRules: &[]*awss3.LifecycleRule{{
				Expiration: awscdk.Duration_Days(jsii.Number(accessLogExpiryDays)),
			}},
		})
		cdknag.NagSuppressions_AddResourceSuppressions(logs, &[]*cdknag.NagPackSuppression{{
			Id:     jsii.String("AwsSolutions-S1"),
			Reason: jsii.String("This is the access-log bucket itself; logging its accesses into another bucket would only move the question one bucket further."),
		}}, jsii.Bool(true))
		s.LoggingBucket = logs
	}
	s.Bucket = awss3.NewBucket(s.Construct, jsii.String("Bucket"), &awss3.BucketProps{
		// S3-managed keys: the functions and Terraform need no KMS grants, and the bucket is
		// private, SSL-only and reachable through IAM only.
		Encryption:             awss3.BucketEncryption_S3_MANAGED,
		Versioned:              jsii.Bool(true), // Terraform state history; machines can be rolled back
		BlockPublicAccess:      awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:             jsii.Bool(true),
		ObjectOwnership:        awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		ServerAccessLogsBucket: s.LoggingBucket,
		ServerAccessLogsPrefix: jsii.String("stackseam-bucket/"),
		RemovalPolicy:          p.BucketRemovalPolicy,
		LifecycleRules: &[]*awss3.LifecycleRule{{
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(7)),
		}, {
			// Fences: every write leaves a noncurrent version, and a removed stack's fence is never
			// written again. A fence untouched for 30 days guards nothing: every task message sent
			// before its last write is past SQS's 14-day retention, and a missing fence lets a run
			// through only because no message can be that old.
			Id:                          jsii.String("ExpireFences"),
			Prefix:                      jsii.String(FencesPrefix),
			Expiration:                  awscdk.Duration_Days(jsii.Number(30)),
			NoncurrentVersionExpiration: awscdk.Duration_Days(jsii.Number(1)),
		}, {
			Id:                        jsii.String("RemoveExpiredFenceMarkers"),
			Prefix:                    jsii.String(FencesPrefix),
			ExpiredObjectDeleteMarker: jsii.Bool(true),
		}},
	})
}

func (s *Stackseam) machines(p resolved) {
	if p.MachinesDir == "" {
		return
	}
	logs := awslogs.NewLogGroup(s.Construct, jsii.String("MachinesDeploymentLogs"), &awslogs.LogGroupProps{Retention: p.LogRetention})
	s.MachinesDeployment = awss3deployment.NewBucketDeployment(s.Construct, jsii.String("MachinesDeployment"), &awss3deployment.BucketDeploymentProps{
		Sources:              &[]awss3deployment.ISource{awss3deployment.Source_Asset(jsii.String(p.MachinesDir), nil)},
		DestinationBucket:    s.Bucket,
		DestinationKeyPrefix: jsii.String(MachinesPrefix),
		Prune:                jsii.Bool(true), // a machine deleted locally is deleted from machines/ too
		Include:              jsii.Strings("*.yml", "*.yaml"),
		Exclude:              jsii.Strings("*"),
		LogGroup:             logs,
	})
	// BucketDeployment's handler is a singleton of the stack, not a child of this construct.
	stack := awscdk.Stack_Of(s.Construct)
	cdknag.NagSuppressions_AddResourceSuppressionsByPath(stack,
		jsii.String(*stack.Node().Path()+"/Custom::CDKBucketDeployment8693BB64968944B69AAFB0CC9EB8756C"),
		&[]*cdknag.NagPackSuppression{
			{Id: jsii.String("AwsSolutions-IAM4"), Reason: jsii.String("CDK's BucketDeployment handler (a deploy-time upload of machines/) uses AWSLambdaBasicExecutionRole for its logs; it is not part of the running system.")},
			{Id: jsii.String("AwsSolutions-IAM5"), Reason: jsii.String("CDK's BucketDeployment handler copies the machines/ asset from the CDK asset bucket and prunes machines/ in the bucket; CDK generates these object-level grants.")},
			{Id: jsii.String("AwsSolutions-L1"), Reason: jsii.String("CDK's BucketDeployment handler runtime is chosen and updated by aws-cdk-lib, not by this construct.")},
		}, jsii.Bool(true))
}
