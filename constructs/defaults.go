package stackseam

import (
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscodebuild"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsrds"
	"github.com/aws/jsii-runtime-go"
	"github.com/stackseam/stackseam/constructs/deployed"
)

// The construct's defaults, all in this file: what the zero value of StackseamProps stands for
// (withDefaults fills them in before anything is created) and the fixed shapes of what it makes.

// Defaults the zero value of StackseamProps stands for.
const (
	// MachinesPrefix is the key prefix of machine files in the bucket.
	MachinesPrefix = "machines/"
	// LogsPrefix is the key prefix of task logs in the bucket.
	LogsPrefix = "logs/"
	// FencesPrefix is the key prefix of the stacks' fences (internal/fence.Prefix): written by
	// the state manager only, read by the satisfier.
	FencesPrefix = "fences/"
	// PlansPrefix is the key prefix of saved Terraform plans (terraform.PlansPrefix):
	// plans/<machine>/<stackId>/<plan task>.tfplan, written and deleted by the satisfier only.
	PlansPrefix = "plans/"
	// StateLayout is the pattern of Terraform state keys, <machine>/<stackId>/<source key or
	// location> (at least two slashes), the only keys besides logs/ the satisfier may write.
	StateLayout = "*/*/*"
	// OpenTofuModule is the Go module the default Terraform binary is built from.
	OpenTofuModule = "github.com/opentofu/opentofu"
	// OpenTofuVersion is the OpenTofu version bundled when TerraformBinary is empty; it matches
	// TOFU_VERSION in the Makefile.
	OpenTofuVersion = "v1.10.6"

	defaultExistingDatabasePort     = 5432
	defaultEventQueueMaxReceive     = deployed.EventQueueMaxReceiveCount
	defaultTaskQueueMaxReceive      = deployed.TaskQueueMaxReceiveCount
	defaultStateManagerTimeout      = time.Minute
	defaultStateManagerMemory       = 512
	defaultStateManagerBatch        = 10
	defaultStateManagerMaxConc      = 10
	defaultSatisfierTimeout         = 15 * time.Minute
	defaultSatisfierMemory          = 2048
	defaultSatisfierEphemeral       = 4096
	defaultSatisfierMaxConc         = 20
	defaultLogLevel                 = "INFO"
	defaultLogRetention             = awslogs.RetentionDays_THREE_MONTHS
	defaultEventQueueAgeAlarm       = 15 * time.Minute
	defaultTaskQueueAgeAlarm        = time.Hour
	defaultSweepInterval            = time.Minute
	maxSweepInterval                = 24 * time.Hour
	visibilityTimeoutPerFuncTimeout = 6 // AWS's advice for queues that trigger Lambda
	maxLambdaTimeout                = 15 * time.Minute

	defaultDatabaseStorageGiB    = 20
	defaultDatabaseMaxStorageGiB = 100 // storage autoscaling's ceiling
	defaultDatabaseBackupDays    = 7
	queueRetentionDays           = 14 // the SQS maximum: time to notice and redrive
	// planRetentionDays is how long a saved plan nobody applied is kept: an approval that waits
	// longer must be planned again.
	planRetentionDays   = 7
	accessLogExpiryDays = 90 // the created access-log bucket's lifecycle
)

// The query function answers one bounded page per invocation (internal/query): a few database
// round trips, well under a second; the timeout covers a cold start's connect.
const (
	defaultQueryTimeout = 30 * time.Second
	defaultQueryMemory  = 256
)

// defaultPostgresVersion is the engine of the created database.
func defaultPostgresVersion() awsrds.PostgresEngineVersion {
	return awsrds.PostgresEngineVersion_VER_17()
}

