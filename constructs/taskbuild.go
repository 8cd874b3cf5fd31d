package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscodebuild"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// HandoversPrefix is where the satisfier keeps the hand-over record of each CodeBuild-run task
// (the task message and the build's id) and where the build claims its run.
const HandoversPrefix = "handovers/"

// taskBuildMaxMinutes is the project's own timeout, CodeBuild's longest (CloudFormation accepts
// no more): the longest build a hand-over asks for (message.BuildTimeout); each build is
// started with its own.
const taskBuildMaxMinutes = 8 * 60

// taskBuild creates the CodeBuild project that runs tasks longer than Lambda allows (README.md,
// "The task satisfier"). Its source is the satisfier's own bundle — the bootstrap binary and the
// OpenTofu binary built from OpenTofuVersion, the same zip the function runs — and its one build
// command runs that binary in its one-task mode. No image of ours and no download: the build
// image only has to run a static linux/arm64 binary.
func (s *Stackseam) taskBuild(p resolved, code awslambda.Code, tf *terraformBinary) {
	s.TaskBuildSecurityGroup = awsec2.NewSecurityGroup(s.Construct, jsii.String("TaskBuildSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.Vpc,
		Description:      jsii.String("stackseam task builds (CodeBuild): outbound only"),
		AllowAllOutbound: jsii.Bool(true),
	})
	s.TaskBuildLogGroup = s.logGroup("TaskBuildLogs", p)
	s.TaskBuildKey = awskms.NewKey(s.Construct, jsii.String("TaskBuildKey"), &awskms.KeyProps{
		Description:       jsii.String("stackseam task builds: encrypts the builds' artifacts and caches"),
		EnableKeyRotation: jsii.Bool(true),
	})
	s.TaskBuildRole = awsiam.NewRole(s.Construct, jsii.String("TaskBuildRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("codebuild.amazonaws.com"), nil),
		Description: jsii.String("stackseam task builds: run one Terraform task each, send its result, keep Terraform state and logs/"),
	})
	s.terraformRole()
	// The function's asset, bound once: binding again gives the same S3 object.
	loc := code.Bind(s.Construct).S3Location
	s.taskBuildPolicy(loc)
	source := awscodebuild.Source_S3(&awscodebuild.S3SourceProps{
		Bucket: awss3.Bucket_FromBucketName(s.Construct, jsii.String("TaskBuildSourceBucket"), loc.BucketName),
		Path:   loc.ObjectKey,
	})
	plain := func(v *string) *awscodebuild.BuildEnvironmentVariable {
		return &awscodebuild.BuildEnvironmentVariable{Value: v, Type: awscodebuild.BuildEnvironmentVariableType_PLAINTEXT}
	}
	s.TaskBuildProject = awscodebuild.NewProject(s.Construct, jsii.String("TaskBuildProject"), &awscodebuild.ProjectProps{
		Description: jsii.String("stackseam: runs one task that needs more than Lambda's 15 minutes (bootstrap --one-task)"),
		Source:      source,
		// CodeBuild's own mechanism for the one command; the binary does everything else.
		BuildSpec: awscodebuild.BuildSpec_FromObject(&map[string]any{
			"version": "0.2",
			"phases":  map[string]any{"build": map[string]any{"commands": []string{"./" + bootstrapName + " --one-task"}}},
		}),
		Environment: &awscodebuild.BuildEnvironment{
			BuildImage:  awscodebuild.LinuxArmBuildImage_AMAZON_LINUX_2023_STANDARD_3_0(),
			ComputeType: p.TaskBuildComputeType,
		},
		EnvironmentVariables: &map[string]*awscodebuild.BuildEnvironmentVariable{
			"EVENT_QUEUE_URL":          plain(s.EventQueue.QueueUrl()),
			"BUCKET":                   plain(s.Bucket.BucketName()),
			"RESULT_SIGNING_SECRET_ID": plain(s.ResultSigningKey.SecretArn()),
			// Relative: the satisfier resolves it against the build's source dir.
			"TERRAFORM_BINARY": plain(jsii.String(terraformDir + "/" + tf.name())),
			"LOG_LEVEL":        plain(jsii.String(p.LogLevel)),
			// Terraform runs with it, scoped to the run's machine.
			"TERRAFORM_ROLE_ARN": plain(s.TerraformRole.RoleArn()),
		},
		// Every statement of the role is written out in taskBuildPolicy; CodeBuild's own grants
		// (the source bucket's s3:GetObject*, s3:List*) would be wider.
		Role:                        s.TaskBuildRole.WithoutPolicyUpdates(nil),
		GrantReportGroupPermissions: jsii.Bool(false), // the builds publish no test reports
		Vpc:                         s.Vpc,
		SubnetSelection:             p.VpcSubnets,
		SecurityGroups:              &[]awsec2.ISecurityGroup{s.TaskBuildSecurityGroup},
		EncryptionKey:               s.TaskBuildKey,
		Logging: &awscodebuild.LoggingOptions{CloudWatch: &awscodebuild.CloudWatchLoggingOptions{
			LogGroup: s.TaskBuildLogGroup,
		}},
		Timeout:       awscdk.Duration_Minutes(jsii.Number(taskBuildMaxMinutes)),
		QueuedTimeout: awscdk.Duration_Hours(jsii.Number(1)), // message.BuildQueuedTimeout: the deadlines allow for it
	})

	// CodeBuild's VPC policy (ENI management), which the project creates but cannot attach to a
	// role it may not change.
	vpcPolicy, ok := s.TaskBuildProject.Node().TryFindChild(jsii.String("PolicyDocument")).(awsiam.Policy)
	if !ok {
		panic("stackseam: the CodeBuild project made no VPC policy (PolicyDocument) to attach")
	}
	vpcPolicy.AttachToRole(s.TaskBuildRole)
	cdknag.NagSuppressions_AddResourceSuppressions(vpcPolicy, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String("CodeBuild's VPC networking actions (ENI management and EC2 descriptions, the CodeBuild user guide's VPC policy) do not support resource-level scoping."),
		AppliesTo: &[]interface{}{"Resource::*"},
	}}, jsii.Bool(false))

	s.taskBuildEvents()

	// The satisfier starts one build per run and looks it up again on a redelivery.
	s.SatisfierRole.AddToPrincipalPolicy(statement("HandOverLongTasks", []string{"codebuild:StartBuild", "codebuild:BatchGetBuilds"},
		s.TaskBuildProject.ProjectArn()))
	cdknag.NagSuppressions_AddResourceSuppressions(s.TaskBuildRole, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-IAM5"),
		Reason: jsii.String("CodeBuild's VPC networking actions (ENI management, described in the CodeBuild user guide's VPC policy) do not support resource-level scoping; the log group's streams are named per build. " +
			"Terraform sources (chosen by the machine files) live under keys only known at run time, so reading spans the bucket; writes are limited to the state layout <machine>/<stackId>/<key>, logs/ and the runs' claims under handovers/, deletes to *.tflock lock files and used plans under plans/, and machines/ and fences/ are explicitly denied."),
		AppliesTo: &[]interface{}{"Resource::*",
			cdknag.RegexAppliesTo{Regex: jsii.String("/^Resource::.*\\/(\\*|\\*\\/\\*\\/\\*|\\*\\.tflock|logs\\/\\*|handovers\\/\\*\\.claim|plans\\/\\*|machines\\/\\*|fences\\/\\*)$/")},
			cdknag.RegexAppliesTo{Regex: jsii.String("/^Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface\\/\\*$/")},
		},
	}}, jsii.Bool(true))
}

