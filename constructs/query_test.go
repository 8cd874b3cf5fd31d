package stackseam_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The query function: in the VPC with its own security group, the database secret in its
// environment with TLS verified, and a role that can read that secret and write its logs —
// no queue, no bucket, no event-source mapping, no schedule.
func TestQueryFunctionReadsTheDatabaseOnly(t *testing.T) {
	s := synth(t)
	for _, stack := range stacks {
		tpl := s.templates[stack.name]
		fn := tpl.res(t, stack.prefix+"Query/Resource")
		fnID := tpl.id(t, stack.prefix+"Query/Resource")
		p := fn.Properties
		require.Equal(t, "provided.al2023", p["Runtime"])
		require.Equal(t, []any{"arm64"}, p["Architectures"])
		require.Equal(t, 30.0, p["Timeout"])
		require.Equal(t, 256.0, p["MemorySize"])
		require.Equal(t, getAtt(tpl.id(t, stack.prefix+"QueryRole/Resource"), "Arn"), p["Role"])
		vpc := p["VpcConfig"].(map[string]any)
		require.Equal(t, []any{getAtt(tpl.id(t, stack.prefix+"QuerySecurityGroup/Resource"), "GroupId")}, vpc["SecurityGroupIds"])
		env := p["Environment"].(map[string]any)["Variables"].(map[string]any)
		require.Equal(t, "verify-full", env["DATABASE_SSLMODE"])
		require.Contains(t, env, "DATABASE_SECRET_ID")
		require.Len(t, env, 3, "the database secret, TLS mode and log level: nothing else")
		if stack.name == "Embedded" {
			require.Equal(t, 5.0, p["ReservedConcurrentExecutions"], "QueryReservedConcurrency caps the database connections readers can hold")
		} else {
			require.NotContains(t, p, "ReservedConcurrentExecutions", "no reservation by default: it would not deploy in a new account")
		}

		for _, r := range tpl.ofType("AWS::Lambda::EventSourceMapping") {
			require.NotEqual(t, map[string]any{"Ref": fnID}, r.Properties["FunctionName"], "%s: nothing feeds the query function", stack.name)
		}
		for _, st := range tpl.statementsOf(t, stack.prefix+"QueryRole/Resource") {
			for _, a := range asList(st.(map[string]any)["Action"]) {
				a := a.(string)
				require.NotRegexp(t, `^(sqs|s3|sns|lambda|kms:Encrypt|kms:GenerateDataKey)`, a, "%s: the query role may not %s", stack.name, a)
			}
		}
	}
	tpl := s.templates["Embedded"]
	require.ElementsMatch(t, normalize(t, []any{
		allow("WriteLogs", logActions, getAtt(tpl.id(t, emb+"QueryLogs/Resource"), "Arn")),
		allow("ConnectToVpc", vpcActions, "*"),
		allow("", []string{"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, embeddedSecretArn),
	}), tpl.statementsOf(t, emb+"QueryRole/Resource"))
}

// GrantRead is invoking the query function, reading the stack's outputs, and reading task logs
// and machine files (the console), nothing else;
// GrantOperate is sending events and reading the outputs, nothing else; a principal given
// neither has no statement at all.
func TestGrantReadAndGrantOperateAreExactly(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	describe := allow("", "cloudformation:DescribeStacks", ref("AWS::StackId"))
	objects := func(suffix string) any { return join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedBucket+suffix) }
	listMachines := allow("", "s3:ListBucket", join("arn:", ref("AWS::Partition"), ":s3:::"+embeddedBucket))
	listMachines["Condition"] = map[string]any{"StringLike": map[string]any{"s3:prefix": "machines/*"}}
	require.ElementsMatch(t, normalize(t, []any{
		allow("", "lambda:InvokeFunction", getAtt(tpl.id(t, emb+"Query/Resource"), "Arn")),
		describe,
		// The web console's task logs and machine files: read, never written, nothing else.
		listMachines,
		allow("", "s3:GetObject", []any{objects("/logs/*"), objects("/machines/*")}),
	}), tpl.statementsOf(t, "Embedded/Reader/Resource"))
	require.ElementsMatch(t, normalize(t, []any{
		allow("", []string{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, getAtt(tpl.id(t, emb+"EventQueue/Resource"), "Arn")),
		describe,
	}), tpl.statementsOf(t, "Embedded/Operator/Resource"))
	require.Empty(t, tpl.statementsOf(t, "Embedded/Bystander/Resource"), "no grant, no statement")

	// The query function can be invoked by the principals granted, through their own policies:
	// it has no resource policy that would let anyone else in.
	for _, r := range tpl.ofType("AWS::Lambda::Permission") {
		require.NotEqual(t, getAtt(tpl.id(t, emb+"Query/Resource"), "Arn"), r.Properties["FunctionName"])
		require.NotEqual(t, map[string]any{"Ref": tpl.id(t, emb+"Query/Resource")}, r.Properties["FunctionName"])
	}
}
