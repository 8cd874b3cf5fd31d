package stackseam

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsrds"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3deployment"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// Stackseam is the whole stackseam system: queues, bucket, database secret, and the state
// manager and satisfier functions. Its fields are what it created or was given, for wiring
// into the rest of an application.
type Stackseam struct {
	constructs.Construct

	// Vpc holds the functions (and the created database).
	Vpc awsec2.IVpc
	// Database is the created PostgreSQL instance; nil with ExistingDatabaseSecret.
	Database awsrds.DatabaseInstance
	// DatabaseSecret holds the database connection in the format RDS writes.
	DatabaseSecret awssecretsmanager.ISecret
	// ResultSigningKey is the key the satisfier signs task results with and the state manager
	// checks them against; only the two functions may read it, so a publisher cannot forge a
	// result.
	ResultSigningKey awssecretsmanager.Secret
	// DatabaseSecurityGroup guards the database; it lets in the state manager only.
	DatabaseSecurityGroup awsec2.ISecurityGroup
	// Bucket holds machines/, Terraform sources and state, and logs/.
	Bucket awss3.IBucket
	// LoggingBucket receives Bucket's server access logs; nil with ExistingBucket.
	LoggingBucket awss3.IBucket
	// EventQueue (FIFO, one message group per stack) feeds the state manager.
	EventQueue awssqs.Queue
	// EventDeadLetterQueue receives events that failed EventQueueMaxReceiveCount times.
	EventDeadLetterQueue awssqs.Queue
	// TaskQueue (standard) feeds the satisfier.
	TaskQueue awssqs.Queue
	// TaskDeadLetterQueue receives task messages that failed TaskQueueMaxReceiveCount times.
	TaskDeadLetterQueue awssqs.Queue
	// StateManager applies events to stacks.
	StateManager awslambda.Function
	// StateManagerRole is the state manager's execution role.
	StateManagerRole awsiam.Role
	// StateManagerSecurityGroup is the state manager's own security group.
	StateManagerSecurityGroup awsec2.SecurityGroup
	// StateManagerLogGroup receives the state manager's logs.
	StateManagerLogGroup awslogs.LogGroup
	// Satisfier runs tasks (Terraform, Lambda invocations) and reports their results.
	Satisfier awslambda.Function
	// SatisfierRole is the satisfier's execution role; Terraform tasks run with it, so give it
	// what they need with AddTerraformPermissions.
	SatisfierRole awsiam.Role
	// SatisfierSecurityGroup is the satisfier's own security group.
	SatisfierSecurityGroup awsec2.SecurityGroup
	// SatisfierLogGroup receives the satisfier's logs.
	SatisfierLogGroup awslogs.LogGroup
	// NotificationTopic receives the state manager's notifications: transitions, task failures
	// and stack removals, with the message attributes stackId, machine, state and kind.
	NotificationTopic awssns.ITopic
	// SweepRule invokes the state manager every SweepInterval to run its sweep.
	SweepRule awsevents.Rule
	// ScheduleRules send the Schedules' events to the event queue, in the order of Schedules.
	ScheduleRules []awsevents.Rule
	// Alarms fire on messages in either dead-letter queue, errors of either function, failed
	// tasks, rejected events, and old messages in either queue.
	Alarms []awscloudwatch.Alarm
	// Dashboard graphs events by outcome, transitions, task results and durations by executor,
	// outbox lag, dead-letter queue depth and the age of the oldest messages.
	Dashboard awscloudwatch.Dashboard
	// MachinesDeployment uploads MachinesDir to machines/; nil without MachinesDir.
	MachinesDeployment awss3deployment.BucketDeployment

	invoke          *awsiam.PolicyStatement // the satisfier's lambda:InvokeFunction statement, made on first use
	notificationKey awskms.IKey             // a customer managed key of the notification topic, given in props
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
	if p.VpcSubnets == nil {
		p.VpcSubnets = &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS}
	}
	return resolved{StackseamProps: p}
}

