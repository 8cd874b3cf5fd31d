package stackseam_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Terraform runs with a role of its own: only the satisfier's and the task builds' roles may
// assume it (its trust policy names them, nothing else), each of them may assume that role and
// no other, and its own statements are Terraform's (the state layout, lock files, sources) with
// the denies on machines/, fences/ and the bucket. Each run narrows it to its machine with a
// session policy (internal/executor/terraform.SessionPolicy), which a template cannot show.
func TestDefaultTerraformRole(t *testing.T) {
	tpl := synth(t).templates["Default"]
	role := tpl.res(t, def+"TerraformRole/Resource").Properties
	require.Equal(t, 43200.0, role["MaxSessionDuration"], "12 hours: a CodeBuild run may ask for its whole time")
	require.Equal(t, normalize(t, map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{"Action": "sts:AssumeRole", "Effect": "Allow",
				"Principal": map[string]any{"AWS": getAtt(tpl.id(t, def+"SatisfierRole/Resource"), "Arn")}},
			map[string]any{"Action": "sts:AssumeRole", "Effect": "Allow",
				"Principal": map[string]any{"AWS": getAtt(tpl.id(t, def+"TaskBuildRole/Resource"), "Arn")}},
		},
	}), role["AssumeRolePolicyDocument"])

	bucket := getAtt(tpl.id(t, def+"Bucket/Resource"), "Arn")
	require.ElementsMatch(t, normalize(t, []any{
		allow("ListState", "s3:ListBucket", bucket),
		allow("ReadSourcesAndState", "s3:GetObject", join(bucket, "/*")),
		allow("WriteState", "s3:PutObject", join(bucket, "/*/*/*")),
		allow("ReleaseStateLocks", "s3:DeleteObject", join(bucket, "/*.tflock")),
		map[string]any{"Sid": "NeverWriteMachinesOrFences", "Effect": "Deny", "Action": neverWriteActions,
			"Resource": []any{join(bucket, "/machines/*"), join(bucket, "/fences/*")}},
		map[string]any{"Sid": "NeverChangeTheBucket", "Effect": "Deny", "Action": bucketChangeActions, "Resource": bucket},
	}), tpl.statementsOf(t, def+"TerraformRole/Resource"))

	assume := normalize(t, allow("AssumeTerraformRole", "sts:AssumeRole", getAtt(tpl.id(t, def+"TerraformRole/Resource"), "Arn")))
	for _, name := range []string{"SatisfierRole", "TaskBuildRole", "StateManagerRole", "QueryRole", "TerraformRole"} {
		statements := tpl.statementsOf(t, def+name+"/Resource")
		var sts []any
		for _, st := range statements {
			for _, a := range asList(st.(map[string]any)["Action"]) {
				if a == "sts:AssumeRole" || a == "sts:*" || a == "*" {
					sts = append(sts, st)
				}
			}
		}
		if name == "SatisfierRole" || name == "TaskBuildRole" {
			require.Equal(t, []any{assume}, sts, "%s assumes the Terraform role and no other", name)
		} else {
			require.Empty(t, sts, "%s assumes no role", name)
		}
	}
}
