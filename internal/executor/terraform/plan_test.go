package terraform_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

const planSecret = "plan-secret-value-0123456789"

func reviewed(action string, extra map[string]any) map[string]any {
	c := map[string]any{"source": localSource("reviewed"), "action": action}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// merged is meta with the outputs of earlier runs, as the stack's metadata would hold them.
func merged(meta message.Metadata, outputs ...message.Metadata) message.Metadata {
	out := message.Metadata{}
	for _, m := range append([]message.Metadata{meta}, outputs...) {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestPlanApproveApplyAndDrift runs the whole review cycle against one state: a plan with exact
// counts, the saved plan applied, a plan with every kind of change, no changes, drift after the
// state was changed outside the task.
func TestPlanApproveApplyAndDrift(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	ctx := context.Background()
	meta := message.Metadata{"greeting": "hi", "extras": json.Number("2")}
	planKey := terraform.PlanKey("m", "s-1", "review")

	// 1. A first plan: everything to add. Only addresses and actions come back.
	plan, err := r.Run(ctx, tfTask("review", reviewed("plan", nil), meta))
	require.NoError(t, err)
	require.Equal(t, message.OutcomeChanges, plan.Outcome)
	require.Equal(t, message.Metadata{
		"review.changes":   true,
		"review.add":       json.Number("4"),
		"review.change":    json.Number("0"),
		"review.destroy":   json.Number("0"),
		"review.replace":   json.Number("0"),
		"review.addresses": `["create terraform_data.app","create terraform_data.extra[0]","create terraform_data.extra[1]","create terraform_data.pinned"]`,
		"review.drifted":   `[]`,
		"review.runId":     "run-review",
		"review.log":       "s3://" + r.Bucket + "/logs/m/s-1/review/run-review.log",
	}, plan.Outputs)
	log := storedLog(t, r, plan.Log)
	require.Contains(t, log, "Plan: 4 to add, 0 to change, 0 to destroy.", "the human-readable plan is in the log")
	require.Contains(t, log, "stackseam: plan saved at s3://"+r.Bucket+"/"+planKey)
	require.NotContains(t, log, planSecret, "sensitive values stay out of the log")
	saved, ok := harness.ReadObject(t, r.Bucket, planKey)
	require.True(t, ok, "the plan is saved under plans/")
	require.NotEmpty(t, saved)
	_, ok = harness.ReadObject(t, r.Bucket, "m/s-1/reviewed")
	if ok {
		state, _ := harness.ReadObject(t, r.Bucket, "m/s-1/reviewed")
		require.NotContains(t, state, "terraform_data", "a plan changes nothing")
	}

	// 2. The approved plan is applied, exactly, and removed.
	apply := tfTask("deploy", reviewed("apply", map[string]any{"plan": "review"}), merged(meta, plan.Outputs))
	out, err := r.Run(ctx, apply)
	require.NoError(t, err)
	require.Equal(t, "hi, stack s-1", out.Outputs["app"])
	require.Contains(t, storedLog(t, r, out.Log), "Apply complete! Resources: 4 added, 0 changed, 0 destroyed.")
	_, ok = harness.ReadObject(t, r.Bucket, planKey)
	require.False(t, ok, "a plan is applied at most once")

	// Applying it again: nothing to apply.
	_, err = r.Run(ctx, apply)
	require.ErrorIs(t, err, terraform.ErrStalePlan)
	require.ErrorContains(t, err, "there is no saved plan of task review for stack s-1")

	// 3. Nothing changed: no changes, no saved plan.
	plan, err = r.Run(ctx, tfTask("review", reviewed("plan", nil), meta))
	require.NoError(t, err)
	require.Equal(t, message.OutcomeNoChanges, plan.Outcome)
	require.Equal(t, false, plan.Outputs["review.changes"])
	require.Equal(t, `[]`, plan.Outputs["review.addresses"])
	_, ok = harness.ReadObject(t, r.Bucket, planKey)
	require.False(t, ok)

	// 4. One change of each kind, counted exactly.
	meta2 := message.Metadata{"greeting": "hello", "extras": json.Number("1"), "release": "v2"}
	plan, err = r.Run(ctx, tfTask("review", reviewed("plan", nil), meta2))
	require.NoError(t, err)
	require.Equal(t, message.OutcomeChanges, plan.Outcome)
	for k, want := range map[string]any{"review.add": json.Number("0"), "review.change": json.Number("1"),
		"review.destroy": json.Number("1"), "review.replace": json.Number("1")} {
		require.Equal(t, want, plan.Outputs[k], k)
	}
	require.Equal(t, `["update terraform_data.app","delete terraform_data.extra[1]","replace terraform_data.pinned"]`, plan.Outputs["review.addresses"])
	for k, v := range plan.Outputs {
		s, _ := v.(string)
		require.NotContains(t, s, planSecret, k)
	}

	// 5. The state changes after the plan was made: OpenTofu refuses the stale plan, and says so.
	_, err = r.Run(ctx, tfTask("other", reviewed("apply", nil), merged(meta, message.Metadata{"greeting": "changed meanwhile"})))
	require.NoError(t, err)
	_, err = r.Run(ctx, tfTask("deploy", reviewed("apply", map[string]any{"plan": "review"}), merged(meta2, plan.Outputs)))
	require.ErrorIs(t, err, terraform.ErrStalePlan)
	require.ErrorContains(t, err, "the state changed since the plan of task review was made")
	require.ErrorContains(t, err, "Saved plan is stale", "OpenTofu's own reason")
	_, ok = harness.ReadObject(t, r.Bucket, planKey)
	require.False(t, ok, "a refused plan is removed too")

	// 6. Drift: none now; then the state is changed outside any task, and the check finds it.
	current := merged(meta, message.Metadata{"greeting": "changed meanwhile"})
	check, err := r.Run(ctx, tfTask("nightly", reviewed("drift", nil), current))
	require.NoError(t, err)
	require.Equal(t, message.OutcomeNoDrift, check.Outcome)
	require.Equal(t, false, check.Outputs["nightly.drift"])
	state, ok := harness.ReadObject(t, r.Bucket, "m/s-1/reviewed")
	require.True(t, ok)
	require.Contains(t, state, "changed meanwhile, stack s-1")
	harness.PutObject(t, r.Bucket, "m/s-1/reviewed", strings.ReplaceAll(state, "changed meanwhile, stack s-1", "edited by hand"))
	check, err = r.Run(ctx, tfTask("nightly", reviewed("drift", nil), current))
	require.NoError(t, err)
	require.Equal(t, message.OutcomeDrift, check.Outcome)
	require.Equal(t, true, check.Outputs["nightly.drift"])
	require.Equal(t, json.Number("1"), check.Outputs["nightly.change"])
	require.Equal(t, `["update terraform_data.app"]`, check.Outputs["nightly.addresses"])
	_, ok = harness.ReadObject(t, r.Bucket, terraform.PlanKey("m", "s-1", "nightly"))
	require.False(t, ok, "a drift check saves no plan")
}

// TestSavedPlanIsRefusedWhenTheInputsChanged: an apply whose variables differ from the plan's
// would apply the plan's values silently; it is refused instead, as is a plan other than the one
// the stack's metadata names (the one that was approved).
func TestSavedPlanIsRefusedWhenTheInputsChanged(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	ctx := context.Background()
	meta := message.Metadata{"greeting": "planned"}
	plan, err := r.Run(ctx, tfTask("review", reviewed("plan", nil), meta))
	require.NoError(t, err)
	_, err = r.Run(ctx, tfTask("deploy", reviewed("apply", map[string]any{"plan": "review"}),
		merged(meta, plan.Outputs, message.Metadata{"greeting": "changed after the plan"})))
	require.ErrorIs(t, err, terraform.ErrStalePlan)
	require.ErrorContains(t, err, "the inputs changed since the plan of task review was made")

	plan, err = r.Run(ctx, tfTask("review", reviewed("plan", nil), meta))
	require.NoError(t, err)
	approved := merged(meta, plan.Outputs, message.Metadata{"review.runId": "an-earlier-run"})
	_, err = r.Run(ctx, tfTask("deploy", reviewed("apply", map[string]any{"plan": "review"}), approved))
	require.ErrorIs(t, err, terraform.ErrStalePlan)
	require.ErrorContains(t, err, "the saved plan of task review is from run run-review, but the stack's metadata names run an-earlier-run")
	state, _ := harness.ReadObject(t, r.Bucket, "m/s-1/reviewed")
	require.NotContains(t, state, "planned", "nothing was applied")
}
