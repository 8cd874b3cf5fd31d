package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// recordReviewed gives the console two stacks of machines/reviewed-env.yml: "reviewed" waiting
// for the approval of a plan with changes, and "drifted" moved to DRIFTED by a drift check's
// outcome (its transition carries the drift summary).
func recordReviewed(t *testing.T, b *consoleBundle) {
	t.Helper()
	m, err := catalog.ParseFile("../../machines/reviewed-env.yml")
	require.NoError(t, err)
	b.rec.machines["reviewed-env"] = m
	b.copyMachineFile(t, "reviewed-env.yml")

	at := 4 * time.Hour
	s := b.rec.apply(at, message.Event{StackID: "reviewed", Event: "LAUNCH", Machine: "reviewed-env"})
	run := runOf(s, "plan")
	done := result(s, "plan", message.EventTaskCompleted, "", message.Metadata{
		"plan.runId": run, "plan.log": "s3://stackseam/logs/reviewed-env/reviewed/plan/" + run + ".log",
		"plan.changes": true, "plan.add": 1, "plan.change": 1, "plan.destroy": 1, "plan.replace": 0,
		"plan.addresses": `["create terraform_data.new","update terraform_data.app","delete terraform_data.old"]`})
	done.Outcome = message.OutcomeChanges
	s = b.rec.apply(at+time.Minute, done)
	require.Equal(t, "AWAITING-APPROVAL", s.State)

	s = b.rec.apply(at, message.Event{StackID: "drifted", Event: "LAUNCH", Machine: "reviewed-env"})
	done = result(s, "plan", message.EventTaskCompleted, "", nil)
	done.Outcome = message.OutcomeNoChanges
	s = b.rec.apply(at+time.Minute, done)
	require.Equal(t, "RUN", s.State)
	s = b.rec.apply(at+2*time.Minute, message.Event{StackID: "drifted", Event: "CHECK-DRIFT"})
	run = runOf(s, "drift-check")
	done = result(s, "drift-check", message.EventTaskCompleted, "", message.Metadata{
		"drift-check.drift": true, "drift-check.add": 0, "drift-check.change": 1, "drift-check.destroy": 0, "drift-check.replace": 0,
		"drift-check.addresses": `["update terraform_data.app"]`, "drift-check.drifted": `["terraform_data.app"]`, "drift-check.runId": run})
	done.Outcome = message.OutcomeDrift
	s = b.rec.apply(at+3*time.Minute, done)
	require.Equal(t, "DRIFTED", s.State)
}

func TestConsoleStoryShowsApprovalsAndPlanAndDriftSummaries(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	recordReviewed(t, b)

	var s storyJSON
	b.get(t, "/api/stack?id=reviewed", &s)
	require.Equal(t, []string{"APPROVE", "REJECT"}, s.Approvals)
	require.Equal(t, []string{"CHANGE", "DESTROY"}, s.Accepts, "approval events are not offered as plain events")
	require.Len(t, s.Plans, 1)
	p := s.Plans[0]
	require.Equal(t, "plan", p.Kind)
	require.True(t, p.Found)
	require.Equal(t, []string{"create terraform_data.new", "update terraform_data.app", "delete terraform_data.old"}, p.Addresses)
	require.EqualValues(t, 1, p.Add)
	require.EqualValues(t, 0, p.Replace)
	require.True(t, strings.HasSuffix(p.Log, "/"+p.RunID+".log"), p.Log)

	b.get(t, "/api/stack?id=drifted", &s)
	require.Empty(t, s.Approvals)
	var summaries []planSummaryJSON
	for _, e := range s.Entries {
		if e.Summary != nil {
			require.Contains(t, e.Text, "DRIFTED: DRIFT-CHECK → DRIFTED")
			summaries = append(summaries, *e.Summary)
		}
	}
	require.Len(t, summaries, 1, "the transition the drift outcome caused carries its summary")
	require.Equal(t, "drift", summaries[0].Kind)
	require.Equal(t, []string{"terraform_data.app"}, summaries[0].Drifted)
	require.EqualValues(t, 1, summaries[0].Change)
}

