package stackseam

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// GrantPublishEvents lets grantee send events to the event queue (sqs:SendMessage, plus
// GetQueueUrl and GetQueueAttributes so that clients can look the queue up by name).
func (s *Stackseam) GrantPublishEvents(grantee awsiam.IGrantable) awsiam.Grant {
	return s.EventQueue.GrantSendMessages(grantee)
}

// AddTerraformPermissions adds statements to the satisfier's role, which Terraform tasks run
// with: whatever the tasks' scripts create, change and destroy. Writes to machines/ stay denied.
func (s *Stackseam) AddTerraformPermissions(statements ...awsiam.PolicyStatement) {
	for _, r := range s.terraformRoles() {
		for _, st := range statements {
			r.AddToPrincipalPolicy(st)
		}
	}
}

// terraformRoles are the roles Terraform tasks run with: the satisfier's, and the task builds'
// (tasks longer than Lambda allows).
func (s *Stackseam) terraformRoles() []awsiam.Role {
	return []awsiam.Role{s.SatisfierRole, s.TaskBuildRole}
}

// GrantTerraformSources lets Terraform tasks read sources of type s3 from another bucket, under
// prefix ("" for the whole bucket). The construct's own bucket is readable already.
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