// NewStackseam creates the stackseam system in scope. props may be nil (all defaults). Invalid
// props panic with a *PropsError listing every problem, before anything is created, as CDK
// constructors do; call props.Validate first to get the error instead.
func NewStackseam(scope constructs.Construct, id string, props *StackseamProps) *Stackseam {
	if props == nil {
		props = &StackseamProps{}
	}
	if err := props.Validate(); err != nil {
		panic(err)
	}
	p := withDefaults(*props)
	dirs, err := resolveBuildDirs(p.ModuleDir, p.CacheDir)
	if err != nil {
		panic(err)
	}
	p.dirs = dirs

	this := constructs.NewConstruct(scope, jsii.String(id))
	// Server access logs are delivered under a bucket policy, as AWS now advises, rather than
	// the legacy log-delivery ACL CDK falls back to when the app has not set this flag. Context
	// must be set before the first child is added.
	this.Node().SetContext(jsii.String("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"), true)
	s := &Stackseam{Construct: this}

	s.Vpc = s.vpc(p)
	s.StateManagerSecurityGroup = s.functionSecurityGroup("StateManagerSecurityGroup", "stackseam state manager")
	s.SatisfierSecurityGroup = s.functionSecurityGroup("SatisfierSecurityGroup", "stackseam satisfier")
	s.bucket(p)
	s.queues(p)
	s.notificationTopic(p)
	s.database(p)
	s.StateManagerLogGroup = s.logGroup("StateManagerLogs", p)
	s.SatisfierLogGroup = s.logGroup("SatisfierLogs", p)
	s.StateManagerRole = s.role("StateManagerRole", "stackseam state manager: consumes the event queue, sends tasks, reads machines/ and the database secret")
	s.SatisfierRole = s.role("SatisfierRole", "stackseam satisfier: consumes the task queue, runs tasks, sends results, keeps Terraform state and logs/")
	s.stateManagerPolicy()
	s.satisfierPolicy()
	s.resultSigningKey()
	s.functions(p)
	s.machines(p)
	s.sweep(p)
	s.schedules(p)
	s.alarms(p)
	s.dashboard(p)
	if len(p.AllowedFunctions) > 0 {
		s.AllowLambdaTasks(p.AllowedFunctions...)
	}
	return s
}

