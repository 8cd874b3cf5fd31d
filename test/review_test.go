package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/test/harness"
)

// reviewedMachine is machines/reviewed-env.yml as shipped, with its S3 source replaced by the
// local fixture test/testdata/terraform/reviewed.
func reviewedMachine(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "machines", "reviewed-env.yml"))
	require.NoError(t, err)
	const s3Source = "  type: s3\n  bucket: my-company-terraform-sources\n  key: reviewed-env/\n"
	require.Contains(t, string(data), s3Source)
	return strings.Replace(string(data), s3Source, "  type: local\n  location: reviewed\n", 1)
}

// cli runs the stackseam CLI binary and returns its standard output; it fails the test when the
// command fails.
func (ss *satisfierSystem) cli(bin string, env []string, args ...string) string {
	ss.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(harness.AWSEnv(ss.t), "PATH="+os.Getenv("PATH")), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(ss.t, err, "stackseam %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

// editState changes the stack's Terraform state behind stackseam's back, as an operator running
// tofu by hand would: replace old by new in it and, with bump, count a new serial (a new state
// version, which makes every plan made before it stale).
func (ss *satisfierSystem) editState(key, old, new string, bump bool) {
	ss.t.Helper()
	state, ok := ss.object(key)
	require.True(ss.t, ok, "state %s exists", key)
	require.Contains(ss.t, state, old)
	state = strings.ReplaceAll(state, old, new)
	if bump {
		serial := regexp.MustCompile(`"serial":\s*(\d+)`)
		m := serial.FindStringSubmatch(state)
		require.NotNil(ss.t, m)
		n, _ := strconv.Atoi(m[1])
		state = serial.ReplaceAllString(state, fmt.Sprintf(`"serial": %d`, n+1))
	}
	harness.PutObject(ss.t, ss.bucket, key, state)
}

// TestPlanApproveApplyAndDriftEndToEnd runs machines/reviewed-env.yml with both binaries, a real
// OpenTofu and the CLI: a plan with changes waits for an approval (a publisher's APPROVE is
// refused), the approval with a name on it applies exactly the saved plan, no changes need no
// approval, a plan gone stale is refused with OpenTofu's reason, and a change made outside
// stackseam is found by the drift check.
func TestPlanApproveApplyAndDriftEndToEnd(t *testing.T) {
	t.Parallel()
	ss := newSatisfierSystem(t)
	ss.machine("reviewed-env", reviewedMachine(t))
	approvalURL, _ := harness.CreateQueue(t, "approvals", true, 5)
	topic := ss.topic()
	// Subscribers who want to hear about drift only.
	driftNews := ss.subscribe(topic, `{"outcome": ["drift"]}`)
	ss.system.startStateManager(1, "MACHINES_DIR="+ss.machines, "FENCE_BUCKET="+ss.bucket, "APPROVAL_QUEUE_URL="+approvalURL,
		"NOTIFICATION_TOPIC_ARN="+topic)
	ss.startSatisfier()
	cliBin := harness.BuildBinary(t, "./cmd/stackseam")
	cliEnv := []string{"DATABASE_URL=" + ss.dbURL, "APPROVAL_QUEUE_URL=" + approvalURL, "EVENT_QUEUE_URL=" + ss.eventURL}
	const id = "prod"
	stateKey := "reviewed-env/" + id + "/reviewed"
	planKey := terraform.PlanKey("reviewed-env", id, "plan")

	// 1. LAUNCH plans; with changes the stack waits for an approval, the summary exact.
	ss.sendEvent(id, "LAUNCH", map[string]any{"machine": "reviewed-env", "metadata": map[string]any{"greeting": "hi", "extras": 2}})
	st := ss.waitState(id, "AWAITING-APPROVAL")
	for k, want := range map[string]string{"plan.changes": "true", "plan.add": "4", "plan.change": "0", "plan.destroy": "0", "plan.replace": "0"} {
		require.Equal(t, want, fmt.Sprint(st.Metadata[k]), k)
	}
	require.Equal(t, `["create terraform_data.app","create terraform_data.extra[0]","create terraform_data.extra[1]","create terraform_data.pinned"]`,
		st.Metadata["plan.addresses"])
	_, ok := ss.object(planKey)
	require.True(t, ok, "the plan is saved")
	state, _ := ss.object(stateKey)
	require.NotContains(t, state, "terraform_data", "nothing is applied before the approval")

	shown := ss.cli(cliBin, cliEnv, "plan", id)
	require.Contains(t, shown, "plan plan (run "+fmt.Sprint(st.Metadata["plan.runId"])+"): changes\n")
	require.Contains(t, shown, "  4 to add, 0 to change, 0 to destroy, 0 to replace\n")
	require.Contains(t, shown, "  create terraform_data.pinned\n")
	require.Contains(t, shown, "  full text: s3://"+ss.bucket+"/logs/reviewed-env/prod/plan/")
	logText, ok := ss.object(fmt.Sprint(st.Metadata["plan.log"]))
	require.True(t, ok)
	require.Contains(t, logText, "Plan: 4 to add, 0 to change, 0 to destroy.", "the full plan is in the log")
	require.NotContains(t, logText, "plan-secret-value-0123456789")

	// 2. A publisher's APPROVE on the event queue is refused.
	ss.sendEvent(id, "APPROVE", nil)
	require.Eventually(t, func() bool {
		return ss.count(`SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'rejected' AND event = 'APPROVE'
			AND reason LIKE '%needs approval rights%'`, id) == 1
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "AWAITING-APPROVAL", ss.stack(id).State)

	// 3. stackseam approve, with a name and a comment, tied to the version `plan` showed: exactly
	// the saved plan is applied.
	seen := fmt.Sprint(st.Version)
	require.Contains(t, shown, "stackseam approve prod --if-version "+seen)
	out := ss.cli(cliBin, cliEnv, "approve", id, "--if-version", seen, "--comment", "reviewed with the DBA")
	require.Contains(t, out, "sent APPROVE to stack prod as ")
	st = ss.waitState(id, "RUN")
	require.Equal(t, "hi, stack prod", st.Metadata["app"])
	_, ok = ss.object(planKey)
	require.False(t, ok, "the applied plan is removed")
	var by, comment string
	require.NoError(t, ss.db.QueryRow(ss.ctx, `SELECT detail->>'by', detail->>'comment' FROM history
		WHERE stack_id = $1 AND event = 'APPROVE' AND kind = 'event'`, id).Scan(&by, &comment))
	require.NotEmpty(t, by, "who approved")
	require.Equal(t, "reviewed with the DBA", comment)
	history := ss.cli(cliBin, cliEnv, "history", id)
	require.Contains(t, history, "APPROVE: AWAITING-APPROVAL → APPLY")
	require.Contains(t, history, `: "reviewed with the DBA"`)
	require.Contains(t, history, "CHANGES: PLAN → AWAITING-APPROVAL")
	require.Contains(t, history, "raised by task plan (changes)")

	// 4. No changes: straight back to RUN, no approval asked.
	ss.sendEvent(id, "CHANGE", nil)
	require.Eventually(t, func() bool {
		tr := ss.transitions(id)
		return len(tr) >= 2 && tr[len(tr)-2] == "RUN->PLAN" && tr[len(tr)-1] == "PLAN->RUN"
	}, 90*time.Second, 100*time.Millisecond, "the plan found no changes and NEXT went on")
	require.Equal(t, false, ss.stack(id).Metadata["plan.changes"])

	// 5. A plan gone stale: the state changes after the plan was made. The apply is refused with
	// OpenTofu's reason; planning again and approving converges.
	ss.sendEvent(id, "CHANGE", map[string]any{"metadata": map[string]any{"greeting": "hello", "extras": 1, "release": "v2"}})
	st = ss.waitState(id, "AWAITING-APPROVAL")
	for k, want := range map[string]string{"plan.add": "0", "plan.change": "1", "plan.destroy": "1", "plan.replace": "1"} {
		require.Equal(t, want, fmt.Sprint(st.Metadata[k]), k)
	}
	ss.editState(stateKey, "hi, stack prod", "changed by hand", true)
	ss.cli(cliBin, cliEnv, "approve", id)
	failed := ss.waitTask(id, "apply", "failed")
	require.Contains(t, failed.Description, "the state changed since the plan of task plan was made")
	require.Contains(t, failed.Description, "Saved plan is stale")
	state, _ = ss.object(stateKey)
	require.Contains(t, state, "changed by hand", "the stale plan changed nothing")
	ss.sendEvent(id, "CHANGE", nil)
	ss.waitState(id, "AWAITING-APPROVAL")
	ss.cli(cliBin, cliEnv, "reject", id, "--comment", "not today")
	ss.waitState(id, "RUN")
	ss.sendEvent(id, "CHANGE", nil)
	ss.waitState(id, "AWAITING-APPROVAL")
	ss.cli(cliBin, cliEnv, "approve", id)
	st = ss.waitState(id, "RUN")
	require.Equal(t, "hello, stack prod", st.Metadata["app"])

	// 6. Drift: none, then a change made outside stackseam moves the stack to DRIFTED, with
	// the summary on the transition (what the notification carries).
	ss.sendEvent(id, "CHECK-DRIFT", nil)
	require.Eventually(t, func() bool {
		tr := ss.transitions(id)
		return tr[len(tr)-1] == "DRIFT-CHECK->RUN"
	}, 90*time.Second, 100*time.Millisecond)
	require.Equal(t, false, ss.stack(id).Metadata["drift-check.drift"])
	ss.editState(stateKey, "hello, stack prod", "edited in the console", false)
	ss.sendEvent(id, "CHECK-DRIFT", nil)
	st = ss.waitState(id, "DRIFTED")
	require.Equal(t, true, st.Metadata["drift-check.drift"])
	require.Equal(t, `["update terraform_data.app"]`, st.Metadata["drift-check.addresses"])
	var summary map[string]any
	var raw []byte
	require.NoError(t, ss.db.QueryRow(ss.ctx, `SELECT detail->'summary' FROM history
		WHERE stack_id = $1 AND kind = 'transition' AND to_state = 'DRIFTED'`, id).Scan(&raw))
	require.NoError(t, json.Unmarshal(raw, &summary))
	require.Equal(t, true, summary["drift-check.drift"])
	require.Equal(t, `["update terraform_data.app"]`, summary["drift-check.addresses"])

	// SNS carries the drift summary, filterable by outcome: exactly one notification matched.
	notes := ss.notifications(driftNews, 1)
	require.Equal(t, "DRIFTED", notes[0].ToState)
	require.Equal(t, "drift-check", notes[0].Task)
	require.Equal(t, "drift", notes[0].Outcome)
	require.Equal(t, `["update terraform_data.app"]`, notes[0].Summary["drift-check.addresses"])
	require.Equal(t, "1", fmt.Sprint(notes[0].Summary["drift-check.change"]))
}