// defaultVpcProps is the VPC made when neither ExistingVpc nor VpcProps is given.
func defaultVpcProps() *awsec2.VpcProps {
	return &awsec2.VpcProps{
		MaxAzs:      jsii.Number(2),
		NatGateways: jsii.Number(1), // one NAT gateway: Terraform needs the internet, not zone redundancy
		SubnetConfiguration: &[]*awsec2.SubnetConfiguration{
			{Name: jsii.String("Public"), SubnetType: awsec2.SubnetType_PUBLIC, CidrMask: jsii.Number(24)},
			{Name: jsii.String("Private"), SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS, CidrMask: jsii.Number(22)},
		},
		// Terraform state, sources and logs stay off the NAT gateway (free, and faster).
		GatewayEndpoints: &map[string]*awsec2.GatewayVpcEndpointOptions{
			"S3": {Service: awsec2.GatewayVpcEndpointAwsService_S3()},
		},
		// The default security group is never used; restricting it would cost a custom
		// resource Lambda function.
		RestrictDefaultSecurityGroup: jsii.Bool(false),
	}
}

// resolved is StackseamProps with every default filled in.
type resolved struct {
	StackseamProps
	dirs buildDirs
}

func withDefaults(p StackseamProps) resolved {
	orInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	orInt(&p.ExistingDatabasePort, defaultExistingDatabasePort)
	orInt(&p.EventQueueMaxReceiveCount, defaultEventQueueMaxReceive)
	orInt(&p.TaskQueueMaxReceiveCount, defaultTaskQueueMaxReceive)
	orInt(&p.StateManagerMemorySize, defaultStateManagerMemory)
	orInt(&p.StateManagerBatchSize, defaultStateManagerBatch)
	orInt(&p.StateManagerMaxConcurrency, defaultStateManagerMaxConc)
	orInt(&p.SatisfierMemorySize, defaultSatisfierMemory)
	orInt(&p.SatisfierEphemeralStorageSize, defaultSatisfierEphemeral)
	orInt(&p.SatisfierMaxConcurrency, defaultSatisfierMaxConc)
	if p.StateManagerTimeout == 0 {
		p.StateManagerTimeout = defaultStateManagerTimeout
	}
	if p.SatisfierTimeout == 0 {
		p.SatisfierTimeout = defaultSatisfierTimeout
	}
	if p.LogLevel == "" {
		p.LogLevel = defaultLogLevel
	}
	p.LogLevel = strings.ToUpper(p.LogLevel)
	if p.EventQueueAgeAlarmThreshold == 0 {
		p.EventQueueAgeAlarmThreshold = defaultEventQueueAgeAlarm
	}
	if p.TaskQueueAgeAlarmThreshold == 0 {
		p.TaskQueueAgeAlarmThreshold = defaultTaskQueueAgeAlarm
	}
	if p.SweepInterval == 0 {
		p.SweepInterval = defaultSweepInterval
	}
	if p.LogRetention == "" {
		p.LogRetention = defaultLogRetention
	}
	if p.DatabaseRemovalPolicy == "" {
		p.DatabaseRemovalPolicy = awscdk.RemovalPolicy_SNAPSHOT
	}
	if p.DatabaseDeletionProtection == nil {
		p.DatabaseDeletionProtection = jsii.Bool(p.DatabaseRemovalPolicy != awscdk.RemovalPolicy_DESTROY)
	}
	if p.BucketRemovalPolicy == "" {
		p.BucketRemovalPolicy = awscdk.RemovalPolicy_RETAIN
	}
	if p.ExistingVpc == nil && p.VpcProps == nil {
		p.VpcProps = defaultVpcProps()
	}
	if p.DatabaseInstanceType == nil {
		p.DatabaseInstanceType = awsec2.InstanceType_Of(awsec2.InstanceClass_BURSTABLE4_GRAVITON, awsec2.InstanceSize_MICRO)
	}
	if p.TaskBuildComputeType == "" {
		p.TaskBuildComputeType = awscodebuild.ComputeType_SMALL
	}
	if p.VpcSubnets == nil {
		p.VpcSubnets = &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS}
	}
	return resolved{StackseamProps: p}
}
