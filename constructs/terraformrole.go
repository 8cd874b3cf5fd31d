package stackseam

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// terraformSessionHours is the TerraformRole's MaxSessionDuration: STS's longest, so that a
// CodeBuild run (up to 8 hours) can ask for its whole time. Sessions assumed with a role's own
// credentials (role chaining) last an hour at most whatever this says; the satisfier then falls
// back to an hour, renews the session before it ends through the run's credentials endpoint, and
// says so in the run's log (README.md, "What Terraform tasks may touch").
const terraformSessionHours = 12

// terraformRole creates the role Terraform tasks run with (README.md, "What Terraform tasks may
// touch"). Only the satisfier's role and the task builds' role may assume it, and they do so per
// run with a session policy that leaves, in the bucket, only the run's machine's objects
// (<machine>/*): the role itself spans every machine, each session one. The satisfier's and the
// builds' own roles keep what their Go code does (sources, logs, the state lock, fences, plans).
func (s *Stackseam) terraformRole() {
	s.TerraformRole = awsiam.NewRole(s.Construct, jsii.String("TerraformRole"), &awsiam.RoleProps{
		AssumedBy:          awsiam.NewCompositePrincipal(s.SatisfierRole, s.TaskBuildRole),
		Description:        jsii.String("stackseam Terraform runs: assumed per run by the satisfier or a task build, with a session policy limiting the bucket to the run's machine"),
		MaxSessionDuration: awscdk.Duration_Hours(jsii.Number(terraformSessionHours)),
	})
	for _, r := range []awsiam.Role{s.SatisfierRole, s.TaskBuildRole} {
		r.AddToPrincipalPolicy(statement("AssumeTerraformRole", []string{"sts:AssumeRole"}, s.TerraformRole.RoleArn()))
	}
	s.terraformRoleStatements(s.TerraformRole)
	cdknag.NagSuppressions_AddResourceSuppressions(s.TerraformRole, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-IAM5"),
		Reason: jsii.String("Terraform's own access to the stackseam bucket spans every machine's state layout <machine>/<stackId>/<key>; each run assumes this role with a session policy that narrows it to <machine>/* (one machine), which IAM cannot express in the role itself. " +
			"Module sources in the bucket are read under keys only known at run time; deletes are limited to *.tflock lock files, and machines/ and fences/ are explicitly denied. Whatever AddTerraformPermissions adds is the deployer's choice."),
		AppliesTo: &[]interface{}{cdknag.RegexAppliesTo{Regex: jsii.String("/^Resource::.*\\/(\\*|\\*\\/\\*\\/\\*|\\*\\.tflock|machines\\/\\*|fences\\/\\*)$/")}},
	}}, jsii.Bool(true))
}
