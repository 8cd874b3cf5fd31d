package stackseam_test

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
)

// The default stack: NewStackseam with zero props (and a stub Terraform binary).

const def = "Default/Stackseam/"

func TestDefaultCreatesEverything(t *testing.T) {
	s := synth(t)
	tpl := s.templates["Default"]
	t.Logf("synthesized both stacks in %s; Default has %d resources", s.elapsed.Round(1e6), len(tpl.Resources))
	for typ, n := range map[string]int{
		"AWS::EC2::VPC":                   1,
		"AWS::EC2::NatGateway":            1,
		"AWS::EC2::FlowLog":               1,
		"AWS::EC2::VPCEndpoint":           1,
		"AWS::RDS::DBInstance":            1,
		"AWS::SecretsManager::Secret":     2, // the database's, and the result signing key
		"AWS::S3::Bucket":                 2, // the bucket and its access-log bucket
		"AWS::SQS::Queue":                 8, // events, approvals, intake and tasks, each with a dead-letter queue
		"AWS::Lambda::Function":           3, // state manager, satisfier, query; no custom resources without MachinesDir
		"AWS::Lambda::EventSourceMapping": 4,
		"AWS::IAM::Role":                  6, // three functions, the task builds, Terraform and the flow log
		"AWS::CodeBuild::Project":         1, // tasks longer than Lambda allows
		"AWS::KMS::Key":                   1, // the task builds' encryption key
		"AWS::CloudWatch::Alarm":          14,
		"AWS::CloudWatch::Dashboard":      1,
		"AWS::Logs::LogGroup":             5, // three functions, the task builds and the flow log
		"AWS::SNS::Topic":                 1, // notifications
		"AWS::Events::Rule":               2, // the sweep and the task builds' end; no schedules
		"AWS::Lambda::Permission":         1, // the sweep's rule invokes the state manager
		"AWS::Lambda::EventInvokeConfig":  1,
		"Custom::CDKBucketDeployment":     0,
	} {
		require.Len(t, tpl.ofType(typ), n, typ)
	}
}

func TestDefaultFunctions(t *testing.T) {
	tpl := synth(t).templates["Default"]
	private := []any{ref(tpl.id(t, def+"Vpc/PrivateSubnet1/Subnet")), ref(tpl.id(t, def+"Vpc/PrivateSubnet2/Subnet"))}
	for _, fn := range []struct {
		name, sg, logs, role string
		timeout, memory      float64
		env                  map[string]any
	}{
		{"StateManager", "StateManagerSecurityGroup", "StateManagerLogs", "StateManagerRole", 60, 512, map[string]any{
			"EVENT_QUEUE_URL":          ref(tpl.id(t, def+"EventQueue/Resource")),
			"EVENT_QUEUE_ARN":          getAtt(tpl.id(t, def+"EventQueue/Resource"), "Arn"),
			"APPROVAL_QUEUE_URL":       ref(tpl.id(t, def+"ApprovalQueue/Resource")),
			"APPROVAL_QUEUE_ARN":       getAtt(tpl.id(t, def+"ApprovalQueue/Resource"), "Arn"),
			"INTAKE_QUEUE_URL":         ref(tpl.id(t, def+"IntakeQueue/Resource")),
			"INTAKE_QUEUE_ARN":         getAtt(tpl.id(t, def+"IntakeQueue/Resource"), "Arn"),
			"RESULT_SIGNING_SECRET_ID": ref(tpl.id(t, def+"ResultSigningKey/Resource")),
			"TASK_QUEUE_URL":           ref(tpl.id(t, def+"TaskQueue/Resource")),
			// A task run's deadline: 3 × (15 min + 90 min) after its dispatch.
			"TASK_TIMEOUT":                  "15m0s",
			"TASK_QUEUE_VISIBILITY_TIMEOUT": "1h30m0s",
			"TASK_QUEUE_MAX_RECEIVE_COUNT":  "3",
			"TASK_DEAD_LETTER_QUEUE_URL":    ref(tpl.id(t, def+"TaskDeadLetterQueue/Resource")),
			"MACHINES_BUCKET":               ref(tpl.id(t, def+"Bucket/Resource")),
			"FENCE_BUCKET":                  ref(tpl.id(t, def+"Bucket/Resource")),
			"MACHINES_PREFIX":               "machines/",
			"DATABASE_SECRET_ID":            ref(tpl.id(t, def+"DatabaseSecret/Attachment/Resource")),
			"DATABASE_SSLMODE":              "verify-full",
			"LOG_LEVEL":                     "INFO",
			"NOTIFICATION_TOPIC_ARN":        ref(tpl.id(t, def+"NotificationTopic/Resource")),
		}},
		{"Satisfier", "SatisfierSecurityGroup", "SatisfierLogs", "SatisfierRole", 900, 2048, map[string]any{
			"EVENT_QUEUE_URL":          ref(tpl.id(t, def+"EventQueue/Resource")),
			"TASK_QUEUE_URL":           ref(tpl.id(t, def+"TaskQueue/Resource")),
			"BUCKET":                   ref(tpl.id(t, def+"Bucket/Resource")),
			"TERRAFORM_BINARY":         "/var/task/bin/tofu",
			"CODEBUILD_PROJECT":        ref(tpl.id(t, def+"TaskBuildProject/Resource")),
			"LOG_LEVEL":                "INFO",
			"RESULT_SIGNING_SECRET_ID": ref(tpl.id(t, def+"ResultSigningKey/Resource")),
			"TERRAFORM_ROLE_ARN":       getAtt(tpl.id(t, def+"TerraformRole/Resource"), "Arn"),
		}},
	} {
		t.Run(fn.name, func(t *testing.T) {
			p := tpl.res(t, def+fn.name+"/Resource").Properties
			require.Equal(t, "provided.al2023", p["Runtime"])
			require.Equal(t, []any{"arm64"}, p["Architectures"])
			require.Equal(t, "bootstrap", p["Handler"])
			require.Equal(t, fn.timeout, p["Timeout"])
			require.Equal(t, fn.memory, p["MemorySize"])
			require.Equal(t, "Allow", p["RecursiveLoop"])
			require.Equal(t, getAtt(tpl.id(t, def+fn.role+"/Resource"), "Arn"), p["Role"])
			require.Equal(t, map[string]any{
				"SubnetIds":        private,
				"SecurityGroupIds": []any{getAtt(tpl.id(t, def+fn.sg+"/Resource"), "GroupId")},
			}, p["VpcConfig"])
			require.Equal(t, map[string]any{"LogFormat": "JSON", "LogGroup": ref(tpl.id(t, def+fn.logs+"/Resource"))}, p["LoggingConfig"])
			require.Equal(t, 90.0, tpl.res(t, def+fn.logs+"/Resource").Properties["RetentionInDays"])
			require.Equal(t, fn.env, p["Environment"].(map[string]any)["Variables"])
		})
	}
	require.Equal(t, map[string]any{"Size": 4096.0}, tpl.res(t, def+"Satisfier/Resource").Properties["EphemeralStorage"])

	// Each function has its own security group, open outbound only.
	for _, sg := range []string{"StateManagerSecurityGroup", "SatisfierSecurityGroup", "QuerySecurityGroup"} {
		p := tpl.res(t, def+sg+"/Resource").Properties
		require.Nil(t, p["SecurityGroupIngress"], sg)
		require.Equal(t, []any{map[string]any{"CidrIp": "0.0.0.0/0", "Description": "Allow all outbound traffic by default", "IpProtocol": "-1"}}, p["SecurityGroupEgress"], sg)
	}
}

