package engine

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	executorkinds "github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
)

// reviewed is the example machine machines/reviewed-env.yml, as the state manager loads it.
func reviewed(t *testing.T) *bundle {
	t.Helper()
	data, err := os.ReadFile("../../machines/reviewed-env.yml")
	require.NoError(t, err)
	m, err := machine.Parse("reviewed-env", "reviewed-env.yml", data, executorkinds.All)
	require.NoError(t, err)
	b := setup(t)
	b.m = m
	return b
}

func completed(run, outcome string, outputs message.Metadata) message.Event {
	return message.Event{Event: message.EventTaskCompleted, TaskRunID: run, Outcome: outcome, Outputs: outputs}
}

func TestPlanWithChangesWaitsForApprovalAndApplies(t *testing.T) {
	t.Parallel()
	b := reviewed(t)
	require.Equal(t, Applied, b.apply(message.Event{Event: "LAUNCH", Machine: "reviewed-env"}).Outcome)
	require.Equal(t, "PLAN", b.stack.State)

	summary := message.Metadata{"plan.changes": true, "plan.add": json.Number("2"), "plan.addresses": `["create a.b","create a.c"]`}
	d := b.apply(completed(b.runOf("plan"), message.OutcomeChanges, summary))
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "AWAITING-APPROVAL", b.stack.State, "CHANGES was raised before NEXT was considered")
	require.Equal(t, []string{"PLAN->AWAITING-APPROVAL"}, transitions(d.History))
	require.Equal(t, []string{KindTaskDone, KindEvent, KindTransition}, kinds(d.History))
	require.Equal(t, "CHANGES", d.History[1].Event)
	require.Equal(t, map[string]any{"raisedBy": "plan", "outcome": "changes"}, d.History[1].Detail)
	require.Equal(t, json.Number("2"), b.stack.Metadata["plan.add"], "the summary is in the metadata")
	require.Empty(t, d.Dispatch)
	require.Len(t, d.Notifications, 1)
	require.Equal(t, "changes", d.Notifications[0].Outcome)
	require.Equal(t, "plan", d.Notifications[0].Task)
	require.Equal(t, map[string]any(summary), d.Notifications[0].Summary)

	// A publisher's APPROVE is refused: it must come from the approvals queue.
	d = b.apply(message.Event{Event: "APPROVE"})
	require.Equal(t, Rejected, d.Outcome)
	require.Contains(t, d.Reason, "event APPROVE needs approval rights")
	require.Equal(t, "AWAITING-APPROVAL", b.stack.State)

	d = b.apply(message.Event{Event: "APPROVE", Approval: true, By: "arn:aws:iam::123456789012:user/alice", Comment: "looks right", SenderID: "AIDAEXAMPLE"})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "APPLY", b.stack.State)
	require.Equal(t, map[string]any{"approval": true, "by": "arn:aws:iam::123456789012:user/alice", "comment": "looks right", "senderId": "AIDAEXAMPLE"},
		d.History[0].Detail, "history records who approved and why")
	require.Len(t, d.Dispatch, 1)
	require.Equal(t, "apply", d.Dispatch[0].Task.Task.Name)
	require.Equal(t, "plan", d.Dispatch[0].Task.Task.Config["plan"])
	require.Equal(t, json.Number("2"), d.Dispatch[0].Task.Stack.Metadata["plan.add"])

	require.Equal(t, Applied, b.result(b.runOf("apply"), true).Outcome)
	require.Equal(t, "RUN", b.stack.State)
}

func TestPlanWithoutChangesNeedsNoApproval(t *testing.T) {
	t.Parallel()
	b := reviewed(t)
	b.apply(message.Event{Event: "LAUNCH", Machine: "reviewed-env"})
	d := b.apply(completed(b.runOf("plan"), message.OutcomeNoChanges, message.Metadata{"plan.changes": false}))
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, []string{"PLAN->RUN"}, transitions(d.History), "no event for noChanges: NEXT goes on")
	require.Equal(t, "RUN", b.stack.State)
}

