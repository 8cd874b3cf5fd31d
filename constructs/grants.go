package stackseam

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// GrantPublishEvents lets grantee send events to the event queue and to the intake queue
// (sqs:SendMessage, plus GetQueueUrl and GetQueueAttributes so that clients can look the queues
// up by name). The intake takes nothing the event queue does not: its messages are forwarded to
// the event queue as they came (README.md, "Publishing from CloudSeam").
func (s *Stackseam) GrantPublishEvents(grantee awsiam.IGrantable) awsiam.Grant {
	return s.EventQueue.GrantSendMessages(grantee).Combine(s.IntakeQueue.GrantSendMessages(grantee))
}

// GrantApprove lets grantee approve and reject plans: sqs:SendMessage on the approvals queue
// (plus GetQueueUrl and GetQueueAttributes), which `stackseam approve` and `reject` send to, and
// cloudformation:DescribeStacks on this stack, to find the queue with --stack-name. It is
// separate from GrantPublishEvents and GrantOperate on purpose: the events a machine lists under
// approvals are accepted from the approvals queue only, so a publisher cannot approve.
func (s *Stackseam) GrantApprove(grantee awsiam.IGrantable) awsiam.Grant {
	return s.ApprovalQueue.GrantSendMessages(grantee).Combine(s.grantDescribeStack(grantee))
}

// GrantRead lets grantee ask the deployment read-only questions — list stacks, show one, its
// history, stuck runs, machines — as `stackseam stacks|show|history|console --stack-name` do:
// lambda:InvokeFunction on the query function only (whose database session cannot write), and
// cloudformation:DescribeStacks on this stack, to find the function by the stack's outputs. The
// web console also reads what the database does not hold, from the bucket: s3:GetObject on task
// logs (logs/*) and machine files (machines/*), s3:ListBucket for the machines/ prefix only (and
// kms:Decrypt when the bucket has its own key). Nothing else: no queue, no Terraform state, no
// database secret, no write.
func (s *Stackseam) GrantRead(grantee awsiam.IGrantable) awsiam.Grant {
	invoke := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("lambda:InvokeFunction"),
		ResourceArns: jsii.Strings(*s.QueryFunction.FunctionArn()),
	})
	list := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("s3:ListBucket"),
		ResourceArns: &[]*string{s.Bucket.BucketArn()},
		Conditions:   &map[string]*map[string]any{"StringLike": {"s3:prefix": MachinesPrefix + "*"}},
	})
	get := awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee: grantee,
		Actions: jsii.Strings("s3:GetObject"),
		ResourceArns: &[]*string{s.Bucket.ArnForObjects(jsii.String(LogsPrefix + "*")),
			s.Bucket.ArnForObjects(jsii.String(MachinesPrefix + "*"))},
	})
	grant := invoke.Combine(s.grantDescribeStack(grantee)).Combine(list).Combine(get)
	if key := s.Bucket.EncryptionKey(); key != nil {
		grant = grant.Combine(key.GrantDecrypt(grantee))
	}
	if c, ok := grantee.(constructs.IConstruct); ok {
		cdknag.NagSuppressions_AddResourceSuppressions(c, &[]*cdknag.NagPackSuppression{{
			Id:        jsii.String("AwsSolutions-IAM5"),
			Reason:    jsii.String("Task logs and machine files are every object under logs/ and machines/ (keys chosen at run time by stacks and operators); GrantRead reads them and nothing else in the bucket."),
			AppliesTo: &[]interface{}{cdknag.RegexAppliesTo{Regex: jsii.String(`/^Resource::.*\/(logs|machines)\/\*$/`)}},
		}}, jsii.Bool(true))
	}
	return grant
}

// GrantOperate lets grantee act on stacks as an operator — `stackseam send`, `retry` with
// --stack-name (approving is GrantApprove's): send events to the event queue (sqs:SendMessage with
// GetQueueUrl and GetQueueAttributes, and the queue's KMS key when it has one), and
// cloudformation:DescribeStacks on this stack to find the queue. It grants no reads: add
// GrantRead for that. GrantPublishEvents stays the grant for machine publishers (CI jobs,
// schedulers), which know the queue and need no stack lookup.
func (s *Stackseam) GrantOperate(grantee awsiam.IGrantable) awsiam.Grant {
	return s.EventQueue.GrantSendMessages(grantee).Combine(s.grantDescribeStack(grantee))
}