func (s *Stackseam) vpc(p resolved) awsec2.IVpc {
	if p.ExistingVpc != nil {
		return p.ExistingVpc
	}
	props := p.VpcProps
	if props == nil {
		props = &awsec2.VpcProps{
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
				Expiration: awscdk.Duration_Days(jsii.Number(90)),
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

func (s *Stackseam) queues(p resolved) {
	fourteenDays := awscdk.Duration_Days(jsii.Number(14)) // the SQS maximum: time to notice and redrive
	secure := func(q *awssqs.QueueProps) *awssqs.QueueProps {
		q.Encryption = awssqs.QueueEncryption_SQS_MANAGED // SSE-SQS: encrypted without KMS grants for every sender
		q.EnforceSSL = jsii.Bool(true)
		q.RetentionPeriod = fourteenDays
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

func (s *Stackseam) database(p resolved) {
	if p.ExistingDatabaseSecret != nil {
		s.DatabaseSecret = p.ExistingDatabaseSecret
		s.DatabaseSecurityGroup = p.ExistingDatabaseSecurityGroup
		s.DatabaseSecurityGroup.AddIngressRule(s.StateManagerSecurityGroup, awsec2.Port_Tcp(jsii.Number(float64(p.ExistingDatabasePort))),
			jsii.String("PostgreSQL from the stackseam state manager"), jsii.Bool(false))
		return
	}
	sg := awsec2.NewSecurityGroup(s.Construct, jsii.String("DatabaseSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.Vpc,
		Description:      jsii.String("stackseam database: PostgreSQL from the state manager only"),
		AllowAllOutbound: jsii.Bool(false),
	})
	s.DatabaseSecurityGroup = sg
	engine := awsrds.DatabaseInstanceEngine_Postgres(&awsrds.PostgresInstanceEngineProps{Version: awsrds.PostgresEngineVersion_VER_17()})
	// The secret is made here rather than by the instance so that it carries dbname: the
	// functions read {"username","password","host","port","dbname"}, and RDS adds host and port.
	secret := awsrds.NewDatabaseSecret(s.Construct, jsii.String("DatabaseSecret"), &awsrds.DatabaseSecretProps{
		Username: jsii.String("stackseam"),
		Dbname:   jsii.String("stackseam"),
	})
	cdknag.NagSuppressions_AddResourceSuppressions(secret, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-SMG4"),
		Reason: jsii.String("Rotation is not switched on by default: its Lambda function would need a way into the database, which only the state manager may reach. " +
			"The state manager re-reads the secret when authentication fails, so Database.AddRotationSingleUser can be added safely."),
	}}, jsii.Bool(true))
	if p.DatabaseRemovalPolicy != awscdk.RemovalPolicy_DESTROY {
		// A snapshot or a retained instance is useless without its password.
		secret.ApplyRemovalPolicy(awscdk.RemovalPolicy_RETAIN)
	}
	instanceType := p.DatabaseInstanceType
	if instanceType == nil {
		instanceType = awsec2.InstanceType_Of(awsec2.InstanceClass_BURSTABLE4_GRAVITON, awsec2.InstanceSize_MICRO)
	}
	db := awsrds.NewDatabaseInstance(s.Construct, jsii.String("Database"), &awsrds.DatabaseInstanceProps{
		Engine:              engine,
		InstanceType:        instanceType,
		Vpc:                 s.Vpc,
		VpcSubnets:          p.VpcSubnets,
		SecurityGroups:      &[]awsec2.ISecurityGroup{sg},
		Credentials:         awsrds.Credentials_FromSecret(secret, nil),
		DatabaseName:        jsii.String("stackseam"),
		StorageEncrypted:    jsii.Bool(true),
		StorageType:         awsrds.StorageType_GP3,
		AllocatedStorage:    jsii.Number(20),
		MaxAllocatedStorage: jsii.Number(100),
		MultiAz:             jsii.Bool(p.DatabaseMultiAz),
		PubliclyAccessible:  jsii.Bool(false),
		BackupRetention:     awscdk.Duration_Days(jsii.Number(7)),
		DeletionProtection:  p.DatabaseDeletionProtection,
		RemovalPolicy:       p.DatabaseRemovalPolicy,
		// Connections without TLS are refused by the server, whatever a client asks for.
		ParameterGroup: awsrds.NewParameterGroup(s.Construct, jsii.String("DatabaseParameters"), &awsrds.ParameterGroupProps{
			Engine:      engine,
			Description: jsii.String("stackseam: TLS required"),
			Parameters:  &map[string]*string{"rds.force_ssl": jsii.String("1")},
		}),
	})
	db.Connections().AllowDefaultPortFrom(s.StateManagerSecurityGroup, jsii.String("PostgreSQL from the stackseam state manager"))
	suppressions := []*cdknag.NagPackSuppression{
		{Id: jsii.String("AwsSolutions-RDS6"), Reason: jsii.String("The functions authenticate with the password in the Secrets Manager secret (the format CloudSeam uses); IAM database authentication is not used.")},
		{Id: jsii.String("AwsSolutions-RDS11"), Reason: jsii.String("The standard PostgreSQL port is kept: the database sits in private subnets and its security group lets in the state manager only, so another port would hide nothing.")},
	}
	if !p.DatabaseMultiAz {
		suppressions = append(suppressions, &cdknag.NagPackSuppression{Id: jsii.String("AwsSolutions-RDS3"),
			Reason: jsii.String("Single-AZ by default for cost: stackseam tolerates a database outage (events wait in the queue and are retried). Set DatabaseMultiAz for a standby.")})
	}
	if !*p.DatabaseDeletionProtection {
		suppressions = append(suppressions, &cdknag.NagPackSuppression{Id: jsii.String("AwsSolutions-RDS10"),
			Reason: jsii.String("Deletion protection was switched off on purpose (DatabaseDeletionProtection=false or DatabaseRemovalPolicy=DESTROY).")})
	}
	cdknag.NagSuppressions_AddResourceSuppressions(db, &suppressions, jsii.Bool(true))
	s.Database = db
	s.DatabaseSecret = db.Secret() // the attached secret: host and port are written before the functions start
}

func (s *Stackseam) logGroup(id string, p resolved) awslogs.LogGroup {
	return awslogs.NewLogGroup(s.Construct, jsii.String(id), &awslogs.LogGroupProps{Retention: p.LogRetention})
}

func (s *Stackseam) role(id, description string) awsiam.Role {
	// One role per function and no managed policies: every statement is written out below.
	return awsiam.NewRole(s.Construct, jsii.String(id), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(description),
	})
}

// statement is an IAM statement with a Sid that says why it exists (CloudSeam's style).
func statement(sid string, actions []string, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String(sid),
		Effect:    awsiam.Effect_ALLOW,
		Actions:   jsii.Strings(actions...),
		Resources: &resources,
	})
}

