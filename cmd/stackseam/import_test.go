package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

// TestImportCloudSeamDynamoDBScan: the JSON `aws dynamodb scan` prints of CloudSeam's Stacks table
// (the shape its DynamoDB repository writes: the Stack object's own properties, _state included,
// plus createdAt/updatedAt) imports with state, metadata and tasks; stacks stackseam cannot take
// are refused with reasons (exit 1); --dry-run writes nothing; importing twice changes nothing.
func TestImportCloudSeamDynamoDBScan(t *testing.T) {
	t.Parallel()
	url := harness.DatabaseURL(t)
	env := map[string]string{"DATABASE_URL": url}
	args := []string{"import", "cloudseam", "--dynamodb-scan", "testdata/cloudseam-dynamodb-scan.json", "--machines", "../../machines"}

	code, out, stderr := runEnv(t, env, now, append(args, "--dry-run")...)
	require.Equal(t, exitFail, code, "two stacks are refused: %s", stderr)
	require.Contains(t, out, "would import  feature-42")
	require.Contains(t, out, "refused       nested")
	require.Contains(t, out, "metadata.deep is an object")
	require.Contains(t, out, `refused       release 1.0`)
	require.Contains(t, out, "4 stacks: 2 would be imported (dry run: nothing was written), 0 already in stackseam, 0 imported before and since removed, 2 refused")
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DatabaseURL: url})
	require.NoError(t, err)
	defer st.Close()
	stack, err := st.GetStack(ctx, "feature-42")
	require.NoError(t, err)
	require.Nil(t, stack, "a dry run writes nothing")

	code, out, _ = runEnv(t, env, now, append(args, "--output", "json")...)
	require.Equal(t, exitFail, code)
	var report struct {
		Stacks []importResult `json:"stacks"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &report))
	outcomes := map[string]string{}
	for _, r := range report.Stacks {
		outcomes[r.StackID] = r.Outcome
	}
	require.Equal(t, map[string]string{"feature-42": "imported", "master": "imported", "nested": "refused", "release 1.0": "refused"}, outcomes)

	stack, err = st.GetStack(ctx, "feature-42")
	require.NoError(t, err)
	require.Equal(t, "feature-env", stack.Machine)
	require.Equal(t, "PROVISION", stack.State)
	require.Equal(t, "INIT", stack.PreviousState)
	require.Equal(t, message.Metadata{"branch": "feature-42", "replicas": json.Number("3"), "public": true}, stack.Metadata,
		"a null CloudSeam kept is removed")
	require.Equal(t, "2024-05-01T10:00:00Z", stack.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	require.Len(t, stack.Tasks, 2)
	require.Equal(t, message.TaskCompleted, stack.Tasks[0].Status)
	require.Equal(t, message.TaskFailed, stack.Tasks[1].Status)
	require.Equal(t, "seed failed: timeout", stack.Tasks[1].Description)
	require.NotEmpty(t, stack.Tasks[1].RunID)

	code, out, _ = runEnv(t, env, now, args...)
	require.Equal(t, exitFail, code)
	require.Contains(t, out, "0 imported, 2 already in stackseam", "importing twice changes nothing")
	again, err := st.GetStack(ctx, "feature-42")
	require.NoError(t, err)
	require.Equal(t, stack.Tasks, again.Tasks, "not even the run ids")
}

func TestImportNeedsItsSource(t *testing.T) {
	t.Parallel()
	runFailing(t, exitUsage, "stackseam import cloudseam", "import")
	runFailing(t, exitUsage, "--cloudseam-table", "import", "cloudseam", "--cloudseam-table", "stacks; DROP TABLE x")
}

// TestHistorySaysImportedAndByTaskName: the history of an imported stack starts with where it came
// from, and a run settled by a result naming only its task says so.
func TestHistorySaysImportedAndByTaskName(t *testing.T) {
	t.Parallel()
	url := harness.DatabaseURL(t)
	env := map[string]string{"DATABASE_URL": url}
	code, _, _ := runEnv(t, env, now, "import", "cloudseam", "--dynamodb-scan", "testdata/cloudseam-dynamodb-scan.json")
	require.Equal(t, exitFail, code, "two stacks of the scan are refused")
	r := newRecorderOn(t, url, store.Config{DatabaseURL: url})
	st := r.apply(time.Minute, message.Event{StackID: "master", Event: "UPDATE", Metadata: message.Metadata{"appVersion": "2.4.0"}})
	require.Equal(t, "DEPLOY", st.State)
	r.apply(2*time.Minute, message.Event{StackID: "master", Event: message.EventTaskCompleted, Task: &message.TaskSpec{Name: "deploy"}})

	code, out, stderr := runEnv(t, env, now, "history", "master")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, out, "imported from cloudseam dynamodb scan cloudseam-dynamodb-scan.json in RUN")
	require.Contains(t, out, "task deploy completed in 1m00s (result by task name)")
}

func TestCloudSeamRecordToStack(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ok := func(data string) *cloudSeamRecord {
		return &cloudSeamRecord{id: "s", machine: "m", data: json.RawMessage(data)}
	}
	st, err := ok(`{"id":"s","machine":"m","_state":"RUN","previousState":null,"tasks":[{"name":"a","satisfied":true},
		{"name":"b","satisfied":false},{"name":"c","status":"ERROR","errorMessage":"bad\u0000byte"}],"metadata":{"k":1.5,"gone":null}}`).stack(at)
	require.NoError(t, err)
	require.Equal(t, "RUN", st.State)
	require.Empty(t, st.PreviousState)
	require.Equal(t, message.Metadata{"k": json.Number("1.5")}, st.Metadata)
	require.Equal(t, []message.TaskStatus{message.TaskCompleted, message.TaskPending, message.TaskFailed},
		[]message.TaskStatus{st.Tasks[0].Status, st.Tasks[1].Status, st.Tasks[2].Status})
	require.Equal(t, "bad\uFFFDbyte", st.Tasks[2].Description, "text PostgreSQL can store")
	require.NotEqual(t, st.Tasks[0].RunID, st.Tasks[1].RunID)

	// The plain `state` of a hand-written export is read too.
	st, err = ok(`{"state":"RUN","tasks":[],"metadata":{}}`).stack(at)
	require.NoError(t, err)
	require.Equal(t, "s", st.ID)
	require.Equal(t, "m", st.Machine)

	for data, reason := range map[string]string{
		`{"id":"other","_state":"RUN"}`:                           `the row's id "s" and the stored stack's id "other" differ`,
		`{"_state":"run"}`:                                        `state "run" is not a state name`,
		`{"_state":"RUN","previousState":"../x"}`:                 `previous state "../x" is not a state name`,
		`{"_state":"RUN","tasks":[{"name":"a","status":"DONE"}]}`: `task a has status "DONE"`,
		`{"_state":"RUN","tasks":[{"name":"a","status":"PENDING"},{"name":"a","status":"PENDING"}]}`: `task "a" is not a task name, or is listed twice`,
		`{"_state":"RUN","metadata":{"x":[1]}}`:                                                      "metadata.x is a list",
		`[1]`:                                                                                        "not CloudSeam's JSON",
	} {
		_, err := ok(data).stack(at)
		require.ErrorContains(t, err, reason, data)
	}
	_, err = (&cloudSeamRecord{id: "a//b", machine: "m", data: json.RawMessage(`{"_state":"RUN"}`)}).stack(at)
	require.ErrorContains(t, err, "is not a valid stack id")
}