func TestDriftMovesTheStackAndNotifiesTheSummary(t *testing.T) {
	t.Parallel()
	b := reviewed(t)
	b.apply(message.Event{Event: "LAUNCH", Machine: "reviewed-env"})
	b.apply(completed(b.runOf("plan"), message.OutcomeNoChanges, nil))
	require.Equal(t, "RUN", b.stack.State)

	b.apply(message.Event{Event: "CHECK-DRIFT"})
	b.apply(completed(b.runOf("drift-check"), message.OutcomeNoDrift, message.Metadata{"drift-check.drift": false}))
	require.Equal(t, "RUN", b.stack.State)

	b.apply(message.Event{Event: "CHECK-DRIFT"})
	summary := message.Metadata{"drift-check.drift": true, "drift-check.change": json.Number("1"), "drift-check.drifted": `["update a.b"]`}
	d := b.apply(completed(b.runOf("drift-check"), message.OutcomeDrift, summary))
	require.Equal(t, "DRIFTED", b.stack.State)
	require.Len(t, d.Notifications, 1)
	n := d.Notifications[0]
	require.Equal(t, message.NotifyTransition, n.Kind)
	require.Equal(t, "DRIFTED", n.Event)
	require.Equal(t, "drift", n.Outcome)
	require.Equal(t, map[string]any(summary), n.Summary)
}

func TestRaisedAndApprovalEventsComeOnlyFromTheirSource(t *testing.T) {
	t.Parallel()
	b := reviewed(t)
	b.apply(message.Event{Event: "LAUNCH", Machine: "reviewed-env"})
	d := b.apply(message.Event{Event: "CHANGES"})
	require.Equal(t, Rejected, d.Outcome)
	require.Equal(t, "event CHANGES is raised by task plan from what it found; it cannot be sent", d.Reason)

	d = b.apply(message.Event{Event: "CHANGE", Approval: true, By: "alice"})
	require.Equal(t, Rejected, d.Outcome)
	require.Contains(t, d.Reason, "the approvals queue carries only the events machine reviewed-env lists under approvals (APPROVE, REJECT)")

	d = b.apply(message.Event{Event: "DESTROY", By: "mallory"})
	require.Equal(t, Rejected, d.Outcome)
	require.Contains(t, d.Reason, "by and comment belong on approvals only")
	require.Equal(t, "PLAN", b.stack.State)
}

// The summary a plan task reports lives in the stack's metadata, where `stackseam plan` and the
// console show it to the approver: an event from outside may neither write nor remove a key of
// it, or a publisher could make a destroying plan look harmless before it is approved.
func TestPublishersCannotWriteAPlanSummary(t *testing.T) {
	t.Parallel()
	b := reviewed(t)
	b.apply(message.Event{Event: "LAUNCH", Machine: "reviewed-env"})
	b.apply(completed(b.runOf("plan"), message.OutcomeNoChanges, message.Metadata{"plan.changes": false, "plan.destroy": json.Number("0")}))
	require.Equal(t, "RUN", b.stack.State)

	for _, md := range []message.Metadata{
		{"plan.destroy": json.Number("0"), "branch": "x"},
		{"plan.addresses": "[]"},
		{"plan.runId": nil},
		{"drift-check.drift": false},
	} {
		d := b.apply(message.Event{Event: "CHANGE", Metadata: md})
		require.Equal(t, Rejected, d.Outcome, "metadata %v", md)
		require.Contains(t, d.Reason, "is written only by the results of task")
		require.Equal(t, "RUN", b.stack.State)
	}
	d := b.apply(message.Event{Event: "APPROVE", Approval: true, By: "alice", Metadata: message.Metadata{"plan.destroy": json.Number("0")}})
	require.Equal(t, Rejected, d.Outcome, "not even an approver writes the summary")

	// Keys that only look alike are the publisher's: another prefix, or no dot after the name.
	d = b.apply(message.Event{Event: "CHANGE", Metadata: message.Metadata{"planner.x": "1", "plan": "y", "apply.note": "z"}})
	require.Equal(t, Applied, d.Outcome, d.Reason)
	require.Equal(t, json.Number("0"), b.stack.Metadata["plan.destroy"])
}