func TestDefaultFunctionAssetsAreBuiltForLinuxArm64(t *testing.T) {
	s := synth(t)
	tpl := s.templates["Default"]
	sm := s.assetDir(t, tpl.res(t, def+"StateManager/Resource"))
	sat := s.assetDir(t, tpl.res(t, def+"Satisfier/Resource"))
	require.NotEqual(t, sm, sat)
	for _, bin := range []string{filepath.Join(sm, "bootstrap"), filepath.Join(sat, "bootstrap")} {
		f, err := elf.Open(bin)
		require.NoError(t, err, bin)
		require.Equal(t, elf.EM_AARCH64, f.Machine, bin)
		require.Equal(t, elf.ELFOSABI_NONE, f.OSABI, bin)
		_, err = f.DynamicSymbols()
		require.Error(t, err, "%s must be statically linked (CGO_ENABLED=0)", bin)
		require.NoError(t, f.Close())
		st, err := os.Stat(bin)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o755), st.Mode().Perm()&0o755, bin)
	}
	entries, err := os.ReadDir(sm)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the state manager's asset is its bootstrap only")
	tofu, err := os.ReadFile(filepath.Join(sat, "bin", "tofu"))
	require.NoError(t, err)
	require.Equal(t, s.stub, tofu, "the satisfier's asset carries the Terraform binary at bin/tofu")
}

func TestDefaultEventSourceMappings(t *testing.T) {
	tpl := synth(t).templates["Default"]
	for _, m := range []struct {
		function, queue    string
		batch, concurrency float64
	}{
		{"StateManager", "EventQueue", 10, 10},
		{"StateManager", "ApprovalQueue", 10, 10},
		{"StateManager", "IntakeQueue", 10, 10},
		{"Satisfier", "TaskQueue", 1, 20},
	} {
		require.Equal(t, map[string]any{
			"FunctionName":          ref(tpl.id(t, def+m.function+"/Resource")),
			"EventSourceArn":        getAtt(tpl.id(t, def+m.queue+"/Resource"), "Arn"),
			"BatchSize":             m.batch,
			"FunctionResponseTypes": []any{"ReportBatchItemFailures"},
			"ScalingConfig":         map[string]any{"MaximumConcurrency": m.concurrency},
		}, tpl.res(t, def+m.function+"/"+m.queue+"/Resource").Properties, m.queue)
	}
}