// neverWriteActions are every way of writing or deleting an object (a version, an ACL included).
var neverWriteActions = []string{"s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutObjectTagging",
	"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteObjectTagging", "s3:RestoreObject"}

// bucketChangeActions change the bucket itself: its policy, encryption, versioning, lifecycle,
// replication, notifications, public access, ownership, or its existence.
var bucketChangeActions = []string{"s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy", "s3:PutBucketAcl",
	"s3:PutBucketVersioning", "s3:PutEncryptionConfiguration", "s3:PutLifecycleConfiguration",
	"s3:PutReplicationConfiguration", "s3:PutBucketNotification", "s3:PutBucketPublicAccessBlock",
	"s3:PutBucketOwnershipControls", "s3:PutBucketObjectLockConfiguration", "s3:PutBucketCORS", "s3:PutBucketWebsite"}

// consumeActions are what a Lambda SQS event source mapping needs from the function's role.
var consumeActions = []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}

// vpcActions are what Lambda needs to attach a function to a VPC, the actions of the
// AWSLambdaVPCAccessExecutionRole managed policy. EC2 does not scope them to resources.
var vpcActions = []string{"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
	"ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}

func (s *Stackseam) commonStatements(role awsiam.Role, consume awssqs.Queue, logs awslogs.LogGroup) {
	role.AddToPrincipalPolicy(statement("ConsumeQueue", consumeActions, consume.QueueArn()))
	role.AddToPrincipalPolicy(statement("WriteLogs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logs.LogGroupArn()))
	role.AddToPrincipalPolicy(statement("ConnectToVpc", vpcActions, jsii.String("*")))
}

func (s *Stackseam) stateManagerPolicy() {
	r := s.StateManagerRole
	s.commonStatements(r, s.EventQueue, s.StateManagerLogGroup)
	r.AddToPrincipalPolicy(statement("SendTasks", []string{"sqs:SendMessage"}, s.TaskQueue.QueueArn()))
	// The sweep sends time-to-live events to the event queue through the outbox.
	r.AddToPrincipalPolicy(statement("SendEvents", []string{"sqs:SendMessage"}, s.EventQueue.QueueArn()))
	// An event that fails on its last receive is moved to the dead-letter queue by the state
	// manager (queue.DeadLetter), which reads the event queue's RedrivePolicy (ConsumeQueue).
	r.AddToPrincipalPolicy(statement("DeadLetterEvents", []string{"sqs:SendMessage"}, s.EventDeadLetterQueue.QueueArn()))
	// The sweep peeks the task dead-letter queue to fail the runs of the messages in it; it
	// never deletes them (kept for inspection), so receiving is all it may do.
	r.AddToPrincipalPolicy(statement("PeekTaskDeadLetters", []string{"sqs:ReceiveMessage"}, s.TaskDeadLetterQueue.QueueArn()))
	// PublishBatch is authorized by sns:Publish.
	r.AddToPrincipalPolicy(statement("PublishNotifications", []string{"sns:Publish"}, s.NotificationTopic.TopicArn()))
	if s.notificationKey != nil {
		// Publishing to a topic encrypted with a customer managed key needs the key too.
		s.notificationKey.Grant(r, jsii.String("kms:GenerateDataKey"), jsii.String("kms:Decrypt"))
	}
	list := statement("ListMachines", []string{"s3:ListBucket"}, s.Bucket.BucketArn())
	list.AddCondition(jsii.String("StringLike"), map[string]any{"s3:prefix": MachinesPrefix + "*"})
	r.AddToPrincipalPolicy(list)
	r.AddToPrincipalPolicy(statement("ReadMachines", []string{"s3:GetObject"}, s.Bucket.ArnForObjects(jsii.String(MachinesPrefix+"*"))))
	// Each stack's fence (the runs the satisfier may start), written with a compare-and-swap.
	r.AddToPrincipalPolicy(statement("WriteFences", []string{"s3:GetObject", "s3:PutObject"}, s.Bucket.ArnForObjects(jsii.String(FencesPrefix+"*"))))
	s.DatabaseSecret.GrantRead(r, nil) // GetSecretValue and DescribeSecret; kms:Decrypt too when the secret has its own key
	if key := s.Bucket.EncryptionKey(); key != nil {
		key.GrantDecrypt(r)
	}
	cdknag.NagSuppressions_AddResourceSuppressions(r, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String("Lambda's VPC networking actions (ENI management, the AWSLambdaVPCAccessExecutionRole actions) do not support resource-level scoping; machine files are every object under machines/ and nothing else, fences every object under fences/ (one per stack)."),
		AppliesTo: &[]interface{}{"Resource::*", cdknag.RegexAppliesTo{Regex: jsii.String("/^Resource::.*\\/(machines|fences)\\/\\*$/")}},
	}}, jsii.Bool(true))
}

// pauseOwnMapping lets the state manager disable and enable its own event-source mapping, which
// it does while the database is unavailable so that an outage spends no receive counts (docs/design.md
// §"Guarantees"). The statements sit in a policy of their own: the role's default policy is a
// dependency of the function, and the mapping depends on the function, so naming the mapping there
// would be a cycle.
func (s *Stackseam) pauseOwnMapping(mapping awslambda.EventSourceMapping) {
	policy := awsiam.NewPolicy(s.Construct, jsii.String("StateManagerPausePolicy"), &awsiam.PolicyProps{
		Roles: &[]awsiam.IRole{s.StateManagerRole},
		Statements: &[]awsiam.PolicyStatement{
			// The function finds its mapping by function name and queue ARN at run time.
			statement("FindOwnEventSourceMapping", []string{"lambda:ListEventSourceMappings"}, jsii.String("*")),
			statement("PauseOwnEventSourceMapping", []string{"lambda:UpdateEventSourceMapping"}, mapping.EventSourceMappingArn()),
		},
	})
	cdknag.NagSuppressions_AddResourceSuppressions(policy, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String("lambda:ListEventSourceMappings supports no resource-level scoping; it only reads mapping settings. The update is scoped to the state manager's own mapping."),
		AppliesTo: &[]interface{}{"Resource::*"},
	}}, jsii.Bool(false))
}

