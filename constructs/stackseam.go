package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscodebuild"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsrds"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3deployment"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
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
	// ApprovalQueue (FIFO, one message group per stack) feeds the state manager approvals:
	// only principals given GrantApprove may send to it, and the events a machine lists under
	// approvals are accepted from it only.
	ApprovalQueue awssqs.Queue
	// ApprovalDeadLetterQueue receives approvals that failed EventQueueMaxReceiveCount times.
	ApprovalDeadLetterQueue awssqs.Queue
	// IntakeQueue (standard) takes events from publishers that send no message group id nor
	// deduplication id, as CloudSeam's did: the state manager forwards each message into the
	// event queue with its stack id as group and its own message id as deduplication id, so
	// nothing is collapsed by content. It keeps no order (README.md, "Publishing from CloudSeam").
	IntakeQueue awssqs.Queue
	// IntakeDeadLetterQueue receives intake messages that could not be forwarded
	// EventQueueMaxReceiveCount times (the event queue unavailable); invalid bodies are rejected
	// and recorded instead.
	IntakeDeadLetterQueue awssqs.Queue
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
	// SatisfierRole is the satisfier's execution role: what its own code does (sources, logs,
	// the state lock, fences, plans). Terraform runs with TerraformRole.
	SatisfierRole awsiam.Role
	// TerraformRole is the role Terraform tasks run with, assumed per run by the satisfier or a
	// task build with a session policy that leaves only the run's machine's objects in the bucket
	// (constructs/README.md, "What Terraform tasks may touch"). AddTerraformPermissions adds to it.
	TerraformRole awsiam.Role
	// SatisfierSecurityGroup is the satisfier's own security group.
	SatisfierSecurityGroup awsec2.SecurityGroup
	// SatisfierLogGroup receives the satisfier's logs.
	SatisfierLogGroup awslogs.LogGroup
	// QueryFunction answers operators' read-only questions (stacks, one stack, history,
	// machines) through the Lambda Invoke API; GrantRead lets a principal invoke it. Its database
	// session is read-only.
	QueryFunction awslambda.Function
	// QueryRole is the query function's execution role: logs, VPC networking and the database
	// secret, nothing else (no queue, no bucket).
	QueryRole awsiam.Role
	// QuerySecurityGroup is the query function's own security group; the database lets it in.
	QuerySecurityGroup awsec2.SecurityGroup
	// QueryLogGroup receives the query function's logs.
	QueryLogGroup awslogs.LogGroup
	// TaskBuildProject is the CodeBuild project tasks longer than Lambda allows run in: the
	// satisfier hands each such run over to one build, which runs the satisfier's own binary in
	// its one-task mode and publishes the result.
	TaskBuildProject awscodebuild.Project
	// TaskBuildRole is the builds' service role: what the satisfier's code does in a build. Its
	// Terraform runs with TerraformRole, as in the satisfier.
	TaskBuildRole awsiam.Role
	// TaskBuildSecurityGroup is the builds' own security group (outbound only).
	TaskBuildSecurityGroup awsec2.SecurityGroup
	// TaskBuildLogGroup receives the builds' logs.
	TaskBuildLogGroup awslogs.LogGroup
	// TaskBuildKey encrypts what CodeBuild keeps of the builds.
	TaskBuildKey awskms.Key
	// TaskBuildEndRule sends CodeBuild's event of a task build that ended without succeeding to
	// the task queue, so the satisfier fails a run whose build died without reporting.
	TaskBuildEndRule awsevents.Rule
	// NotificationTopic receives the state manager's notifications: transitions, task failures
	// and stack removals, with the message attributes stackId, machine, state and kind.
	NotificationTopic awssns.ITopic
	// SweepRule invokes the state manager every SweepInterval to run its sweep.
	SweepRule awsevents.Rule
	// ScheduleRules send the Schedules' events to the event queue, in the order of Schedules.
	ScheduleRules []awsevents.Rule
	// Alarms fire on messages in any dead-letter queue, errors of either function, failed
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
	s.QuerySecurityGroup = s.functionSecurityGroup("QuerySecurityGroup", "stackseam query function")
	s.bucket(p)
	s.queues(p)
	s.notificationTopic(p)
	s.database(p)
	s.StateManagerLogGroup = s.logGroup("StateManagerLogs", p)
	s.SatisfierLogGroup = s.logGroup("SatisfierLogs", p)
	s.QueryLogGroup = s.logGroup("QueryLogs", p)
	s.StateManagerRole = s.role("StateManagerRole", "stackseam state manager: consumes the event queue, sends tasks, reads machines/ and the database secret")
	s.SatisfierRole = s.role("SatisfierRole", "stackseam satisfier: consumes the task queue, runs tasks, sends results, keeps Terraform state and logs/")
	s.QueryRole = s.role("QueryRole", "stackseam query function: reads the database secret, answers operators' read-only queries")
	s.stateManagerPolicy()
	s.queryPolicy()
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