func TestDefaultQueues(t *testing.T) {
	tpl := synth(t).templates["Default"]
	dlq := func(name string) map[string]any {
		return map[string]any{"deadLetterTargetArn": getAtt(tpl.id(t, def+name+"/Resource"), "Arn")}
	}
	eventDLQ, taskDLQ, intakeDLQ := dlq("EventDeadLetterQueue"), dlq("TaskDeadLetterQueue"), dlq("IntakeDeadLetterQueue")
	intakeDLQ["maxReceiveCount"] = float64(deployed.EventQueueMaxReceiveCount)
	// The tests run the functions with these (constructs/deployed): the template must agree.
	eventDLQ["maxReceiveCount"] = float64(deployed.EventQueueMaxReceiveCount)
	taskDLQ["maxReceiveCount"] = float64(deployed.TaskQueueMaxReceiveCount)
	require.Equal(t, map[string]any{
		"FifoQueue":                 true,
		"ContentBasedDeduplication": true,
		"DeduplicationScope":        "messageGroup",
		"FifoThroughputLimit":       "perMessageGroupId",
		"SqsManagedSseEnabled":      true,
		"MessageRetentionPeriod":    1209600.0,
		"VisibilityTimeout":         360.0, // 6 × the state manager's 60 s
		"RedrivePolicy":             eventDLQ,
	}, tpl.res(t, def+"EventQueue/Resource").Properties)
	require.Equal(t, map[string]any{
		"FifoQueue": true, "SqsManagedSseEnabled": true, "MessageRetentionPeriod": 1209600.0,
	}, tpl.res(t, def+"EventDeadLetterQueue/Resource").Properties)
	require.Equal(t, map[string]any{
		"SqsManagedSseEnabled":   true,
		"MessageRetentionPeriod": 1209600.0,
		"VisibilityTimeout":      5400.0, // 6 × the satisfier's 900 s
		"RedrivePolicy":          taskDLQ,
	}, tpl.res(t, def+"TaskQueue/Resource").Properties)
	require.Equal(t, map[string]any{"SqsManagedSseEnabled": true, "MessageRetentionPeriod": 1209600.0},
		tpl.res(t, def+"TaskDeadLetterQueue/Resource").Properties)
	// The intake: standard (CloudSeam's publishers send no group id nor deduplication id), so no
	// deduplication by content; the state manager forwards each message to the event queue.
	require.Equal(t, map[string]any{
		"SqsManagedSseEnabled":   true,
		"MessageRetentionPeriod": 1209600.0,
		"VisibilityTimeout":      360.0, // 6 × the state manager's 60 s
		"RedrivePolicy":          intakeDLQ,
	}, tpl.res(t, def+"IntakeQueue/Resource").Properties)
	require.Equal(t, map[string]any{"SqsManagedSseEnabled": true, "MessageRetentionPeriod": 1209600.0},
		tpl.res(t, def+"IntakeDeadLetterQueue/Resource").Properties)

	// Every queue refuses requests without TLS.
	for _, q := range []string{"EventQueue", "EventDeadLetterQueue", "TaskQueue", "TaskDeadLetterQueue", "IntakeQueue", "IntakeDeadLetterQueue"} {
		p := tpl.res(t, def+q+"/Policy/Resource").Properties
		qid := tpl.id(t, def+q+"/Resource")
		require.Equal(t, []any{ref(qid)}, p["Queues"], q)
		require.Contains(t, p["PolicyDocument"].(map[string]any)["Statement"], map[string]any{
			"Action": "sqs:*", "Effect": "Deny", "Principal": map[string]any{"AWS": "*"},
			"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
			"Resource":  getAtt(qid, "Arn"),
		}, q)
	}
}

func TestDefaultBucket(t *testing.T) {
	tpl := synth(t).templates["Default"]
	b := tpl.res(t, def+"Bucket/Resource")
	logs := tpl.id(t, def+"AccessLogsBucket/Resource")
	require.Equal(t, "Retain", b.DeletionPolicy)
	p := b.Properties
	require.Equal(t, map[string]any{"ServerSideEncryptionConfiguration": []any{map[string]any{
		"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"}}}}, p["BucketEncryption"])
	require.Equal(t, map[string]any{"Status": "Enabled"}, p["VersioningConfiguration"])
	require.Equal(t, map[string]any{"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true,
		"RestrictPublicBuckets": true}, p["PublicAccessBlockConfiguration"])
	require.Equal(t, map[string]any{"DestinationBucketName": ref(logs), "LogFilePrefix": "stackseam-bucket/"}, p["LoggingConfiguration"])
	require.Equal(t, map[string]any{"Rules": []any{map[string]any{"ObjectOwnership": "BucketOwnerEnforced"}}}, p["OwnershipControls"])
	require.Equal(t, map[string]any{"Rules": []any{
		map[string]any{"AbortIncompleteMultipartUpload": map[string]any{"DaysAfterInitiation": 7.0}, "Status": "Enabled"},
		// Fences untouched for 30 days (longer than any task message lives) and their old versions go.
		map[string]any{"Id": "ExpireFences", "Prefix": "fences/", "ExpirationInDays": 30.0,
			"NoncurrentVersionExpiration": map[string]any{"NoncurrentDays": 1.0}, "Status": "Enabled"},
		// Saved plans nobody applied go after a week, the versions a delete leaves the next day.
		map[string]any{"Id": "ExpirePlans", "Prefix": "plans/", "ExpirationInDays": 7.0,
			"NoncurrentVersionExpiration": map[string]any{"NoncurrentDays": 1.0}, "Status": "Enabled"},
		map[string]any{"Id": "RemoveExpiredFenceMarkers", "Prefix": "fences/", "ExpiredObjectDeleteMarker": true, "Status": "Enabled"},
	}}, p["LifecycleConfiguration"])

	bid := tpl.id(t, def+"Bucket/Resource")
	require.Contains(t, tpl.res(t, def+"Bucket/Policy/Resource").Properties["PolicyDocument"].(map[string]any)["Statement"], map[string]any{
		"Action": "s3:*", "Effect": "Deny", "Principal": map[string]any{"AWS": "*"},
		"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
		"Resource":  []any{getAtt(bid, "Arn"), join(getAtt(bid, "Arn"), "/*")},
	})
	// Log delivery writes through the bucket policy, only for this bucket's logs.
	require.Contains(t, tpl.res(t, def+"AccessLogsBucket/Policy/Resource").Properties["PolicyDocument"].(map[string]any)["Statement"], map[string]any{
		"Action": "s3:PutObject", "Effect": "Allow", "Principal": map[string]any{"Service": "logging.s3.amazonaws.com"},
		"Condition": map[string]any{"ArnLike": map[string]any{"aws:SourceArn": getAtt(bid, "Arn")},
			"StringEquals": map[string]any{"aws:SourceAccount": ref("AWS::AccountId")}},
		"Resource": join(getAtt(logs, "Arn"), "/stackseam-bucket/*"),
	})
}