func (s *Stackseam) satisfierPolicy() {
	r := s.SatisfierRole
	s.commonStatements(r, s.TaskQueue, s.SatisfierLogGroup)
	r.AddToPrincipalPolicy(statement("SendResults", []string{"sqs:SendMessage"}, s.EventQueue.QueueArn()))
	// Terraform sources may be anywhere in the bucket (keys chosen by the machine files), and
	// tasks read their stacks' fences (fences/<stackId>), so reading spans the bucket. Writing is
	// limited to the state layout <machine>/<stackId>/<source key> (CloudSeam's layout; at least
	// two slashes, with its <key>.tflock lock file) and logs/; deletes to lock files (state keeps
	// its history in versions). One role serves every machine: see constructs/README.md, "What
	// Terraform tasks may touch".
	r.AddToPrincipalPolicy(statement("ListSourcesAndState", []string{"s3:ListBucket"}, s.Bucket.BucketArn()))
	r.AddToPrincipalPolicy(statement("ReadSourcesStateAndFences", []string{"s3:GetObject"}, s.Bucket.ArnForObjects(jsii.String("*"))))
	r.AddToPrincipalPolicy(statement("WriteStateAndLogs", []string{"s3:PutObject"},
		s.Bucket.ArnForObjects(jsii.String(StateLayout)), s.Bucket.ArnForObjects(jsii.String(LogsPrefix+"*"))))
	r.AddToPrincipalPolicy(statement("ReleaseStateLocks", []string{"s3:DeleteObject"}, s.Bucket.ArnForObjects(jsii.String("*.tflock"))))
	// Terraform tasks run with this role: explicit denies keep them (and whatever
	// AddTerraformPermissions grants) from rewriting the machines the state manager trusts or
	// the fences it writes, by any object write (versions and ACLs included), and from changing
	// the bucket itself.
	r.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("NeverWriteMachinesOrFences"),
		Effect:    awsiam.Effect_DENY,
		Actions:   jsii.Strings(neverWriteActions...),
		Resources: &[]*string{s.Bucket.ArnForObjects(jsii.String(MachinesPrefix + "*")), s.Bucket.ArnForObjects(jsii.String(FencesPrefix + "*"))},
	}))
	r.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("NeverChangeTheBucket"),
		Effect:    awsiam.Effect_DENY,
		Actions:   jsii.Strings(bucketChangeActions...),
		Resources: &[]*string{s.Bucket.BucketArn()},
	}))
	if key := s.Bucket.EncryptionKey(); key != nil {
		key.GrantEncryptDecrypt(r)
	}
	cdknag.NagSuppressions_AddResourceSuppressions(r, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-IAM5"),
		Reason: jsii.String("Lambda's VPC networking actions (ENI management) do not support resource-level scoping. " +
			"Terraform sources (chosen by the machine files) live under keys only known at run time, so reading spans the bucket; writes are limited to the state layout <machine>/<stackId>/<key> and logs/, deletes to *.tflock lock files, and machines/ and fences/ are explicitly denied."),
		AppliesTo: &[]interface{}{"Resource::*", cdknag.RegexAppliesTo{Regex: jsii.String("/^Resource::.*\\/(\\*|\\*\\/\\*\\/\\*|\\*\\.tflock|logs\\/\\*|machines\\/\\*|fences\\/\\*)$/")}},
	}}, jsii.Bool(true))
}