// taskBuildPolicy is what a build needs: the Terraform statements the satisfier has (a task runs
// the same Terraform with the same limits), sending its one result, reading the signing key, and
// claiming its run.
func (s *Stackseam) taskBuildPolicy(source *awss3.Location) {
	r := s.TaskBuildRole
	stack := awscdk.Stack_Of(s.Construct)
	eni := statement("AttachToVpc", []string{"ec2:CreateNetworkInterfacePermission"}, stack.FormatArn(&awscdk.ArnComponents{
		Service: jsii.String("ec2"), Resource: jsii.String("network-interface"), ResourceName: jsii.String("*"),
	}))
	eni.AddCondition(jsii.String("StringEquals"), map[string]any{"ec2:AuthorizedService": "codebuild.amazonaws.com"})
	r.AddToPrincipalPolicy(eni)
	r.AddToPrincipalPolicy(statement("WriteLogs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, s.TaskBuildLogGroup.LogGroupArn()))
	// The build's source: the satisfier's asset, one object of the CDK assets bucket.
	assets := stack.FormatArn(&awscdk.ArnComponents{Service: jsii.String("s3"), Region: jsii.String(""), Account: jsii.String(""),
		Resource: source.BucketName})
	r.AddToPrincipalPolicy(statement("ReadSource", []string{"s3:GetObject", "s3:GetObjectVersion"},
		awscdk.Fn_Join(jsii.String(""), &[]*string{assets, jsii.String("/"), source.ObjectKey})))
	r.AddToPrincipalPolicy(statement("LocateSource", []string{"s3:GetBucketAcl", "s3:GetBucketLocation"}, assets))
	r.AddToPrincipalPolicy(statement("SendResults", []string{"sqs:SendMessage"}, s.EventQueue.QueueArn()))
	s.terraformStatements(r, s.Bucket.ArnForObjects(jsii.String(HandoversPrefix+"*.claim")))
	s.ResultSigningKey.GrantRead(r, nil)
}

// taskBuildEvents sends CodeBuild's event of every task build that ends without succeeding to
// the task queue: the one-task runner exits 0 once it has published its run's result, so a build
// that failed, faulted, was stopped or timed out may have died without a word (killed, its host
// lost), and the satisfier fails such a run itself and releases the state lock it held.
func (s *Stackseam) taskBuildEvents() {
	s.TaskBuildEndRule = awsevents.NewRule(s.Construct, jsii.String("TaskBuildEnded"), &awsevents.RuleProps{
		Description: jsii.String("stackseam: a task build ended without succeeding; the satisfier fails its run unless it reported"),
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings("aws.codebuild"),
			DetailType: jsii.Strings("CodeBuild Build State Change"),
			Detail: &map[string]any{
				"project-name": []any{s.TaskBuildProject.ProjectName()},
				"build-status": []any{"FAILED", "FAULT", "STOPPED", "TIMED_OUT"},
			},
		},
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewSqsQueue(s.TaskQueue, nil)},
	})
}