func TestConsoleApproveSendsToTheApprovalsQueue(t *testing.T) {
	t.Parallel()
	eventsURL, _ := harness.CreateQueue(t, "console-approve-events", true, 3)
	approvalsURL, _ := harness.CreateQueue(t, "console-approvals", true, 3)
	sqsClient := harness.SQSClient(t)

	// Read-only: refused, whatever the page sends.
	ro := setupConsole(t, nil)
	recordReviewed(t, ro)
	code, body := ro.post(t, "/api/approve", map[string]any{"stack": "reviewed", "event": "APPROVE", "version": 1}, nil)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, body["error"], "read-only")

	b := setupConsole(t, func(s *consoleServer) {
		s.allowActions = true
		s.publish = sqsPublisher(sqsClient, eventsURL)
		s.approve = sqsPublisher(sqsClient, approvalsURL)
		s.approver = "arn:aws:sts::000000000000:assumed-role/release/tester"
	})
	recordReviewed(t, b)
	var sess sessionJSON
	b.get(t, "/api/session", &sess)
	require.True(t, sess.Approvals)
	require.Equal(t, "arn:aws:sts::000000000000:assumed-role/release/tester", sess.Approver)
	var s storyJSON
	b.get(t, "/api/stack?id=reviewed", &s)
	version := s.Stack.Version
	approve := map[string]any{"stack": "reviewed", "event": "APPROVE", "version": version, "comment": "reviewed with the DBA"}

	b.requireForgeriesRefused(t, "/api/approve", approve)
	// An approval through the plain send is refused: the event queue would reject it.
	code, body = b.post(t, "/api/send", map[string]any{"stack": "reviewed", "event": "APPROVE", "version": version}, nil)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body["error"], "approvals queue only")
	// A state that handles no approval, an event that is not one, a stale version, a comment
	// too long: refused.
	var d storyJSON
	b.get(t, "/api/stack?id=drifted", &d)
	code, body = b.post(t, "/api/approve", map[string]any{"stack": "drifted", "event": "APPROVE", "version": d.Stack.Version}, nil)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body["error"], "state DRIFTED of stack drifted handles no approval APPROVE")
	code, _ = b.post(t, "/api/approve", map[string]any{"stack": "reviewed", "event": "DESTROY", "version": version}, nil)
	require.Equal(t, http.StatusConflict, code)
	code, _ = b.post(t, "/api/approve", map[string]any{"stack": "reviewed", "event": "APPROVE", "version": version - 1}, nil)
	require.Equal(t, http.StatusConflict, code)
	code, body = b.post(t, "/api/approve", map[string]any{"stack": "reviewed", "event": "REJECT", "version": version,
		"comment": strings.Repeat("x", message.MaxCommentLen+1)}, nil)
	require.Equal(t, http.StatusBadRequest, code, body)

	code, body = b.post(t, "/api/approve", approve, map[string]string{"Origin": b.ts.URL, "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "arn:aws:sts::000000000000:assumed-role/release/tester", body["operator"])
	m := receiveOne(t, approvalsURL)
	require.Equal(t, map[string]any{"stackId": "reviewed", "event": "APPROVE",
		"by": "arn:aws:sts::000000000000:assumed-role/release/tester", "comment": "reviewed with the DBA", "ifVersion": float64(2)}, m.body,
		"the body `stackseam approve --if-version 2` sends: the version the page showed")
	require.Equal(t, "reviewed", m.group)

	// Without an approvals queue the console says so rather than sending anywhere else.
	noQueue := setupConsole(t, func(s *consoleServer) {
		s.allowActions = true
		s.publish = sqsPublisher(sqsClient, eventsURL)
		s.approvalsMissing = "no approvals queue: set --approval-queue-url"
	})
	recordReviewed(t, noQueue)
	noQueue.get(t, "/api/stack?id=reviewed", &s)
	code, body = noQueue.post(t, "/api/approve", map[string]any{"stack": "reviewed", "event": "APPROVE", "version": s.Stack.Version}, nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body["error"], "--approval-queue-url")
}
