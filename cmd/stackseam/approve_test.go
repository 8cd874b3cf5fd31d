package main

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

func TestApproveAndRejectSendToTheApprovalsQueueWithAName(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "cli-approvals", true, 5)
	env := awsEnv(t, map[string]string{"APPROVAL_QUEUE_URL": url})

	code, stdout, stderr := runEnv(t, env, now, "approve", "prod", "--comment", "reviewed with the DBA")
	require.Equal(t, exitOK, code, stderr)
	m := receiveOne(t, url)
	by, _ := m.body["by"].(string)
	require.True(t, strings.HasPrefix(by, "arn:aws:"), "who approved is the STS caller identity: %q", by)
	require.Equal(t, map[string]any{"stackId": "prod", "event": "APPROVE", "by": by, "comment": "reviewed with the DBA"}, m.body)
	require.Equal(t, "prod", m.group)
	require.Equal(t, "sent APPROVE to stack prod as "+by+" (AWS caller identity): reviewed with the DBA\n", stdout)

	code, _, stderr = runEnv(t, env, now, "reject", "prod")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "REJECT", receiveOne(t, url).body["event"])

	// --if-version ties the approval to the plan the approver saw (`stackseam plan` prints the
	// version): if a CHANGE made a new plan meanwhile, the approval is ignored, not applied to it.
	code, stdout, stderr = runEnv(t, env, now, "approve", "prod", "--if-version", "7")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, 7.0, receiveOne(t, url).body["ifVersion"])
	require.Contains(t, stdout, "if still at version 7")

	// No AWS identity (STS does not answer): --as names the approver, else the OS user.
	noSTS := aws.Config{Region: harness.Region, BaseEndpoint: aws.String("http://127.0.0.1:9"), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}
	by, identity := approver(t.Context(), noSTS, "alice")
	require.Equal(t, "alice", by)
	require.Equal(t, "--as; no AWS identity could be read", identity)
	by, identity = approver(t.Context(), noSTS, "")
	require.NotEmpty(t, by)
	require.Equal(t, "OS user; no AWS identity could be read", identity)

	// With only the deployed stack's name, the approvals queue comes from its outputs.
	cfn := harness.NewCloudFormationFake(t)
	cfn.Put("Stackseam", harness.FakeStack{Outputs: map[string]string{deployed.OutputApprovalQueueURL: url}})
	byName := awsEnv(t, map[string]string{"AWS_ENDPOINT_URL_CLOUDFORMATION": cfn.URL, deployed.EnvStackName: "Stackseam"})
	code, _, stderr = runEnv(t, byName, now, "approve", "prod", "--comment", "by stack name")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "by stack name", receiveOne(t, url).body["comment"])
	cfn.Put("Old", harness.FakeStack{Outputs: map[string]string{deployed.OutputEventQueueURL: url}})
	code, _, stderr = runEnv(t, byName, now, "reject", "prod", "--stack-name", "Old")
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "stack Old has no output ApprovalQueueUrl")

	code, _, stderr = runEnv(t, awsEnv(t, nil), now, "approve", "prod")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "no approvals queue")
}

func TestPlanSummariesAreReadFromTheMetadata(t *testing.T) {
	t.Parallel()
	got := planSummaries(message.Metadata{
		"plan.changes": true, "plan.add": 1, "plan.change": 0, "plan.destroy": 2, "plan.replace": 0,
		"plan.addresses": `["create a.b","delete a.c","delete a.d"]`, "plan.runId": "r-1", "plan.log": "s3://b/logs/x.log",
		"nightly.drift": false, "nightly.add": 0, "nightly.change": 0, "nightly.destroy": 0, "nightly.replace": 0,
		"nightly.addresses": `[]`, "nightly.drifted": `[]`, "nightly.runId": "r-2",
		"feature.changes": "not a summary without a run id",
	})
	require.Len(t, got, 2)
	require.Equal(t, planSummary{Task: "nightly", Kind: "drift", Found: false, Add: 0, Change: 0, Destroy: 0, Replace: 0,
		Addresses: []string{}, Drifted: []string{}, RunID: "r-2"}, got[0])
	require.Equal(t, planSummary{Task: "plan", Kind: "plan", Found: true, Add: 1, Change: 0, Destroy: 2, Replace: 0,
		Addresses: []string{"create a.b", "delete a.c", "delete a.d"}, RunID: "r-1", Log: "s3://b/logs/x.log"}, got[1])
}