func TestDefaultDatabase(t *testing.T) {
	tpl := synth(t).templates["Default"]
	db := tpl.res(t, def+"Database/Resource")
	require.Equal(t, "Snapshot", db.DeletionPolicy)
	p := db.Properties
	require.Equal(t, "postgres", p["Engine"])
	require.Equal(t, "17", p["EngineVersion"])
	require.Equal(t, "db.t4g.micro", p["DBInstanceClass"])
	require.Equal(t, true, p["StorageEncrypted"])
	require.Equal(t, false, p["PubliclyAccessible"])
	require.Equal(t, true, p["DeletionProtection"])
	require.Equal(t, false, p["MultiAZ"])
	require.Equal(t, 7.0, p["BackupRetentionPeriod"])
	require.Equal(t, "stackseam", p["DBName"])
	dbSG := tpl.id(t, def+"DatabaseSecurityGroup/Resource")
	require.Equal(t, []any{getAtt(dbSG, "GroupId")}, p["VPCSecurityGroups"])
	require.Equal(t, map[string]any{"rds.force_ssl": "1"}, tpl.res(t, def+"DatabaseParameters/Resource").Properties["Parameters"])

	// In the private subnets.
	subnets := tpl.Resources[p["DBSubnetGroupName"].(map[string]any)["Ref"].(string)].Properties["SubnetIds"]
	require.Equal(t, []any{ref(tpl.id(t, def+"Vpc/PrivateSubnet1/Subnet")), ref(tpl.id(t, def+"Vpc/PrivateSubnet2/Subnet"))}, subnets)

	// Reachable from the state manager's and the query function's security groups only: two
	// ingress rules, nothing else.
	var ingress []map[string]any
	for _, r := range tpl.ofType("AWS::EC2::SecurityGroupIngress") {
		ingress = append(ingress, r.Properties)
	}
	from := func(description, sg string) map[string]any {
		return map[string]any{
			"Description":           description,
			"GroupId":               getAtt(dbSG, "GroupId"),
			"SourceSecurityGroupId": getAtt(tpl.id(t, def+sg+"/Resource"), "GroupId"),
			"IpProtocol":            "tcp",
			"FromPort":              getAtt(tpl.id(t, def+"Database/Resource"), "Endpoint.Port"),
			"ToPort":                getAtt(tpl.id(t, def+"Database/Resource"), "Endpoint.Port"),
		}
	}
	require.ElementsMatch(t, []map[string]any{
		from("PostgreSQL from the stackseam state manager", "StateManagerSecurityGroup"),
		from("PostgreSQL from the stackseam query function (read-only sessions)", "QuerySecurityGroup"),
	}, ingress)
	require.Nil(t, tpl.res(t, def+"DatabaseSecurityGroup/Resource").Properties["SecurityGroupIngress"])

	// The secret carries dbname and outlives a snapshot-deleted instance.
	secret := tpl.res(t, def+"DatabaseSecret/Resource")
	require.Equal(t, "Retain", secret.DeletionPolicy)
	require.JSONEq(t, `{"username":"stackseam","dbname":"stackseam"}`,
		secret.Properties["GenerateSecretString"].(map[string]any)["SecretStringTemplate"].(string))
}

