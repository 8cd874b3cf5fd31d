package stackseam_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The embedded stack: an application passing its own VPC, bucket, database secret and
// security group (see embeddedStack).

const emb = "Embedded/Stackseam/"

func TestEmbeddedCreatesNoneOfTheGivenResources(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	for typ, n := range map[string]int{
		"AWS::EC2::VPC":                   0,
		"AWS::EC2::Subnet":                0,
		"AWS::EC2::NatGateway":            0,
		"AWS::RDS::DBInstance":            0,
		"AWS::SecretsManager::Secret":     1, // the result signing key, always the construct's own
		"AWS::S3::Bucket":                 0,
		"AWS::EC2::SecurityGroup":         4, // the functions' own and the task builds'
		"AWS::SQS::Queue":                 8, // events, approvals, intake and tasks, each with a dead-letter queue
		"AWS::Lambda::EventSourceMapping": 4,
		"Custom::CDKBucketDeployment":     1, // MachinesDir
		"AWS::CloudWatch::Alarm":          14,
		"AWS::CloudWatch::Dashboard":      1,
		"AWS::SNS::Topic":                 2, // the application's alarm and notification topics
		"AWS::KMS::Key":                   2, // the application's notification topic key, the task builds' key
		"AWS::Events::Rule":               6, // the sweep, four schedules and the task builds' end
	} {
		require.Len(t, tpl.ofType(typ), n, typ)
	}
}

func TestEmbeddedWiring(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	sm := tpl.res(t, emb+"StateManager/Resource").Properties
	sat := tpl.res(t, emb+"Satisfier/Resource").Properties
	smEnv := sm["Environment"].(map[string]any)["Variables"].(map[string]any)
	satEnv := sat["Environment"].(map[string]any)["Variables"].(map[string]any)
	require.Equal(t, embeddedSecretArn, smEnv["DATABASE_SECRET_ID"])
	require.Equal(t, embeddedBucket, smEnv["MACHINES_BUCKET"])
	require.Equal(t, "DEBUG", smEnv["LOG_LEVEL"])
	require.Equal(t, embeddedBucket, satEnv["BUCKET"])
	require.Equal(t, "DEBUG", satEnv["LOG_LEVEL"])
	require.Equal(t, 30.0, sm["Timeout"])
	// The deadlines follow the satisfier's timeout and the task queue given.
	require.Equal(t, "10m0s", smEnv["TASK_TIMEOUT"])
	require.Equal(t, "1h0m0s", smEnv["TASK_QUEUE_VISIBILITY_TIMEOUT"])
	require.Equal(t, 600.0, sat["Timeout"])
	for _, p := range []map[string]any{sm, sat} {
		require.Equal(t, []any{embeddedSubnets[0], embeddedSubnets[1]}, p["VpcConfig"].(map[string]any)["SubnetIds"])
	}
	// Visibility timeouts follow the function timeouts given.
	require.Equal(t, 180.0, tpl.res(t, emb+"EventQueue/Resource").Properties["VisibilityTimeout"])
	require.Equal(t, 3600.0, tpl.res(t, emb+"TaskQueue/Resource").Properties["VisibilityTimeout"])

	// The existing database's security group lets the state manager and the query function in,
	// on the port given.
	var ingress []any
	for _, r := range tpl.ofType("AWS::EC2::SecurityGroupIngress") {
		ingress = append(ingress, r.Properties)
	}
	rule := func(description, sg string) any {
		return map[string]any{"Description": description, "GroupId": embeddedDBGroup,
			"SourceSecurityGroupId": getAtt(tpl.id(t, emb+sg+"/Resource"), "GroupId"),
			"IpProtocol":            "tcp", "FromPort": 6432.0, "ToPort": 6432.0}
	}
	require.ElementsMatch(t, []any{
		rule("PostgreSQL from the stackseam state manager", "StateManagerSecurityGroup"),
		rule("PostgreSQL from the stackseam query function (read-only sessions)", "QuerySecurityGroup"),
	}, ingress)

	// machines/ is uploaded from the folder, pruned, into the existing bucket.
	for _, r := range tpl.ofType("Custom::CDKBucketDeployment") {
		require.Equal(t, []any{embeddedBucket}[0], r.Properties["DestinationBucketName"])
		require.Equal(t, "machines/", r.Properties["DestinationBucketKeyPrefix"])
		require.Equal(t, true, r.Properties["Prune"])
	}

	// Alarm actions go to the topic given, for every alarm.
	for _, a := range tpl.ofType("AWS::CloudWatch::Alarm") {
		topic := ref(tpl.id(t, "Embedded/Alarms/Resource"))
		require.Equal(t, []any{topic}, a.Properties["AlarmActions"])
		require.Equal(t, []any{topic}, a.Properties["OKActions"])
	}
	require.Equal(t, 600.0, tpl.res(t, emb+"EventQueueAgeAlarm/Resource").Properties["Threshold"])
	require.Equal(t, 3600.0, tpl.res(t, emb+"TaskQueueAgeAlarm/Resource").Properties["Threshold"])

	// Notifications go to the application's topic.
	require.Equal(t, ref(tpl.id(t, "Embedded/Notifications/Resource")), smEnv["NOTIFICATION_TOPIC_ARN"])
}