func (s *Stackseam) functions(p resolved) {
	common := func(id, description string, role awsiam.Role, sg awsec2.SecurityGroup, logs awslogs.LogGroup,
		code awslambda.Code, timeout time.Duration, memory int, env map[string]*string) awslambda.Function {
		return awslambda.NewFunction(s.Construct, jsii.String(id), &awslambda.FunctionProps{
			Description:    jsii.String(description),
			Runtime:        awslambda.Runtime_PROVIDED_AL2023(),
			Architecture:   awslambda.Architecture_ARM_64(),
			Handler:        jsii.String(bootstrapName),
			Code:           code,
			Role:           role,
			Timeout:        seconds(timeout),
			MemorySize:     jsii.Number(float64(memory)),
			Vpc:            s.Vpc,
			VpcSubnets:     p.VpcSubnets,
			SecurityGroups: &[]awsec2.ISecurityGroup{sg},
			LogGroup:       logs,
			LoggingFormat:  awslambda.LoggingFormat_JSON,
			Environment:    &env,
			// event → task → result → event is the design, not a runaway loop: a stack's
			// lifecycle may pass through the queues far more often than Lambda's loop detection
			// (16 hops) allows, and every hop is bounded by the machine's states.
			RecursiveLoop: awslambda.RecursiveLoop_ALLOW,
		})
	}
	env := func(kv ...string) map[string]*string {
		m := map[string]*string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = jsii.String(kv[i+1])
		}
		return m
	}

	smEnv := env("MACHINES_PREFIX", MachinesPrefix, "DATABASE_SSLMODE", "verify-full", "LOG_LEVEL", p.LogLevel)
	smEnv["EVENT_QUEUE_URL"] = s.EventQueue.QueueUrl()
	smEnv["EVENT_QUEUE_ARN"] = s.EventQueue.QueueArn()
	smEnv["TASK_QUEUE_URL"] = s.TaskQueue.QueueUrl()
	// What a task run's deadline is derived from (README.md, "Every dispatched task ends"): the
	// satisfier's timeout bounds a run without timeoutSeconds, and the task queue as made above.
	smEnv["TASK_TIMEOUT"] = jsii.String(p.SatisfierTimeout.String())
	smEnv["TASK_QUEUE_VISIBILITY_TIMEOUT"] = jsii.String((visibilityTimeoutPerFuncTimeout * p.SatisfierTimeout).String())
	smEnv["TASK_QUEUE_MAX_RECEIVE_COUNT"] = jsii.String(strconv.Itoa(p.TaskQueueMaxReceiveCount))
	smEnv["TASK_DEAD_LETTER_QUEUE_URL"] = s.TaskDeadLetterQueue.QueueUrl()
	smEnv["MACHINES_BUCKET"] = s.Bucket.BucketName()
	smEnv["FENCE_BUCKET"] = s.Bucket.BucketName()
	smEnv["DATABASE_SECRET_ID"] = s.DatabaseSecret.SecretArn()
	smEnv["RESULT_SIGNING_SECRET_ID"] = s.ResultSigningKey.SecretArn()
	smEnv["NOTIFICATION_TOPIC_ARN"] = s.NotificationTopic.TopicArn()
	s.StateManager = common("StateManager", "stackseam state manager: applies events to stacks",
		s.StateManagerRole, s.StateManagerSecurityGroup, s.StateManagerLogGroup,
		s.functionCode(p, "./functions/statemanager", nil), p.StateManagerTimeout, p.StateManagerMemorySize, smEnv)
	mapping := s.StateManager.AddEventSourceMapping(jsii.String("EventQueue"), &awslambda.EventSourceMappingOptions{
		EventSourceArn:          s.EventQueue.QueueArn(),
		BatchSize:               jsii.Number(float64(p.StateManagerBatchSize)),
		ReportBatchItemFailures: jsii.Bool(true),
		MaxConcurrency:          jsii.Number(float64(p.StateManagerMaxConcurrency)),
	})
	s.pauseOwnMapping(mapping)

	tf := &terraformBinary{path: p.TerraformBinary, cacheDir: p.dirs.cache}
	if tf.path != "" {
		abs, err := filepath.Abs(tf.path)
		if err != nil {
			panic(err)
		}
		tf.path = abs
	}
	satEnv := env("TERRAFORM_BINARY", tf.lambdaPath(), "LOG_LEVEL", p.LogLevel)
	satEnv["BUCKET"] = s.Bucket.BucketName()
	satEnv["RESULT_SIGNING_SECRET_ID"] = s.ResultSigningKey.SecretArn()
	satEnv["TASK_QUEUE_URL"] = s.TaskQueue.QueueUrl()
	satEnv["EVENT_QUEUE_URL"] = s.EventQueue.QueueUrl()
	s.Satisfier = common("Satisfier", "stackseam satisfier: runs Terraform and Lambda tasks and reports their results",
		s.SatisfierRole, s.SatisfierSecurityGroup, s.SatisfierLogGroup,
		s.functionCode(p, "./functions/satisfier", tf), p.SatisfierTimeout, p.SatisfierMemorySize, satEnv)
	s.Satisfier.Node().DefaultChild().(awslambda.CfnFunction).SetEphemeralStorage(&awslambda.CfnFunction_EphemeralStorageProperty{
		Size: jsii.Number(float64(p.SatisfierEphemeralStorageSize)),
	})
	opts := &awslambda.EventSourceMappingOptions{
		EventSourceArn: s.TaskQueue.QueueArn(),
		// One task per invocation: Terraform runs take minutes, and a batch would make later
		// tasks wait for earlier ones and share one timeout.
		BatchSize:               jsii.Number(1),
		ReportBatchItemFailures: jsii.Bool(true),
		MaxConcurrency:          jsii.Number(float64(p.SatisfierMaxConcurrency)),
	}
	s.Satisfier.AddEventSourceMapping(jsii.String("TaskQueue"), opts)
}

