package stackseam

import (
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"
)

func (s *Stackseam) logGroup(id string, p resolved) awslogs.LogGroup {
	return awslogs.NewLogGroup(s.Construct, jsii.String(id), &awslogs.LogGroupProps{Retention: p.LogRetention})
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

	// The queues the state manager consumes. Local mode polls each URL; in Lambda the ARN
	// recognises its records, and its mapping reads it with the same batch and concurrency limits.
	// The intake's messages are only forwarded into the event queue (each one SendMessage); its
	// mapping is paused with the others, as a forward during a database outage would only wait in
	// the event queue.
	consumed := []struct {
		id, env string
		queue   awssqs.Queue
	}{
		{"EventQueue", "EVENT_QUEUE", s.EventQueue},
		{"ApprovalQueue", "APPROVAL_QUEUE", s.ApprovalQueue},
		{"IntakeQueue", "INTAKE_QUEUE", s.IntakeQueue},
	}
	smEnv := env("MACHINES_PREFIX", MachinesPrefix, "DATABASE_SSLMODE", "verify-full", "LOG_LEVEL", p.LogLevel)
	for _, q := range consumed {
		smEnv[q.env+"_URL"] = q.queue.QueueUrl()
		smEnv[q.env+"_ARN"] = q.queue.QueueArn()
	}
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
	mappings := make([]awslambda.EventSourceMapping, len(consumed))
	for i, q := range consumed {
		mappings[i] = s.StateManager.AddEventSourceMapping(jsii.String(q.id), &awslambda.EventSourceMappingOptions{
			EventSourceArn:          q.queue.QueueArn(),
			BatchSize:               jsii.Number(float64(p.StateManagerBatchSize)),
			ReportBatchItemFailures: jsii.Bool(true),
			MaxConcurrency:          jsii.Number(float64(p.StateManagerMaxConcurrency)),
		})
	}
	s.StateManagerRole.AddToPrincipalPolicy(statement("ConsumeIntake", consumeActions, s.IntakeQueue.QueueArn()))
	s.pauseOwnMapping(mappings...)

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
	satCode := s.functionCode(p, "./functions/satisfier", tf)
	s.taskBuild(p, satCode, tf)
	satEnv["CODEBUILD_PROJECT"] = s.TaskBuildProject.ProjectName()
	satEnv["TERRAFORM_ROLE_ARN"] = s.TerraformRole.RoleArn() // made by taskBuild: both assume it
	s.Satisfier = common("Satisfier", "stackseam satisfier: runs Terraform and Lambda tasks and reports their results",
		s.SatisfierRole, s.SatisfierSecurityGroup, s.SatisfierLogGroup,
		satCode, p.SatisfierTimeout, p.SatisfierMemorySize, satEnv)
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

	// The read path: invoked by operators (GrantRead), never by a queue or a schedule.
	queryEnv := env("DATABASE_SSLMODE", "verify-full", "LOG_LEVEL", p.LogLevel)
	queryEnv["DATABASE_SECRET_ID"] = s.DatabaseSecret.SecretArn()
	s.QueryFunction = common("Query", "stackseam query function: answers operators' read-only queries (stackseam --stack-name, the console)",
		s.QueryRole, s.QuerySecurityGroup, s.QueryLogGroup,
		s.functionCode(p, "./functions/query", nil), defaultQueryTimeout, defaultQueryMemory, queryEnv)
	if p.QueryReservedConcurrency > 0 {
		s.QueryFunction.Node().DefaultChild().(awslambda.CfnFunction).SetReservedConcurrentExecutions(jsii.Number(float64(p.QueryReservedConcurrency)))
	}
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

func seconds(d time.Duration) awscdk.Duration {
	return awscdk.Duration_Seconds(jsii.Number(d.Seconds()))
}