func TestEmbeddedPolicies(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	bucket := join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedBucket)
	objects := func(suffix string) any { return join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedBucket+suffix) }
	list := allow("ListMachines", "s3:ListBucket", bucket)
	list["Condition"] = map[string]any{"StringLike": map[string]any{"s3:prefix": "machines/*"}}
	require.ElementsMatch(t, normalize(t, append(stateManagerQueueStatements(tpl, t, emb),
		allow("PublishNotifications", "sns:Publish", ref(tpl.id(t, "Embedded/Notifications/Resource"))),
		// The topic is encrypted with the application's key.
		allow("", []string{"kms:GenerateDataKey", "kms:Decrypt"}, getAtt(tpl.id(t, "Embedded/NotificationsKey/Resource"), "Arn")),
		list,
		allow("ReadMachines", "s3:GetObject", objects("/machines/*")),
		allow("WriteFences", []string{"s3:GetObject", "s3:PutObject"}, objects("/fences/*")),
		allow("", []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, embeddedSecretArn),
		allow("FindOwnEventSourceMapping", "lambda:ListEventSourceMappings", "*"),
		allow("PauseOwnEventSourceMapping", "lambda:UpdateEventSourceMapping", []any{
			join("arn:", ref("AWS::Partition"), ":lambda:eu-west-1:123456789012:event-source-mapping:", ref(tpl.id(t, emb+"StateManager/EventQueue/Resource"))),
			join("arn:", ref("AWS::Partition"), ":lambda:eu-west-1:123456789012:event-source-mapping:", ref(tpl.id(t, emb+"StateManager/ApprovalQueue/Resource"))),
			join("arn:", ref("AWS::Partition"), ":lambda:eu-west-1:123456789012:event-source-mapping:", ref(tpl.id(t, emb+"StateManager/IntakeQueue/Resource")))}),
		readSigningKey(tpl, t, emb),
	)), tpl.statementsOf(t, emb+"StateManagerRole/Resource"))

	sourcesList := allow("", "s3:ListBucket", join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedSources))
	sourcesList["Condition"] = map[string]any{"StringLike": map[string]any{"s3:prefix": "terraform/*"}}
	require.ElementsMatch(t, normalize(t, append(satisfierStatements(tpl, t, emb, bucket, objects),
		allow("HandOverLongTasks", []string{"codebuild:StartBuild", "codebuild:BatchGetBuilds"}, getAtt(tpl.id(t, emb+"TaskBuildProject/Resource"), "Arn")),
		allow("InvokeAllowedFunctions", "lambda:InvokeFunction", []any{
			join("arn:", ref("AWS::Partition"), ":lambda:"+embeddedRegion+":"+embeddedAccount+":function:notify"),
			embeddedAuditArn,
		}),
		allow("AssumeTerraformRole", "sts:AssumeRole", getAtt(tpl.id(t, emb+"TerraformRole/Resource"), "Arn")),
		sourcesList, // GrantTerraformSources: the satisfier fetches the sources
		allow("", "s3:GetObject", join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedSources+"/terraform/*")),
		// GrantTerraformState: what the role has in its own bucket's state layout, no more.
		allow("", "s3:ListBucket", join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedTeamState)),
		allow("", []string{"s3:GetObject", "s3:PutObject"}, join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedTeamState+"/*/*/*")),
		allow("", "s3:DeleteObject", join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedTeamState+"/*.tflock")),
		readSigningKey(tpl, t, emb),
	)), tpl.statementsOf(t, emb+"SatisfierRole/Resource"))

	// A task build fetches sources as the satisfier does; Terraform's own permissions
	// (AddTerraformPermissions) are on the TerraformRole only.
	build := tpl.statementsOf(t, emb+"TaskBuildRole/Resource")
	for _, want := range normalize(t, []any{
		sourcesList,
		allow("", "s3:GetObject", join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedSources+"/terraform/*")),
		allow("AssumeTerraformRole", "sts:AssumeRole", getAtt(tpl.id(t, emb+"TerraformRole/Resource"), "Arn")),
	}).([]any) {
		require.Contains(t, build, want)
	}
	publish := normalize(t, allow("", "sns:Publish", ref(tpl.id(t, "Embedded/Alarms/Resource"))))
	require.NotContains(t, build, publish)
	require.Contains(t, tpl.statementsOf(t, emb+"TerraformRole/Resource"), publish, "AddTerraformPermissions")

	// GrantPublishEvents: the event queue and the intake, nothing else (not the approvals queue).
	require.ElementsMatch(t, normalize(t, []any{
		allow("", []string{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
			getAtt(tpl.id(t, emb+"EventQueue/Resource"), "Arn")),
		allow("", []string{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
			getAtt(tpl.id(t, emb+"IntakeQueue/Resource"), "Arn")),
	}), tpl.statementsOf(t, "Embedded/Publisher/Resource"))

	// GrantApprove: the approvals queue only (and the stack's outputs), and a publisher cannot
	// send to it.
	require.ElementsMatch(t, normalize(t, []any{
		allow("", []string{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
			getAtt(tpl.id(t, emb+"ApprovalQueue/Resource"), "Arn")),
		allow("", "cloudformation:DescribeStacks", ref("AWS::StackId")),
	}), tpl.statementsOf(t, "Embedded/Approver/Resource"))
}