// grantDescribeStack lets grantee read this stack's outputs (DescribeStacks on the stack only).
func (s *Stackseam) grantDescribeStack(grantee awsiam.IGrantable) awsiam.Grant {
	return awsiam.Grant_AddToPrincipal(&awsiam.GrantOnPrincipalOptions{
		Grantee:      grantee,
		Actions:      jsii.Strings("cloudformation:DescribeStacks"),
		ResourceArns: jsii.Strings(*awscdk.Stack_Of(s.Construct).StackId()),
	})
}

// AddTerraformPermissions adds statements to TerraformRole, which Terraform tasks run with:
// whatever the tasks' scripts create, change and destroy. Writes to machines/ and fences/ stay
// denied, and in the construct's bucket each run reaches only its machine's objects (the session
// policy). The satisfier's and the task builds' own roles do not get them.
func (s *Stackseam) AddTerraformPermissions(statements ...awsiam.PolicyStatement) {
	for _, st := range statements {
		s.TerraformRole.AddToPrincipalPolicy(st)
	}
}

// terraformRoles are the roles that touch Terraform sources and state: TerraformRole (Terraform
// itself: module sources, the S3 backend) and the roles of the code that fetches sources and
// holds the state lock around it (the satisfier's, the task builds').
func (s *Stackseam) terraformRoles() []awsiam.Role {
	return []awsiam.Role{s.TerraformRole, s.SatisfierRole, s.TaskBuildRole}
}

// GrantTerraformSources lets Terraform tasks read sources of type s3 from another bucket, under
// prefix ("" for the whole bucket): the satisfier fetches them, and Terraform may read module
// sources there. The construct's own bucket is readable already.
func (s *Stackseam) GrantTerraformSources(bucket awss3.IBucket, prefix string) {
	for _, r := range s.terraformRoles() {
		s.grantTerraformSources(r, bucket, prefix)
	}
}

func (s *Stackseam) grantTerraformSources(role awsiam.Role, bucket awss3.IBucket, prefix string) {
	list := awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:ListBucket"),
		Resources: &[]*string{bucket.BucketArn()},
	})
	if prefix != "" {
		list.AddCondition(jsii.String("StringLike"), map[string]any{"s3:prefix": prefix + "*"})
	}
	role.AddToPrincipalPolicy(list)
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:GetObject"),
		Resources: &[]*string{bucket.ArnForObjects(jsii.String(prefix + "*"))},
	}))
	if key := bucket.EncryptionKey(); key != nil {
		key.GrantDecrypt(role)
	}
	pattern := strings.ReplaceAll(regexp.QuoteMeta(prefix), "/", `\/`)
	cdknag.NagSuppressions_AddResourceSuppressions(role, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String("Terraform sources are every object under the prefix given to GrantTerraformSources; their keys are chosen by the machine files."),
		AppliesTo: &[]interface{}{cdknag.RegexAppliesTo{Regex: jsii.String(`/^Resource::.*\/` + pattern + `\*$/`)}},
	}}, jsii.Bool(true))
}

// GrantTerraformState lets Terraform tasks keep their state in another bucket: the bucket a
// script's own `backend "s3"` block names (CloudSeam scripts do; the satisfier keeps it). The
// role may list the bucket, read and write objects in the state layout <machine>/<stackId>/<key>
// (StateLayout; the lock files <key>.tflock are in it too) and delete only lock files — what it has
// in the construct's own bucket. A state bucket encrypted with a KMS key also gets encrypt and
// decrypt on that key.
func (s *Stackseam) GrantTerraformState(bucket awss3.IBucket) {
	for _, r := range s.terraformRoles() {
		r.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions:   jsii.Strings("s3:ListBucket"),
			Resources: &[]*string{bucket.BucketArn()},
		}))
		r.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions:   jsii.Strings("s3:GetObject", "s3:PutObject"),
			Resources: &[]*string{bucket.ArnForObjects(jsii.String(StateLayout))},
		}))
		r.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions:   jsii.Strings("s3:DeleteObject"),
			Resources: &[]*string{bucket.ArnForObjects(jsii.String("*.tflock"))},
		}))
		if key := bucket.EncryptionKey(); key != nil {
			key.GrantEncryptDecrypt(r)
		}
		cdknag.NagSuppressions_AddResourceSuppressions(r, &[]*cdknag.NagPackSuppression{{
			Id:        jsii.String("AwsSolutions-IAM5"),
			Reason:    jsii.String("Terraform state in a bucket given to GrantTerraformState: keys follow the state layout <machine>/<stackId>/<key>, deletes only *.tflock lock files."),
			AppliesTo: &[]interface{}{cdknag.RegexAppliesTo{Regex: jsii.String(`/^Resource::.*\/(\*\/\*\/\*|\*\.tflock)$/`)}},
		}}, jsii.Bool(true))
	}
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