// A Terraform state's key is `<machine>/<stackId>/<source key>`, and both stack ids and source
// keys may hold '/': with sources `app` and `envs/app` in one machine, stack `prod`'s state of
// envs/app is the key of stack `prod/envs`'s state of app. A publisher could then create
// `prod/envs` and have its DESTROY destroy prod's resources; such stack ids are refused.
func TestStackIDsThatShareAnotherStacksStateAreRefused(t *testing.T) {
	t.Parallel()
	src := `version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: UP}]
  UP:
    tasks: [app, env, local]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE: {terminal: true}
tasks:
  app:
    executor: terraform
    config: {source: {type: s3, bucket: b, key: app/}, action: apply}
  env:
    executor: terraform
    config: {source: {type: s3, bucket: b, key: envs/app}, action: apply}
  local:
    executor: terraform
    config: {source: {type: local, location: tf/undefined}, action: apply}
`
	m, err := machine.Parse("nested", "nested.yml", []byte(src), executorkinds.All)
	require.NoError(t, err)
	for _, id := range []string{"prod/envs", "a/b/envs", "x/tf"} {
		b := setup(t)
		b.m = m
		d := b.apply(message.Event{StackID: id, Event: "LAUNCH", Machine: "nested"})
		require.Equal(t, Rejected, d.Outcome, id)
		require.Contains(t, d.Reason, "would share the Terraform state", id)
	}
	for _, id := range []string{"prod", "prod/env", "envs", "envs/prod", "tf"} {
		b := setup(t)
		b.m = m
		d := b.apply(message.Event{StackID: id, Event: "LAUNCH", Machine: "nested"})
		require.Equal(t, Applied, d.Outcome, "%s: %s", id, d.Reason)
	}
}

// Nor may another task's results write the summary: a Lambda function's outputs are whatever it
// returns, so its result fails rather than rewrite what the approver will read.
func TestOtherTasksCannotWriteAPlanSummary(t *testing.T) {
	t.Parallel()
	src := `version: 1
events: [LAUNCH, CHANGES]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: PLAN}]
  PLAN:
    tasks: [plan, notes]
    on:
      CHANGES: [{action: advance, state: DONE}]
      NEXT: [{action: advance, state: DONE}]
  DONE: {terminal: true}
tasks:
  plan:
    executor: terraform
    config: {source: {type: s3, bucket: b, key: app}, action: plan}
    events: {changes: CHANGES}
  notes:
    executor: lambda
    config: {name: notes}
`
	m, err := machine.Parse("two", "two.yml", []byte(src), executorkinds.All)
	require.NoError(t, err)
	b := setup(t)
	b.m = m
	require.Equal(t, Applied, b.apply(message.Event{Event: "LAUNCH", Machine: "two"}).Outcome)
	d := b.apply(completed(b.runOf("notes"), "", message.Metadata{"plan.destroy": json.Number("0"), "ok": "1"}))
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, KindTaskFailed, d.History[0].Kind)
	require.Contains(t, d.History[0].Reason, `metadata key "plan.destroy" is written only by the results of task plan`)
	require.NotContains(t, b.stack.Metadata, "plan.destroy")

	d = b.apply(completed(b.runOf("plan"), message.OutcomeNoChanges, message.Metadata{"plan.destroy": json.Number("0")}))
	require.Equal(t, KindTaskDone, d.History[0].Kind, "the plan writes its own summary")
	require.Equal(t, json.Number("0"), b.stack.Metadata["plan.destroy"])
}

// An approval sent with the version its approver saw (`stackseam approve --if-version`) is
// ignored once a CHANGE made another plan: it never applies a plan nobody looked at.
func TestAnApprovalOfAReplacedPlanIsIgnored(t *testing.T) {
	t.Parallel()
	b := reviewed(t)
	b.apply(message.Event{Event: "LAUNCH", Machine: "reviewed-env"})
	b.apply(completed(b.runOf("plan"), message.OutcomeChanges, message.Metadata{"plan.destroy": json.Number("0")}))
	require.Equal(t, "AWAITING-APPROVAL", b.stack.State)
	seen := b.stack.Version

	b.apply(message.Event{Event: "CHANGE", Metadata: message.Metadata{"count": json.Number("0")}})
	b.apply(completed(b.runOf("plan"), message.OutcomeChanges, message.Metadata{"plan.destroy": json.Number("9")}))
	require.Equal(t, "AWAITING-APPROVAL", b.stack.State)

	d := b.apply(message.Event{Event: "APPROVE", Approval: true, By: "alice", IfVersion: &seen})
	require.Equal(t, Ignored, d.Outcome)
	require.Equal(t, "AWAITING-APPROVAL", b.stack.State)
	now := b.stack.Version
	d = b.apply(message.Event{Event: "APPROVE", Approval: true, By: "alice", IfVersion: &now})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "APPLY", b.stack.State)
}
