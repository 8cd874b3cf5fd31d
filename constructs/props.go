package stackseam

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscodebuild"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
)

// StackseamProps configures NewStackseam. Its zero value deploys a complete, secure system: a new
// VPC, a PostgreSQL database with a generated secret, a bucket, both queues with their dead-letter
// queues, and both functions. Props come in pairs in the aws-solutions-constructs way: give an
// existing resource, or leave it nil and (optionally) tune the one the construct creates; giving
// both is an error. Plain Go types are used so that the zero value of each field means "default".
type StackseamProps struct {
	// ExistingVpc is the VPC the functions (and a created database) are placed in. It must have
	// subnets matching VpcSubnets, with a route to the internet or VPC endpoints for SQS, S3 and
	// Secrets Manager, since the satisfier's Terraform fetches providers. Defaults to a new VPC.
	ExistingVpc awsec2.IVpc
	// VpcProps replaces the settings of the VPC the construct creates. It cannot be combined with
	// ExistingVpc. Defaults to 2 availability zones, one NAT gateway, public and private (with
	// egress) subnets, an S3 gateway endpoint, and flow logs of rejected traffic.
	VpcProps *awsec2.VpcProps
	// VpcSubnets selects the subnets of the functions and of a created database. Defaults to the
	// private subnets with egress.
	VpcSubnets *awsec2.SubnetSelection

	// ExistingDatabaseSecret is a Secrets Manager secret in the format RDS writes
	// ({"username","password","host","port","dbname"}) for an existing PostgreSQL database. It
	// requires ExistingDatabaseSecurityGroup. Defaults to a new database and its generated secret.
	ExistingDatabaseSecret awssecretsmanager.ISecret
	// ExistingDatabaseSecurityGroup is the security group guarding the existing database; the
	// construct lets the state manager's security group in on ExistingDatabasePort. Required with
	// ExistingDatabaseSecret and invalid without it. Defaults to none (the created database gets
	// a security group of its own).
	ExistingDatabaseSecurityGroup awsec2.ISecurityGroup
	// ExistingDatabasePort is the port of the existing database. Only with
	// ExistingDatabaseSecret. Defaults to 5432.
	ExistingDatabasePort int
	// DatabaseInstanceType is the class of the database the construct creates. Defaults to
	// db.t4g.micro.
	DatabaseInstanceType awsec2.InstanceType
	// DatabaseMultiAz keeps a standby of the created database in a second availability zone.
	// Defaults to false (a single instance), for cost.
	DatabaseMultiAz bool
	// DatabaseRemovalPolicy says what happens to the created database when it leaves the stack.
	// Defaults to awscdk.RemovalPolicy_SNAPSHOT.
	DatabaseRemovalPolicy awscdk.RemovalPolicy
	// DatabaseDeletionProtection stops the created database from being deleted until it is turned
	// off. Defaults to true, unless DatabaseRemovalPolicy is awscdk.RemovalPolicy_DESTROY.
	DatabaseDeletionProtection *bool

	// ExistingBucket holds machines/, Terraform sources and state, and logs/. Defaults to a new
	// bucket: S3-managed encryption, versioned, public access blocked, SSL only, access logs.
	ExistingBucket awss3.IBucket
	// BucketRemovalPolicy says what happens to the created bucket when it leaves the stack.
	// Defaults to awscdk.RemovalPolicy_RETAIN, because the bucket holds Terraform state.
	BucketRemovalPolicy awscdk.RemovalPolicy
	// ExistingLoggingBucket receives the created bucket's server access logs. Only without
	// ExistingBucket. Defaults to a new bucket (S3-managed encryption, SSL only, logs expire after
	// 90 days).
	ExistingLoggingBucket awss3.IBucket
	// MachinesDir is a local folder of machine files uploaded to machines/ in the bucket on every
	// deploy; machines deleted from the folder are deleted from the bucket. Defaults to "" (no
	// upload: manage machines/ yourself, e.g. with `aws s3 sync`).
	MachinesDir string

	// EventQueueMaxReceiveCount is how many times an event is received before it moves to the
	// event dead-letter queue. Defaults to 5.
	EventQueueMaxReceiveCount int
	// TaskQueueMaxReceiveCount is how many times a task message is received before it moves to
	// the task dead-letter queue. Task failures are reported as TASK_ERROR events, so only crashes
	// and timeouts count. Defaults to 3.
	TaskQueueMaxReceiveCount int

	// StateManagerTimeout is the state manager's function timeout; the event queue's visibility
	// timeout is six times this. Defaults to 1 minute.
	StateManagerTimeout time.Duration
	// StateManagerMemorySize is the state manager's memory in MiB. Defaults to 512.
	StateManagerMemorySize int
	// StateManagerBatchSize is the largest batch of events one invocation handles (1–10, the FIFO
	// maximum). Defaults to 10.
	StateManagerBatchSize int
	// StateManagerMaxConcurrency caps concurrent state manager invocations (2–1000), which bounds
	// the database connections they open. Defaults to 10.
	StateManagerMaxConcurrency int
	// SatisfierTimeout is the satisfier's function timeout, the longest a task may run; the task
	// queue's visibility timeout is six times this. Defaults to 15 minutes (the Lambda maximum).
	SatisfierTimeout time.Duration
	// SatisfierMemorySize is the satisfier's memory in MiB (CPU grows with it). Defaults to 2048.
	SatisfierMemorySize int
	// SatisfierEphemeralStorageSize is the satisfier's /tmp in MiB, where Terraform providers are
	// kept. Defaults to 4096.
	SatisfierEphemeralStorageSize int
	// SatisfierMaxConcurrency caps concurrent satisfier invocations, the task event source's
	// maximum concurrency (2–1000): how many tasks — Terraform runs, each with a provider's API
	// calls — run at once, so a burst of stacks cannot take the account's Lambda concurrency (which
	// the state manager needs too) or a provider's rate limits. Defaults to 20.
	SatisfierMaxConcurrency int
	// QueryReservedConcurrency reserves (and so caps) the query function's concurrency (1–1000):
	// each of its execution environments keeps up to 2 database connections, so without a cap a
	// principal with GrantRead that invokes it in a burst can take the connections the state
	// manager needs. 0 (the default) sets none, because a reservation fails to deploy in an
	// account whose Lambda concurrency limit is still 10; set it (5 is plenty for people and a
	// console) wherever the account allows.
	QueryReservedConcurrency int

	// TerraformBinary is the path of a linux/arm64 Terraform or OpenTofu executable bundled with
	// the satisfier. Defaults to OpenTofu (OpenTofuVersion) built from its Go module for
	// linux/arm64 and cached under CacheDir, which works offline once the module cache is warm.
	TerraformBinary string
	// AllowedFunctions are the Lambda functions (names, name:qualifier, or ARNs) the satisfier's
	// Lambda executor may invoke; see also AllowLambdaTasks. Defaults to none.
	AllowedFunctions []string
	// TaskBuildComputeType is the size of the CodeBuild builds that run tasks longer than Lambda
	// allows (a machine's runner: codebuild, or a terraform task's timeoutSeconds beyond 900).
	// Defaults to awscodebuild.ComputeType_SMALL (arm64, 2 vCPUs, 4 GiB).
	TaskBuildComputeType awscodebuild.ComputeType

	// LogLevel is the functions' LOG_LEVEL: DEBUG, INFO, WARN or ERROR. Defaults to INFO.
	LogLevel string
	// LogRetention is how long the functions' and the flow logs' log groups keep events.
	// Defaults to awslogs.RetentionDays_THREE_MONTHS.
	LogRetention awslogs.RetentionDays
	// AlarmActions are run when an alarm (messages in a dead-letter queue, function errors,
	// failed tasks, rejected events, old messages in a queue) fires or recovers, for example an
	// SNS topic action. Defaults to none.
	AlarmActions []awscloudwatch.IAlarmAction
	// EventQueueAgeAlarmThreshold is the age of the oldest event in the event queue that raises
	// an alarm: events are normally handled within seconds, so old ones mean the state manager
	// is failing or a stack's message group is stuck. Whole seconds, at least 1 minute. Defaults
	// to 15 minutes.
	EventQueueAgeAlarmThreshold time.Duration
	// TaskQueueAgeAlarmThreshold is the age of the oldest task message in the task queue that
	// raises an alarm. Whole seconds, at least 1 minute. Defaults to 1 hour (a task may be
	// delayed for up to 15 minutes and run for up to SatisfierTimeout before it is deleted).
	TaskQueueAgeAlarmThreshold time.Duration

	// ExistingNotificationTopic receives the state manager's notifications (transitions, task
	// failures, stack removals; see NOTIFICATION_TOPIC_ARN). It must be a standard (not FIFO)
	// topic. Defaults to a new topic (encrypted with the AWS managed key alias/aws/sns, SSL
	// only).
	ExistingNotificationTopic awssns.ITopic
	// NotificationTopicProps replaces the settings of the notification topic the construct
	// creates; an unset MasterKey and EnforceSSL keep their defaults. It cannot be combined with
	// ExistingNotificationTopic, and Fifo is refused (notifications carry no message group).
	// Defaults to encryption with alias/aws/sns and EnforceSSL.
	NotificationTopicProps *awssns.TopicProps

	// SweepInterval is how often an EventBridge rule invokes the state manager to run its sweep,
	// which sends time-to-live events to idle stacks and re-sends outbox messages a crashed
	// invocation left behind. Whole minutes, 1 minute to 1 day. Defaults to 1 minute.
	SweepInterval time.Duration
	// Schedules send fixed events to stacks on a clock (cron or rate expressions, UTC), through
	// EventBridge to the event queue. Defaults to none.
	Schedules []Schedule

	// ModuleDir is the directory of the github.com/stackseam/stackseam module the functions are
	// built from. Defaults to what `go list -m` reports from the current directory (this
	// repository, or the module cache when the construct is used from another module).
	ModuleDir string
	// CacheDir is where built tools (OpenTofu) are cached. Defaults to .cache in the root of the
	// Go module of the current directory.
	CacheDir string
}

