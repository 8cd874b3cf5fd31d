package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

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
	r.AddToPrincipalPolicy(statement("DeadLetterEvents", []string{"sqs:SendMessage"}, s.EventDeadLetterQueue.QueueArn(), s.ApprovalDeadLetterQueue.QueueArn()))
	r.AddToPrincipalPolicy(statement("ConsumeApprovals", consumeActions, s.ApprovalQueue.QueueArn()))
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

// queryPolicy is all the query function may do: write its logs, attach to the VPC, and read the
// database secret. It consumes no queue and touches no bucket; its database session is
// read-only (functions/query).
func (s *Stackseam) queryPolicy() {
	r := s.QueryRole
	r.AddToPrincipalPolicy(statement("WriteLogs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, s.QueryLogGroup.LogGroupArn()))
	r.AddToPrincipalPolicy(statement("ConnectToVpc", vpcActions, jsii.String("*")))
	s.DatabaseSecret.GrantRead(r, nil)
	cdknag.NagSuppressions_AddResourceSuppressions(r, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String("Lambda's VPC networking actions (ENI management, the AWSLambdaVPCAccessExecutionRole actions) do not support resource-level scoping."),
		AppliesTo: &[]interface{}{"Resource::*"},
	}}, jsii.Bool(true))
}

// pauseOwnMapping lets the state manager disable and enable its own event-source mapping, which
// it does while the database is unavailable so that an outage spends no receive counts (docs/design.md
// §"Guarantees"). The statements sit in a policy of their own: the role's default policy is a
// dependency of the function, and the mapping depends on the function, so naming the mapping there
// would be a cycle.
func (s *Stackseam) pauseOwnMapping(mappings ...awslambda.EventSourceMapping) {
	arns := make([]*string, len(mappings))
	for i, m := range mappings {
		arns[i] = m.EventSourceMappingArn()
	}
	policy := awsiam.NewPolicy(s.Construct, jsii.String("StateManagerPausePolicy"), &awsiam.PolicyProps{
		Roles: &[]awsiam.IRole{s.StateManagerRole},
		Statements: &[]awsiam.PolicyStatement{
			// The function finds its mapping by function name and queue ARN at run time.
			statement("FindOwnEventSourceMapping", []string{"lambda:ListEventSourceMappings"}, jsii.String("*")),
			statement("PauseOwnEventSourceMapping", []string{"lambda:UpdateEventSourceMapping"}, arns...),
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
	// The hand-over records of CodeBuild-run tasks (the task message and the build's id).
	s.terraformStatements(r, s.Bucket.ArnForObjects(jsii.String(HandoversPrefix+"*")))
	cdknag.NagSuppressions_AddResourceSuppressions(r, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-IAM5"),
		Reason: jsii.String("Lambda's VPC networking actions (ENI management) do not support resource-level scoping. " +
			"Terraform sources (chosen by the machine files) live under keys only known at run time, so reading spans the bucket; writes are limited to the state layout <machine>/<stackId>/<key>, logs/ and handovers/ (one record per CodeBuild-run task), deletes to *.tflock lock files and used plans under plans/, and machines/ and fences/ are explicitly denied."),
		AppliesTo: &[]interface{}{"Resource::*", cdknag.RegexAppliesTo{Regex: jsii.String("/^Resource::.*\\/(\\*|\\*\\/\\*\\/\\*|\\*\\.tflock|logs\\/\\*|handovers\\/\\*|plans\\/\\*|machines\\/\\*|fences\\/\\*)$/")}},
	}}, jsii.Bool(true))
}

// terraformStatements are what the code around Terraform runs needs of the bucket (the
// satisfier's role, and the task builds'): fetching sources, storing logs, taking the state lock,
// reading fences, uploading and removing saved plans, copying CloudSeam's state; writing also to
// extraWrites. Terraform itself runs with TerraformRole (terraformRoleStatements).
func (s *Stackseam) terraformStatements(r awsiam.Role, extraWrites ...*string) {
	// Terraform sources may be anywhere in the bucket (keys chosen by the machine files), and
	// tasks read their stacks' fences (fences/<stackId>), so reading spans the bucket. Writing is
	// limited to the state layout <machine>/<stackId>/<source key> (CloudSeam's layout; at least
	// two slashes, with its <key>.tflock lock file) and logs/; deletes to lock files (state keeps
	// its history in versions). These roles are trusted code's; Terraform's own reach is narrowed
	// per machine: see constructs/README.md, "What Terraform tasks may touch".
	r.AddToPrincipalPolicy(statement("ListSourcesAndState", []string{"s3:ListBucket"}, s.Bucket.BucketArn()))
	r.AddToPrincipalPolicy(statement("ReadSourcesStateAndFences", []string{"s3:GetObject"}, s.Bucket.ArnForObjects(jsii.String("*"))))
	r.AddToPrincipalPolicy(statement("WriteStateAndLogs", []string{"s3:PutObject"},
		append([]*string{s.Bucket.ArnForObjects(jsii.String(StateLayout)), s.Bucket.ArnForObjects(jsii.String(LogsPrefix + "*"))}, extraWrites...)...))
	r.AddToPrincipalPolicy(statement("ReleaseStateLocks", []string{"s3:DeleteObject"}, s.Bucket.ArnForObjects(jsii.String("*.tflock"))))
	// Saved plans (plans/<machine>/<stackId>/<task>.tfplan; writing them is covered by the state
	// layout): a plan is deleted once applied or refused, and when a plan finds no changes.
	r.AddToPrincipalPolicy(statement("RemoveUsedPlans", []string{"s3:DeleteObject"}, s.Bucket.ArnForObjects(jsii.String(PlansPrefix+"*"))))
	s.terraformDenies(r)
}

// terraformDenies keep a role that runs Terraform tasks or their code (and whatever
// AddTerraformPermissions grants) from rewriting the machines the state manager trusts or the
// fences it writes, by any object write (versions and ACLs included), and from changing the
// bucket itself. A bucket with its own key also gets encrypt and decrypt on it for the role.
func (s *Stackseam) terraformDenies(r awsiam.Role) {
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
}

// terraformRoleStatements are what Terraform itself needs of the bucket: its S3 backend lists,
// reads and writes the state layout <machine>/<stackId>/<key> (a lock file <key>.tflock
// included, though the satisfier takes the lock itself), and module sources in the bucket are
// read. The session policy of each run narrows all of it to <machine>/*.
func (s *Stackseam) terraformRoleStatements(r awsiam.Role) {
	r.AddToPrincipalPolicy(statement("ListState", []string{"s3:ListBucket"}, s.Bucket.BucketArn()))
	r.AddToPrincipalPolicy(statement("ReadSourcesAndState", []string{"s3:GetObject"}, s.Bucket.ArnForObjects(jsii.String("*"))))
	r.AddToPrincipalPolicy(statement("WriteState", []string{"s3:PutObject"}, s.Bucket.ArnForObjects(jsii.String(StateLayout))))
	r.AddToPrincipalPolicy(statement("ReleaseStateLocks", []string{"s3:DeleteObject"}, s.Bucket.ArnForObjects(jsii.String("*.tflock"))))
	s.terraformDenies(r)
}
