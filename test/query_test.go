package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/internal/settings"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

// The read path as deployed: the shipped `stackseam` binary, given only a stack name, reads the
// stack's outputs from CloudFormation (a protocol-level fake) and invokes the query function
// through the Lambda Invoke API (the Lambda fake, which hands each invocation to the real query
// bootstrap under the Runtime Interface Emulator), with the environment, timeout and memory the
// construct's template gives the function, against the TLS-only database reached through the
// Secrets Manager fake. Only endpoints and the test CA are swapped, as in deployed_test.go.
func TestDeployedQueryFunctionAnswersTheCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tpl := synthesizeDeployed(t)
	props := tpl.props(t, "Query/Resource")
	tplEnv := props["Environment"].(map[string]any)["Variables"].(map[string]any)
	require.Empty(t, settings.Query.CheckDeployed(slices.Collect(maps.Keys(tplEnv))))
	timeout := time.Duration(number(t, props["Timeout"], "Query Timeout")) * time.Second
	memory := number(t, props["MemorySize"], "Query MemorySize")

	// The database as deployed, with stacks the state manager's store wrote.
	server := harness.TLSDatabaseServer(t)
	db := server.AppDatabase(t)
	secrets := harness.NewSecretsFake(t)
	secrets.Put(dbSecretID, db.Secret())
	// Written as the state manager writes it: the app user, through the secret, so the tables
	// are the app user's.
	rw, err := store.Open(ctx, store.Config{SecretID: dbSecretID, Secrets: harness.SecretsClient(secrets), SSLRootCert: server.RootCertPath()})
	require.NoError(t, err)
	t.Cleanup(rw.Close)
	_, err = rw.Migrate(ctx)
	require.NoError(t, err)
	qa, err := catalog.ParseFile(filepath.Join(harness.RepoRoot(t), "machines", "qa-env.yml"))
	require.NoError(t, err)
	apply := func(key string, ev message.Event) *engine.Stack {
		res, err := rw.Apply(ctx, store.ApplyInput{Key: key, StackID: ev.StackID, MessageID: key, Event: ev},
			func(cur *engine.Stack) (engine.Decision, error) {
				return engine.Apply(engine.Input{Stack: cur, Machine: qa, Event: ev, Now: time.Now().UTC(), NewRunID: newID}), nil
			})
		require.NoError(t, err)
		return res.Decision.Stack
	}
	apply("m1", message.Event{StackID: "qa-1", Event: "LAUNCH", Machine: "qa-env", Metadata: message.Metadata{"appVersion": "2.4.1"}})
	apply("m2", message.Event{StackID: "qa-2", Event: "LAUNCH", Machine: "qa-env"})
	apply("m3", message.Event{StackID: "qa-1", Event: "LAUNCH"}) // not allowed now: rejected, in the history

	// The query bootstrap under the emulator, with the template's environment.
	swaps := map[string]string{tpl.id(t, "DatabaseSecret/Attachment/Resource"): secrets.ARN(dbSecretID)}
	env := append(harness.AWSEnv(t), secrets.Env(), "DATABASE_SSLROOTCERT="+server.RootCertPath())
	for _, name := range slices.Sorted(maps.Keys(tplEnv)) {
		env = append(env, name+"="+localValue(t, name, tplEnv[name], swaps, ""))
	}
	rie := harness.StartRIE(t, "Query", harness.RIEConfig{
		Bootstrap: harness.BuildBootstrap(t, "./functions/query"), Env: env,
		Name: "deployed-query", Timeout: timeout, MemoryMB: memory,
	})
	// Lambda's Invoke API in front of it: the emulator serves one function under a fixed path,
	// so the fake takes the invocation by the function's deployed name and hands it over; a
	// failed invocation carries X-Amz-Function-Error as Lambda sends it.
	lambdaFake := harness.NewLambdaFake(t)
	lambdaFake.Function("Deployed-Query-abc123", func(ctx context.Context, payload []byte) harness.LambdaResponse {
		res, err := rie.Invoke(ctx, payload)
		if err != nil {
			return harness.HandlerError("InvokeError", err.Error())
		}
		if res.Failed {
			return harness.LambdaResponse{Payload: res.Payload, FunctionError: "Unhandled"}
		}
		return harness.LambdaResponse{Payload: res.Payload}
	})
	cfn := harness.NewCloudFormationFake(t)
	cfn.Put("Deployed", harness.FakeStack{Outputs: map[string]string{
		deployed.OutputQueryFunctionName: "Deployed-Query-abc123",
		deployed.OutputEventQueueURL:     "http://127.0.0.1:1/000000000000/unused.fifo",
		deployed.OutputBucketName:        "unused",
	}})

	// The operator's machine: credentials and a stack name, no database and no queue URL.
	cli := harness.BuildBinary(t, "./cmd/stackseam")
	cliEnv := []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "AWS_REGION=" + harness.Region,
		"AWS_ACCESS_KEY_ID=" + harness.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + harness.SecretAccessKey,
		"AWS_ENDPOINT_URL_CLOUDFORMATION=" + cfn.URL, "AWS_ENDPOINT_URL_LAMBDA=" + lambdaFake.URL,
		deployed.EnvStackName + "=Deployed"}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(cli, args...)
		cmd.Env = cliEnv
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return code, stdout.String(), stderr.String()
	}

	code, stdout, stderr := run("stacks")
	require.Equal(t, 0, code, "stderr: %s\nfunction: %s", stderr, rie.Output())
	require.Regexp(t, `(?m)^qa-1\s+qa-env\s+DEPLOY\s`, stdout)
	require.Regexp(t, `(?m)^qa-2\s+qa-env\s+DEPLOY\s`, stdout)

	code, stdout, stderr = run("show", "qa-1", "--output", "json")
	require.Equal(t, 0, code, stderr)
	var shown struct {
		ID       string         `json:"id"`
		State    string         `json:"state"`
		Metadata map[string]any `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &shown))
	require.Equal(t, "qa-1", shown.ID)
	require.Equal(t, "2.4.1", shown.Metadata["appVersion"])

	code, stdout, stderr = run("history", "qa-1")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "LAUNCH rejected: event LAUNCH is not allowed in state DEPLOY")

	code, _, stderr = run("show", "never-was")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "stack never-was does not exist")

	// Following a live stack: the CLI polls the function with its cursor and stops when the
	// stack is removed.
	follow := exec.Command(cli, "history", "--follow", "qa-2")
	follow.Env = cliEnv
	var followed harness.SyncBuffer
	follow.Stdout, follow.Stderr = &followed, &followed
	require.NoError(t, follow.Start())
	exited := make(chan error, 1)
	go func() { exited <- follow.Wait() }()
	require.Eventually(t, func() bool { return strings.Contains(followed.String(), "task deploy dispatched") },
		time.Minute, 50*time.Millisecond, "the follower printed the timeline so far: %s", followed.String())
	teardown := apply("m4", message.Event{StackID: "qa-2", Event: "DESTROY"})
	require.Len(t, teardown.Tasks, 1)
	apply("m5", message.Event{StackID: "qa-2", Event: message.EventTaskCompleted, TaskRunID: teardown.Tasks[0].RunID,
		Task: &message.TaskSpec{Name: teardown.Tasks[0].Name}})
	select {
	case err := <-exited:
		require.NoError(t, err, followed.String())
	case <-time.After(time.Minute):
		_ = follow.Process.Kill()
		t.Fatalf("history --follow did not stop after the removal: %s", followed.String())
	}
	require.Contains(t, followed.String(), "DESTROY: DEPLOY → TEARDOWN")
	require.Contains(t, followed.String(), "removed in TEARDOWN")
	require.Equal(t, 1, strings.Count(followed.String(), "created by LAUNCH"), "each entry printed once")

	// The web console with the stack name only: its pages read through the same function (the
	// machine files from the repository's folder; the outputs' bucket is not a real one here).
	console := exec.Command(cli, "console", "--listen", "127.0.0.1:0", "--machines-dir", filepath.Join(harness.RepoRoot(t), "machines"))
	console.Env = cliEnv
	var consoleOut harness.SyncBuffer
	console.Stdout, console.Stderr = &consoleOut, &consoleOut
	require.NoError(t, console.Start())
	t.Cleanup(func() { _ = console.Process.Kill(); _ = console.Wait() })
	var base string
	require.Eventually(t, func() bool {
		_, rest, ok := strings.Cut(consoleOut.String(), "open ")
		base, _, _ = strings.Cut(rest, "\n")
		return ok && strings.HasSuffix(base, "/")
	}, time.Minute, 50*time.Millisecond, "the console printed its address: %s", consoleOut.String())
	getJSON := func(path string, v any) {
		t.Helper()
		res, err := http.Get(base + path)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, "%s: %s\nconsole: %s\nfunction: %s", path, body, consoleOut.String(), rie.Output())
		require.NoError(t, json.Unmarshal(body, v))
	}
	var listed struct {
		Total  int `json:"total"`
		Stacks []struct {
			ID    string   `json:"id"`
			State string   `json:"state"`
			Stuck []string `json:"stuck"`
		} `json:"stacks"`
	}
	getJSON("api/stacks", &listed)
	require.Equal(t, 1, listed.Total, "qa-2 was removed")
	require.Equal(t, "qa-1", listed.Stacks[0].ID)
	require.Equal(t, "DEPLOY", listed.Stacks[0].State)
	require.Len(t, listed.Stacks[0].Stuck, 1)
	require.Contains(t, listed.Stacks[0].Stuck[0], "rejected: 1 message(s)", "the rejected LAUNCH, asked as troubles")
	var story struct {
		Entries []struct {
			Text string `json:"text"`
		} `json:"entries"`
	}
	getJSON("api/stack?id=qa-1", &story)
	var texts []string
	for _, e := range story.Entries {
		texts = append(texts, e.Text)
	}
	require.Contains(t, strings.Join(texts, "\n"), "LAUNCH rejected: event LAUNCH is not allowed in state DEPLOY")
	var machines []struct {
		Name   string         `json:"name"`
		Counts map[string]int `json:"counts"`
	}
	getJSON("api/machines", &machines)
	counted := map[string]map[string]int{}
	for _, m := range machines {
		counted[m.Name] = m.Counts
	}
	require.Equal(t, 1, counted["qa-env"]["DEPLOY"], "stacks per state, asked as stateCounts")

	// A request the function refuses, sent as any Invoke caller could: strict parsing answers
	// with the reason, and the invocation itself succeeds.
	res, err := rie.Invoke(ctx, []byte(`{"stacks": {"limit": 1, "schema": "other"}}`))
	require.NoError(t, err)
	require.False(t, res.Failed, "%s", res.Payload)
	var refused query.Response
	require.NoError(t, json.Unmarshal(res.Payload, &refused))
	require.NotNil(t, refused.Error)
	require.Contains(t, refused.Error.Message, `unknown field "schema"`)

	// Every invocation went to the deployed name, in Lambda mode, over TLS.
	calls := lambdaFake.Invocations("Deployed-Query-abc123")
	require.Greater(t, len(calls), 6, "stacks, show, history (a page, then the stack), show of a missing stack, and the follower's polls")
	require.Equal(t, []string{"Deployed", "Deployed", "Deployed", "Deployed", "Deployed", "Deployed"}, cfn.Calls(), "five commands and the console")
	require.Regexp(t, `"msg":"query function ready".*"lambda":true`, rie.Output())
	require.Contains(t, rie.Output(), fmt.Sprintf("Memory Size: %d MB", memory))
	var encrypted, plain int
	require.NoError(t, rw.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
		FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1`, db.User).Scan(&encrypted, &plain))
	require.Zero(t, plain, "every connection of the database user is encrypted")
	require.Positive(t, encrypted)
}