func TestDefaultAlarms(t *testing.T) {
	tpl := synth(t).templates["Default"]
	queueName := func(q string) []any {
		return []any{map[string]any{"Name": "QueueName", "Value": getAtt(tpl.id(t, def+q+"/Resource"), "QueueName")}}
	}
	for alarm, want := range map[string]map[string]any{
		"EventDeadLetterQueueAlarm": {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
			"Dimensions": queueName("EventDeadLetterQueue"), "Statistic": "Maximum", "Threshold": 1.0},
		"ApprovalDeadLetterQueueAlarm": {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
			"Dimensions": queueName("ApprovalDeadLetterQueue"), "Statistic": "Maximum", "Threshold": 1.0},
		"IntakeDeadLetterQueueAlarm": {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
			"Dimensions": queueName("IntakeDeadLetterQueue"), "Statistic": "Maximum", "Threshold": 1.0},
		"TaskDeadLetterQueueAlarm": {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
			"Dimensions": queueName("TaskDeadLetterQueue"), "Statistic": "Maximum", "Threshold": 1.0},
		"StateManagerErrorsAlarm": {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum", "Threshold": 1.0,
			"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": ref(tpl.id(t, def+"StateManager/Resource"))}}},
		"SatisfierErrorsAlarm": {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum", "Threshold": 1.0,
			"Dimensions": []any{map[string]any{"Name": "FunctionName", "Value": ref(tpl.id(t, def+"Satisfier/Resource"))}}},
		// Oldest message age, in seconds: 15 minutes and 1 hour by default.
		"EventQueueAgeAlarm": {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
			"Dimensions": queueName("EventQueue"), "Statistic": "Maximum", "Threshold": 900.0},
		"TaskQueueAgeAlarm": {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
			"Dimensions": queueName("TaskQueue"), "Statistic": "Maximum", "Threshold": 3600.0},
		"MachineInvalidAlarm": {"Threshold": 1.0, "Metrics": []any{map[string]any{
			"Id": "m1", "Label": "events on a broken or deleted machine file", "ReturnData": true,
			"MetricStat": map[string]any{"Period": 300.0, "Stat": "Sum", "Metric": map[string]any{
				"Namespace": "stackseam", "MetricName": "MachineInvalid",
				"Dimensions": []any{map[string]any{"Name": "Function", "Value": "statemanager"}}}},
		}}},
		// Runs the state manager failed because no result came by their deadline.
		"TasksOverdueAlarm": {"Threshold": 1.0, "Metrics": []any{map[string]any{
			"Id": "m1", "Label": "overdue task runs", "ReturnData": true, "MetricStat": map[string]any{
				"Metric": map[string]any{"Dimensions": []any{map[string]any{"Name": "Function", "Value": "statemanager"}},
					"MetricName": "TasksOverdue", "Namespace": "stackseam"},
				"Period": 300.0, "Stat": "Sum"},
		}}},
		// Metrics Insights over the EMF dimension sets the state manager writes; the Event and
		// Executor values come from the machine files, so the query sums over all of them.
		"FailedTasksAlarm": {"Threshold": 1.0, "Metrics": []any{map[string]any{
			"Id": "expr_1", "Label": "failed tasks", "Period": 300.0, "ReturnData": true,
			"Expression": `SELECT SUM("TaskResults") FROM SCHEMA("stackseam", "Function", "Executor", "Result") WHERE "Function" = 'statemanager' AND "Result" = 'failed'`,
		}}},
		"RejectedEventsAlarm": {"Threshold": 1.0, "Metrics": []any{map[string]any{
			"Id": "expr_1", "Label": "rejected events", "Period": 300.0, "ReturnData": true,
			"Expression": `SELECT SUM("Events") FROM SCHEMA("stackseam", "Function", "Event", "Outcome") WHERE "Function" = 'statemanager' AND "Outcome" = 'rejected'`,
		}}},
	} {
		p := tpl.res(t, def+alarm+"/Resource").Properties
		for k, v := range want {
			require.Equal(t, v, p[k], "%s %s", alarm, k)
		}
		if _, insights := want["Metrics"]; !insights {
			require.Equal(t, 300.0, p["Period"], alarm)
		}
		require.Equal(t, 1.0, p["EvaluationPeriods"], alarm)
		require.Equal(t, "GreaterThanOrEqualToThreshold", p["ComparisonOperator"], alarm)
		require.Equal(t, "notBreaching", p["TreatMissingData"], alarm)
		require.Nil(t, p["AlarmActions"], "no AlarmActions given")
	}
}