// functionCode is the asset of one function, bundled locally (see functionBundler). The hash is
// of the output, so an unchanged build is not redeployed; the bundling's Command and Environment
// describe the build and keep CDK's asset cache from mixing up the two functions' assets.
func (s *Stackseam) functionCode(p resolved, pkg string, tf *terraformBinary) awslambda.Code {
	env := map[string]*string{"GOOS": jsii.String(lambdaGOOS), "GOARCH": jsii.String(lambdaGOARCH), "CGO_ENABLED": jsii.String("0")}
	if tf != nil {
		from := tf.path
		if from == "" {
			from = OpenTofuModule + "@" + OpenTofuVersion
		}
		env["TERRAFORM_BINARY"] = jsii.String(from)
	}
	command := append([]string{"go", "build"}, lambdaBuildFlags...)
	command = append(command, "-o", bootstrapName, pkg)
	return awslambda.Code_FromAsset(jsii.String(p.dirs.module), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_OUTPUT,
		Bundling: &awscdk.BundlingOptions{
			// Never pulled: local bundling always succeeds or fails loudly.
			Image:       awscdk.DockerImage_FromRegistry(jsii.String("local-bundling-only")),
			Local:       &functionBundler{moduleDir: p.dirs.module, pkg: pkg, terraform: tf},
			Command:     jsii.Strings(command...),
			Environment: &env,
		},
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

// GrantPublishEvents lets grantee send events to the event queue (sqs:SendMessage, plus
// GetQueueUrl and GetQueueAttributes so that clients can look the queue up by name).
func (s *Stackseam) GrantPublishEvents(grantee awsiam.IGrantable) awsiam.Grant {
	return s.EventQueue.GrantSendMessages(grantee)
}

// AddTerraformPermissions adds statements to the satisfier's role, which Terraform tasks run
// with: whatever the tasks' scripts create, change and destroy. Writes to machines/ stay denied.
func (s *Stackseam) AddTerraformPermissions(statements ...awsiam.PolicyStatement) {
	for _, st := range statements {
		s.SatisfierRole.AddToPrincipalPolicy(st)
	}
}

// GrantTerraformSources lets Terraform tasks read sources of type s3 from another bucket, under
// prefix ("" for the whole bucket). The construct's own bucket is readable already.
func (s *Stackseam) GrantTerraformSources(bucket awss3.IBucket, prefix string) {
	list := awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:ListBucket"),
		Resources: &[]*string{bucket.BucketArn()},
	})
	if prefix != "" {
		list.AddCondition(jsii.String("StringLike"), map[string]any{"s3:prefix": prefix + "*"})
	}
	s.SatisfierRole.AddToPrincipalPolicy(list)
	s.SatisfierRole.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:GetObject"),
		Resources: &[]*string{bucket.ArnForObjects(jsii.String(prefix + "*"))},
	}))
	if key := bucket.EncryptionKey(); key != nil {
		key.GrantDecrypt(s.SatisfierRole)
	}
	pattern := strings.ReplaceAll(regexp.QuoteMeta(prefix), "/", `\/`)
	cdknag.NagSuppressions_AddResourceSuppressions(s.SatisfierRole, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String("Terraform sources are every object under the prefix given to GrantTerraformSources; their keys are chosen by the machine files."),
		AppliesTo: &[]interface{}{cdknag.RegexAppliesTo{Regex: jsii.String(`/^Resource::.*\/` + pattern + `\*$/`)}},
	}}, jsii.Bool(true))
}

