package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/test/harness"
)

// consoleGet returns the status and body of a GET on a running console.
func consoleGet(t *testing.T, base, path string) (int, string) {
	t.Helper()
	res, err := http.Get(base + strings.TrimPrefix(path, "/"))
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// With only --stack-name, the console serves exactly what it serves on the database: every read
// goes through the query function (strict requests), the stack's outputs name the bucket (logs,
// machines/) and the queue its actions send to.
func TestConsoleWithStackNameReadsThroughTheQueryFunction(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	r.record()
	_, err := r.st.Pool().Exec(context.Background(), `INSERT INTO parked_outbox (id, stack_id, destination, body, created_at, parked_at, reason)
		VALUES (999999, 'qa', 'task', '{}', now(), now(), 'message too large for the queue')`)
	require.NoError(t, err)
	env, cfn, lambdaFake := deployedEnv(t, r)
	bucket := harness.CreateBucket(t, "console-deployed")
	harness.UploadDir(t, bucket, "machines/", "../../machines")
	queueURL, _ := harness.CreateQueue(t, "console-deployed-events", true, 5)
	approvalsURL, _ := harness.CreateQueue(t, "console-deployed-approvals", true, 5)
	cfn.Put("ConsoleDeployed", harness.FakeStack{Outputs: map[string]string{
		deployed.OutputEventQueueURL:     queueURL,
		deployed.OutputApprovalQueueURL:  approvalsURL,
		deployed.OutputQueryFunctionName: "stackseam-query-fn",
		deployed.OutputBucketName:        bucket,
	}})
	remoteEnv := maps.Clone(env)
	remoteEnv[deployed.EnvStackName] = "ConsoleDeployed"
	remoteEnv["STACKSEAM_OPERATOR"] = "ops-bot"
	// The same console on the database, told the bucket by hand.
	directEnv := awsEnv(t, map[string]string{"DATABASE_URL": r.url, "BUCKET": bucket, "MACHINES_BUCKET": bucket})

	clock := func() time.Time { return now }
	remote, out := startConsoleCommandAt(t, remoteEnv, clock, "--listen", "127.0.0.1:0", "--allow-actions")
	require.Contains(t, out.String(), "operator ops-bot")
	direct, _ := startConsoleCommandAt(t, directEnv, clock, "--listen", "127.0.0.1:0")

	var story storyJSON
	_, body := consoleGet(t, direct, "/api/stack?id=feature-123")
	require.NoError(t, json.Unmarshal([]byte(body), &story))
	run := story.Runs[0]
	key := message.TaskLogKey("feature-env", "feature-123", run.Task, run.RunID)
	harness.PutObject(t, bucket, key, "terraform apply\nApply complete!\n")

	before := len(lambdaFake.Invocations("stackseam-query-fn"))
	same := func() {
		t.Helper()
		for _, path := range []string{"/api/stacks", "/api/stacks?machine=qa-env", "/api/stacks?q=FEATURE", "/api/stacks?state=NOPE",
			"/api/stack?id=feature-123", "/api/stack?id=feature-9", "/api/stack?id=qa", "/api/stack?id=nobody",
			"/api/machines", "/api/machine?name=qa-env", "/api/machine/graph.svg?name=qa-env",
			"/api/log?stack=feature-123&run=" + url.QueryEscape(run.RunID), "/api/log?stack=feature-123&run=not-a-run"} {
			codeDirect, bodyDirect := consoleGet(t, direct, path)
			codeRemote, bodyRemote := consoleGet(t, remote, path)
			require.Equal(t, codeDirect, codeRemote, path)
			require.Equal(t, bodyDirect, bodyRemote, path)
		}
	}
	same()
	_, body = consoleGet(t, remote, "/api/stacks?machine=qa-env")
	var list stacksJSON
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Stacks, 1)
	require.Equal(t, []string{"parked: 1 message(s) that can never be sent, the last: message too large for the queue"}, list.Stacks[0].Stuck)
	_, body = consoleGet(t, remote, "/api/log?stack=feature-123&run="+url.QueryEscape(run.RunID))
	require.Contains(t, body, "Apply complete!", "the log is read from the bucket the stack outputs")

	// A machine file that no longer parses: both fall back to the version qa last ran on, which
	// the remote console asks the query function for.
	harness.PutObject(t, bucket, "machines/qa-env.yml", "states: [")
	same()
	_, body = consoleGet(t, remote, "/api/stack?id=qa")
	require.NoError(t, json.Unmarshal([]byte(body), &story))
	require.Equal(t, []string{"DESTROY", "UPDATE"}, story.Accepts)

	// The live stream asks the function for the change mark.
	res, err := http.Get(remote + "api/live")
	require.NoError(t, err)
	line, err := readUntil(res.Body, "event: change")
	res.Body.Close()
	require.NoError(t, err, line)

	asked := map[string]bool{}
	for _, call := range lambdaFake.Invocations("stackseam-query-fn")[before:] {
		_, bad := query.ParseRequest(call.Payload)
		require.Nil(t, bad, "the console sends strict requests: %s", call.Payload)
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(call.Payload, &fields))
		for k := range fields {
			asked[k] = true
		}
	}
	for _, q := range []string{"summaries", "troubles", "stateCounts", "stack", "history", "machineVersion", "changeMark"} {
		require.True(t, asked[q], "the console asked the function %s", q)
	}

	// An action goes to the queue the stack outputs.
	var sess sessionJSON
	_, body = consoleGet(t, remote, "/api/session")
	require.NoError(t, json.Unmarshal([]byte(body), &sess))
	// Approvals go to the approvals queue the stack outputs, signed with the caller's AWS identity.
	require.True(t, sess.Approvals, sess.ApprovalsMissing)
	require.True(t, strings.HasPrefix(sess.Approver, "arn:aws:"), "by is the STS caller identity: %q", sess.Approver)
	payload, err := json.Marshal(map[string]any{"stack": "qa", "event": "DESTROY", "version": story.Stack.Version})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, remote+"api/send", strings.NewReader(string(payload)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(csrfHeader, sess.CSRF)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	sent, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, string(sent))
	got := receiveOne(t, queueURL)
	require.Equal(t, "qa", got.body["stackId"])
	require.Equal(t, "DESTROY", got.body["event"])
}

// readUntil reads a stream until a line starts with prefix.
func readUntil(r io.Reader, prefix string) (string, error) {
	var seen strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		seen.Write(buf[:n])
		for _, line := range strings.Split(seen.String(), "\n") {
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		}
		if err != nil {
			return seen.String(), err
		}
	}
}