// PropsError lists every problem found in a StackseamProps, so that one run shows them all.
type PropsError struct {
	Problems []string
}

// Error lists the problems, one per line.
func (e *PropsError) Error() string {
	return fmt.Sprintf("invalid StackseamProps (%d problems):\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

var (
	// A function name, optionally with a version or alias, or a function ARN; see the FunctionName
	// parameter of Lambda's Invoke API. Wildcards are refused: only named functions may be allowed.
	functionNameRe = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]+))?$`)
	functionArnRe  = regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]+))?$`)
)

// Validate reports every invalid field and combination of fields in one *PropsError, or nil.
// NewStackseam calls it first and panics with its error, as CDK constructors do.
func (p *StackseamProps) Validate() error {
	if p == nil {
		return nil
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if p.ExistingVpc != nil && p.VpcProps != nil {
		add("ExistingVpc and VpcProps are mutually exclusive: give an existing VPC or settings for a new one")
	}

	existingDB := p.ExistingDatabaseSecret != nil
	if existingDB && p.ExistingDatabaseSecurityGroup == nil {
		add("ExistingDatabaseSecret needs ExistingDatabaseSecurityGroup, the security group guarding that database, so the state manager can be let in")
	}
	if !existingDB {
		if p.ExistingDatabaseSecurityGroup != nil {
			add("ExistingDatabaseSecurityGroup is only valid with ExistingDatabaseSecret")
		}
		if p.ExistingDatabasePort != 0 {
			add("ExistingDatabasePort is only valid with ExistingDatabaseSecret")
		}
	} else {
		if p.DatabaseInstanceType != nil {
			add("DatabaseInstanceType cannot be combined with ExistingDatabaseSecret (no database is created)")
		}
		if p.DatabaseMultiAz {
			add("DatabaseMultiAz cannot be combined with ExistingDatabaseSecret (no database is created)")
		}
		if p.DatabaseRemovalPolicy != "" {
			add("DatabaseRemovalPolicy cannot be combined with ExistingDatabaseSecret (no database is created)")
		}
		if p.DatabaseDeletionProtection != nil {
			add("DatabaseDeletionProtection cannot be combined with ExistingDatabaseSecret (no database is created)")
		}
	}
	if p.ExistingDatabasePort < 0 || p.ExistingDatabasePort > 65535 {
		add("ExistingDatabasePort %d is not a port (1–65535)", p.ExistingDatabasePort)
	}

	if p.ExistingBucket != nil {
		if p.BucketRemovalPolicy != "" {
			add("BucketRemovalPolicy cannot be combined with ExistingBucket (no bucket is created)")
		}
		if p.ExistingLoggingBucket != nil {
			add("ExistingLoggingBucket cannot be combined with ExistingBucket (access logging of an existing bucket is its owner's choice)")
		}
	}
	if p.MachinesDir != "" {
		if st, err := os.Stat(p.MachinesDir); err != nil || !st.IsDir() {
			add("MachinesDir %q is not a directory", p.MachinesDir)
		}
	}

	intRange := func(name string, v, lo, hi int) {
		if v != 0 && (v < lo || v > hi) {
			add("%s %d is out of range (%d–%d)", name, v, lo, hi)
		}
	}
	intRange("EventQueueMaxReceiveCount", p.EventQueueMaxReceiveCount, 1, 1000)
	intRange("TaskQueueMaxReceiveCount", p.TaskQueueMaxReceiveCount, 1, 1000)
	intRange("StateManagerMemorySize", p.StateManagerMemorySize, 128, 10240)
	intRange("StateManagerBatchSize", p.StateManagerBatchSize, 1, 10)
	intRange("StateManagerMaxConcurrency", p.StateManagerMaxConcurrency, 2, 1000)
	intRange("SatisfierMemorySize", p.SatisfierMemorySize, 128, 10240)
	intRange("SatisfierEphemeralStorageSize", p.SatisfierEphemeralStorageSize, 512, 10240)
	intRange("SatisfierMaxConcurrency", p.SatisfierMaxConcurrency, 2, 1000)
	intRange("QueryReservedConcurrency", p.QueryReservedConcurrency, 1, 1000)

	timeout := func(name string, d time.Duration) {
		if d == 0 {
			return
		}
		if d < time.Second || d > maxLambdaTimeout || d%time.Second != 0 {
			add("%s %s must be whole seconds between 1s and 15m", name, d)
		}
	}
	timeout("StateManagerTimeout", p.StateManagerTimeout)
	timeout("SatisfierTimeout", p.SatisfierTimeout)

	ageThreshold := func(name string, d time.Duration) {
		if d != 0 && (d < time.Minute || d%time.Second != 0) {
			add("%s %s must be whole seconds, at least 1m", name, d)
		}
	}
	ageThreshold("EventQueueAgeAlarmThreshold", p.EventQueueAgeAlarmThreshold)
	ageThreshold("TaskQueueAgeAlarmThreshold", p.TaskQueueAgeAlarmThreshold)
	if d := p.SweepInterval; d != 0 && (d < time.Minute || d > maxSweepInterval || d%time.Minute != 0) {
		add("SweepInterval %s must be whole minutes between 1m and 24h (an EventBridge rate)", d)
	}

	if p.ExistingNotificationTopic != nil {
		if p.NotificationTopicProps != nil {
			add("ExistingNotificationTopic and NotificationTopicProps are mutually exclusive: give an existing topic or settings for a new one")
		}
		if fifo := p.ExistingNotificationTopic.Fifo(); fifo != nil && *fifo {
			add("ExistingNotificationTopic is a FIFO topic; notifications are published without a message group, so it must be a standard topic")
		}
	}
	if tp := p.NotificationTopicProps; tp != nil && tp.Fifo != nil && *tp.Fifo {
		add("NotificationTopicProps.Fifo is not supported; notifications are published without a message group")
	}
	problems = append(problems, validateSchedules(p.Schedules)...)

	if p.TerraformBinary != "" {
		if st, err := os.Stat(p.TerraformBinary); err != nil || !st.Mode().IsRegular() {
			add("TerraformBinary %q is not a file", p.TerraformBinary)
		}
	}
	for _, fn := range p.AllowedFunctions {
		if !functionNameRe.MatchString(fn) && !functionArnRe.MatchString(fn) {
			add("AllowedFunctions entry %q is not a function name, name:qualifier or function ARN (wildcards are not allowed)", fn)
		}
	}
	switch strings.ToUpper(p.LogLevel) {
	case "", "DEBUG", "INFO", "WARN", "ERROR":
	default:
		add("LogLevel %q is not one of DEBUG, INFO, WARN, ERROR", p.LogLevel)
	}
	if p.ModuleDir != "" {
		if _, err := os.Stat(p.ModuleDir + "/go.mod"); err != nil {
			add("ModuleDir %q has no go.mod", p.ModuleDir)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &PropsError{Problems: problems}
}