// AllowLambdaTasks lets the Lambda executor invoke exactly these functions: names (in this
// stack's account and region), name:qualifier, or function ARNs. Anything else (wildcards
// included) panics with a *PropsError.
func (s *Stackseam) AllowLambdaTasks(functions ...string) {
	var problems []string
	for _, fn := range functions {
		if !functionArnRe.MatchString(fn) && !functionNameRe.MatchString(fn) {
			problems = append(problems, fmt.Sprintf("AllowLambdaTasks: %q is not a function name, name:qualifier or function ARN (wildcards are not allowed)", fn))
		}
	}
	if len(problems) > 0 {
		panic(&PropsError{Problems: problems})
	}
	arns := make([]*string, len(functions))
	for i, fn := range functions {
		if functionArnRe.MatchString(fn) {
			arns[i] = jsii.String(fn)
			continue
		}
		arns[i] = awscdk.Stack_Of(s.Construct).FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("lambda"), Resource: jsii.String("function"),
			ResourceName: jsii.String(fn), ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME,
		})
	}
	s.allowInvoke(arns...)
}

// AllowLambdaTaskFunctions lets the Lambda executor invoke these functions (by their ARNs).
func (s *Stackseam) AllowLambdaTaskFunctions(functions ...awslambda.IFunction) {
	arns := make([]*string, len(functions))
	for i, fn := range functions {
		arns[i] = fn.FunctionArn()
	}
	s.allowInvoke(arns...)
}

func (s *Stackseam) allowInvoke(arns ...*string) {
	if len(arns) == 0 {
		return
	}
	if s.invoke != nil {
		(*s.invoke).AddResources(arns...)
		return
	}
	st := awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("InvokeAllowedFunctions"),
		Actions:   jsii.Strings("lambda:InvokeFunction"),
		Resources: &arns,
	})
	s.invoke = &st
	s.SatisfierRole.AddToPrincipalPolicy(st)
}

func seconds(d time.Duration) awscdk.Duration {
	return awscdk.Duration_Seconds(jsii.Number(d.Seconds()))
}