func TestDefaultNotificationTopic(t *testing.T) {
	tpl := synth(t).templates["Default"]
	// Encrypted with the AWS managed key, which needs no key policy or grant.
	require.Equal(t, map[string]any{
		"KmsMasterKeyId": join("arn:", ref("AWS::Partition"), ":kms:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":alias/aws/sns"),
	}, tpl.res(t, def+"NotificationTopic/Resource").Properties)
	topic := tpl.id(t, def+"NotificationTopic/Resource")
	p := tpl.res(t, def+"NotificationTopic/Policy/Resource").Properties
	require.Equal(t, []any{ref(topic)}, p["Topics"])
	require.Equal(t, []any{map[string]any{
		"Sid": "AllowPublishThroughSSLOnly", "Action": "sns:Publish", "Effect": "Deny", "Principal": "*",
		"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
		"Resource":  ref(topic),
	}}, p["PolicyDocument"].(map[string]any)["Statement"])
}

// An EventBridge rule invokes the state manager every minute with {"stackseam":"tick"}, which
// runs its sweep (queue.ServeWithTick); a failed tick is not retried.
func TestDefaultSweep(t *testing.T) {
	tpl := synth(t).templates["Default"]
	sm := tpl.id(t, def+"StateManager/Resource")
	rule := tpl.id(t, def+"SweepSchedule/Resource")
	require.Equal(t, map[string]any{
		"Description":        "stackseam: runs the state manager's sweep (time-to-live events, outbox messages left behind)",
		"ScheduleExpression": "rate(1 minute)",
		"State":              "ENABLED",
		"Targets":            []any{map[string]any{"Id": "Target0", "Arn": getAtt(sm, "Arn"), "Input": `{"stackseam":"tick"}`}},
	}, tpl.Resources[rule].Properties)
	for _, perm := range tpl.ofType("AWS::Lambda::Permission") {
		require.Equal(t, map[string]any{
			"Action": "lambda:InvokeFunction", "FunctionName": getAtt(sm, "Arn"),
			"Principal": "events.amazonaws.com", "SourceArn": getAtt(rule, "Arn"),
		}, perm.Properties)
	}
	require.Equal(t, map[string]any{
		"FunctionName": ref(sm), "Qualifier": "$LATEST", "MaximumRetryAttempts": 0.0, "MaximumEventAgeInSeconds": 60.0,
	}, tpl.res(t, def+"StateManager/EventInvokeConfig/Resource").Properties)
}

func TestDefaultStateManagerPolicy(t *testing.T) {
	tpl := synth(t).templates["Default"]
	bucket := getAtt(tpl.id(t, def+"Bucket/Resource"), "Arn")
	list := allow("ListMachines", "s3:ListBucket", bucket)
	list["Condition"] = map[string]any{"StringLike": map[string]any{"s3:prefix": "machines/*"}}
	require.ElementsMatch(t, normalize(t, append(stateManagerQueueStatements(tpl, t, def),
		allow("PublishNotifications", "sns:Publish", ref(tpl.id(t, def+"NotificationTopic/Resource"))),
		list,
		allow("ReadMachines", "s3:GetObject", join(bucket, "/machines/*")),
		allow("WriteFences", []string{"s3:GetObject", "s3:PutObject"}, join(bucket, "/fences/*")),
		allow("", []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
			ref(tpl.id(t, def+"DatabaseSecret/Attachment/Resource"))),
		allow("FindOwnEventSourceMapping", "lambda:ListEventSourceMappings", "*"),
		allow("PauseOwnEventSourceMapping", "lambda:UpdateEventSourceMapping", []any{mappingArn(tpl.id(t, def+"StateManager/EventQueue/Resource")),
			mappingArn(tpl.id(t, def+"StateManager/ApprovalQueue/Resource")),
			mappingArn(tpl.id(t, def+"StateManager/IntakeQueue/Resource"))}),
		readSigningKey(tpl, t, def),
	)), tpl.statementsOf(t, def+"StateManagerRole/Resource"))
}

// mappingArn is the ARN of the event-source mapping with logical id id.
func mappingArn(id string) any {
	return join("arn:", ref("AWS::Partition"), ":lambda:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":event-source-mapping:", ref(id))
}

func TestDefaultSatisfierPolicy(t *testing.T) {
	tpl := synth(t).templates["Default"]
	bucket := getAtt(tpl.id(t, def+"Bucket/Resource"), "Arn")
	objects := func(suffix string) any { return join(bucket, suffix) }
	require.ElementsMatch(t, normalize(t, append(satisfierStatements(tpl, t, def, bucket, objects),
		readSigningKey(tpl, t, def),
		allow("HandOverLongTasks", []string{"codebuild:StartBuild", "codebuild:BatchGetBuilds"}, getAtt(tpl.id(t, def+"TaskBuildProject/Resource"), "Arn")),
		allow("AssumeTerraformRole", "sts:AssumeRole", getAtt(tpl.id(t, def+"TerraformRole/Resource"), "Arn")),
	)), tpl.statementsOf(t, def+"SatisfierRole/Resource"))
}

// The CodeBuild project of long tasks: in the VPC with its own outbound-only security group,
// encrypted with its own rotating key, logging to a log group with the functions' retention,
// running the satisfier's own bundle with one command, on arm64 like the function.
func TestDefaultTaskBuild(t *testing.T) {
	tpl := synth(t).templates["Default"]
	p := tpl.res(t, def+"TaskBuildProject/Resource").Properties
	private := []any{ref(tpl.id(t, def+"Vpc/PrivateSubnet1/Subnet")), ref(tpl.id(t, def+"Vpc/PrivateSubnet2/Subnet"))}
	require.Equal(t, map[string]any{"VpcId": ref(tpl.id(t, def+"Vpc/Resource")), "Subnets": private,
		"SecurityGroupIds": []any{getAtt(tpl.id(t, def+"TaskBuildSecurityGroup/Resource"), "GroupId")}}, p["VpcConfig"])
	require.Equal(t, getAtt(tpl.id(t, def+"TaskBuildKey/Resource"), "Arn"), p["EncryptionKey"])
	require.Equal(t, true, tpl.res(t, def+"TaskBuildKey/Resource").Properties["EnableKeyRotation"])
	require.Equal(t, getAtt(tpl.id(t, def+"TaskBuildRole/Resource"), "Arn"), p["ServiceRole"])
	require.Equal(t, 480.0, p["TimeoutInMinutes"], "8 hours; each build gets its own")
	require.Equal(t, 60.0, p["QueuedTimeoutInMinutes"])
	logs := p["LogsConfig"].(map[string]any)["CloudWatchLogs"].(map[string]any)
	require.Equal(t, ref(tpl.id(t, def+"TaskBuildLogs/Resource")), logs["GroupName"])
	require.Equal(t, 90.0, tpl.res(t, def+"TaskBuildLogs/Resource").Properties["RetentionInDays"])
	env := p["Environment"].(map[string]any)
	require.Equal(t, "ARM_CONTAINER", env["Type"])
	require.Equal(t, "BUILD_GENERAL1_SMALL", env["ComputeType"])
	require.Equal(t, false, env["PrivilegedMode"])
	vars := map[string]any{}
	for _, v := range env["EnvironmentVariables"].([]any) {
		v := v.(map[string]any)
		vars[v["Name"].(string)] = v["Value"]
	}
	require.Equal(t, map[string]any{
		"EVENT_QUEUE_URL":          ref(tpl.id(t, def+"EventQueue/Resource")),
		"BUCKET":                   ref(tpl.id(t, def+"Bucket/Resource")),
		"RESULT_SIGNING_SECRET_ID": ref(tpl.id(t, def+"ResultSigningKey/Resource")),
		"TERRAFORM_BINARY":         "bin/tofu",
		"LOG_LEVEL":                "INFO",
		"TERRAFORM_ROLE_ARN":       getAtt(tpl.id(t, def+"TerraformRole/Resource"), "Arn"),
	}, vars)
	source := p["Source"].(map[string]any)
	require.Equal(t, "S3", source["Type"])
	require.Contains(t, source["BuildSpec"], "./bootstrap --one-task")
	key, _ := tpl.res(t, def+"Satisfier/Resource").Properties["Code"].(map[string]any)["S3Key"].(string)
	require.NotEmpty(t, key)
	require.Contains(t, fmt.Sprint(source["Location"]), key, "the build runs the satisfier's own bundle")
	// A build that ended without succeeding reaches the task queue, where the satisfier fails its
	// run unless it reported.
	rule := tpl.res(t, def+"TaskBuildEnded/Resource").Properties
	require.Equal(t, map[string]any{
		"source": []any{"aws.codebuild"}, "detail-type": []any{"CodeBuild Build State Change"},
		"detail": map[string]any{"project-name": []any{ref(tpl.id(t, def+"TaskBuildProject/Resource"))},
			"build-status": []any{"FAILED", "FAULT", "STOPPED", "TIMED_OUT"}},
	}, rule["EventPattern"])
	targets := rule["Targets"].([]any)
	require.Len(t, targets, 1)
	require.Equal(t, getAtt(tpl.id(t, def+"TaskQueue/Resource"), "Arn"), targets[0].(map[string]any)["Arn"])
	sg := tpl.res(t, def+"TaskBuildSecurityGroup/Resource").Properties
	require.Nil(t, sg["SecurityGroupIngress"])

	bucket := getAtt(tpl.id(t, def+"Bucket/Resource"), "Arn")
	statements := tpl.statementsOf(t, def+"TaskBuildRole/Resource")
	for _, want := range normalize(t, []any{
		allow("SendResults", "sqs:SendMessage", getAtt(tpl.id(t, def+"EventQueue/Resource"), "Arn")),
		allow("WriteLogs", logActions, getAtt(tpl.id(t, def+"TaskBuildLogs/Resource"), "Arn")),
		allow("WriteStateAndLogs", "s3:PutObject", []any{join(bucket, "/*/*/*"), join(bucket, "/logs/*"), join(bucket, "/handovers/*.claim")}),
		allow("ReleaseStateLocks", "s3:DeleteObject", join(bucket, "/*.tflock")),
		map[string]any{"Sid": "NeverWriteMachinesOrFences", "Effect": "Deny", "Action": neverWriteActions,
			"Resource": []any{join(bucket, "/machines/*"), join(bucket, "/fences/*")}},
		map[string]any{"Sid": "NeverChangeTheBucket", "Effect": "Deny", "Action": bucketChangeActions, "Resource": bucket},
		readSigningKey(tpl, t, def),
		allow("AssumeTerraformRole", "sts:AssumeRole", getAtt(tpl.id(t, def+"TerraformRole/Resource"), "Arn")),
	}).([]any) {
		require.Contains(t, statements, want)
	}
	for _, st := range statements {
		st := st.(map[string]any)
		require.NotEqual(t, "sqs:ReceiveMessage", st["Action"], "a build consumes no queue")
		require.NotContains(t, asList(st["Action"]), "lambda:InvokeFunction", "lambda tasks never run in a build")
	}
}

// stateManagerQueueStatements are the statements of the state manager's role (of the construct
// whose paths start with prefix) for its queues, logs and VPC: the same in every configuration.
func stateManagerQueueStatements(tpl *template, t *testing.T, prefix string) []any {
	arn := func(name string) any { return getAtt(tpl.id(t, prefix+name+"/Resource"), "Arn") }
	return []any{
		allow("ConsumeQueue", consumeActions, arn("EventQueue")),
		allow("ConsumeApprovals", consumeActions, arn("ApprovalQueue")),
		allow("ConsumeIntake", consumeActions, arn("IntakeQueue")),
		allow("WriteLogs", logActions, arn("StateManagerLogs")),
		allow("ConnectToVpc", vpcActions, "*"),
		allow("SendTasks", "sqs:SendMessage", arn("TaskQueue")),
		allow("SendEvents", "sqs:SendMessage", arn("EventQueue")),
		allow("DeadLetterEvents", "sqs:SendMessage", []any{arn("EventDeadLetterQueue"), arn("ApprovalDeadLetterQueue")}),
		allow("PeekTaskDeadLetters", "sqs:ReceiveMessage", arn("TaskDeadLetterQueue")),
	}
}

// satisfierStatements are the statements of the satisfier's role (of the construct whose paths
// start with prefix) for its queues, logs, VPC and the application's bucket (whose ARN is
// bucket, and objects(suffix) the ARN of the objects under suffix): the same in every
// configuration.
func satisfierStatements(tpl *template, t *testing.T, prefix string, bucket any, objects func(suffix string) any) []any {
	arn := func(name string) any { return getAtt(tpl.id(t, prefix+name+"/Resource"), "Arn") }
	return []any{
		allow("ConsumeQueue", consumeActions, arn("TaskQueue")),
		allow("WriteLogs", logActions, arn("SatisfierLogs")),
		allow("ConnectToVpc", vpcActions, "*"),
		allow("SendResults", "sqs:SendMessage", arn("EventQueue")),
		allow("ListSourcesAndState", "s3:ListBucket", bucket),
		allow("ReadSourcesStateAndFences", "s3:GetObject", objects("/*")),
		allow("WriteStateAndLogs", "s3:PutObject", []any{objects("/*/*/*"), objects("/logs/*"), objects("/handovers/*")}),
		allow("ReleaseStateLocks", "s3:DeleteObject", objects("/*.tflock")),
		allow("RemoveUsedPlans", "s3:DeleteObject", objects("/plans/*")),
		map[string]any{"Sid": "NeverWriteMachinesOrFences", "Effect": "Deny", "Action": neverWriteActions,
			"Resource": []any{objects("/machines/*"), objects("/fences/*")}},
		map[string]any{"Sid": "NeverChangeTheBucket", "Effect": "Deny", "Action": bucketChangeActions, "Resource": bucket},
	}
}

// readSigningKey is the statement that lets a function read the result signing key: the two
// functions' roles have it, and nothing else (GrantPublishEvents gives no access to the key).
func readSigningKey(tpl *template, t *testing.T, prefix string) any {
	return allow("", []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, ref(tpl.id(t, prefix+"ResultSigningKey/Resource")))
}

// No statement of the construct's roles, in either stack, has a wildcard action, and "*" as a
// resource appears only for the VPC networking actions EC2 cannot scope and for listing event
// source mappings (read-only; Lambda cannot scope it).
func TestNoWildcardsBeyondVpcNetworking(t *testing.T) {
	s := synth(t)
	vpcOnly := map[string]bool{"lambda:ListEventSourceMappings": true}
	for _, a := range append(vpcActions, "ec2:DescribeDhcpOptions", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs") { // CodeBuild's VPC policy
		vpcOnly[a] = true
	}
	checked := 0
	for stack, tpl := range s.templates {
		for id, p := range tpl.ofType("AWS::IAM::Policy") {
			path, _ := p.Metadata["aws:cdk:path"].(string)
			if strings.Contains(path, "Custom::CDKBucketDeployment") {
				continue // CDK's own deploy-time upload handler (suppressed with a reason)
			}
			for _, st := range p.Properties["PolicyDocument"].(map[string]any)["Statement"].([]any) {
				st := st.(map[string]any)
				actions := asList(st["Action"])
				for _, a := range actions {
					require.NotContains(t, a, "*", "%s %s: wildcard action", stack, id)
				}
				for _, r := range asList(st["Resource"]) {
					if r == "*" {
						for _, a := range actions {
							require.True(t, vpcOnly[a.(string)], "%s %s: %s on every resource", stack, id, a)
						}
					}
				}
				checked++
			}
		}
	}
	require.Greater(t, checked, 20)
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

// The cdk-nag AwsSolutions pack ran during synthesis over both stacks and found nothing that
// is not suppressed with a reason.
func TestCdkNagAwsSolutions(t *testing.T) {
	s := synth(t)
	for _, stack := range stacks {
		for _, m := range s.messages[stack.name] {
			require.Failf(t, "cdk-nag or synthesis finding", "%s %s %s: %s", stack.name, m.Level, m.Path, m.Text)
		}
	}
	report, err := os.ReadFile(filepath.Join(s.outdir, "AwsSolutions-Default-NagReport.csv"))
	require.NoError(t, err, "cdk-nag did not run")
	require.Contains(t, string(report), `"AwsSolutions-IAM5","Default/Stackseam/SatisfierRole/DefaultPolicy/Resource","Suppressed"`)
	for _, line := range strings.Split(string(report), "\n")[1:] {
		require.NotContains(t, line, `"Non-Compliant"`)
	}
}
