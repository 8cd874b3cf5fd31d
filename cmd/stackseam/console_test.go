package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/test/harness"
)

// consoleBundle is a console on a real database holding the recorder's stacks.
type consoleBundle struct {
	rec    *recorder
	srv    *consoleServer
	ts     *httptest.Server
	client *http.Client
	dir    string // the machine files the console reads and saves
}

// setupConsole records stacks and serves a console over them. The machine files are a copy of
// machines/, so saving does not touch the repository.
func setupConsole(t *testing.T, configure func(*consoleServer)) *consoleBundle {
	t.Helper()
	rec := newRecorder(t)
	rec.record()
	dir := t.TempDir()
	srv := &consoleServer{data: consoleData{api: query.NewReader(rec.st)}, machines: dirMachines{dir: dir}, operator: "tester", csrf: "csrf-value",
		now: func() time.Time { return now }, poll: 20 * time.Millisecond, logsMissing: "no AWS in this test"}
	if configure != nil {
		configure(srv)
	}
	ts := httptest.NewServer(srv.handler())
	t.Cleanup(func() {
		ts.CloseClientConnections() // a browser's live stream would otherwise hold Close up
		ts.Close()
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b := &consoleBundle{rec: rec, srv: srv, ts: ts, client: client, dir: dir}
	b.copyMachineFile(t, "feature-env.yml")
	b.copyMachineFile(t, "qa-env.yml")
	return b
}

// copyMachineFile copies a file of the repository's machines/ into the console's folder.
func (b *consoleBundle) copyMachineFile(t *testing.T, name string) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("../../machines", name))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, name), body, 0o644))
}

func (b *consoleBundle) get(t *testing.T, path string, v any) *http.Response {
	t.Helper()
	res, err := b.client.Get(b.ts.URL + path)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	if v != nil {
		require.Equal(t, http.StatusOK, res.StatusCode, string(body))
		// Decoded into a zero value: json.Unmarshal would keep fields an earlier answer set
		// and this one leaves out (omitempty).
		reflect.ValueOf(v).Elem().SetZero()
		require.NoError(t, json.Unmarshal(body, v), string(body))
	}
	return res
}

// post sends JSON as the page does (CSRF header), with extra headers, and returns the status and
// the decoded body.
func (b *consoleBundle) post(t *testing.T, path string, in any, headers map[string]string) (int, map[string]any) {
	t.Helper()
	body, err := json.Marshal(in)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, b.ts.URL+path, strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(csrfHeader, b.srv.csrf)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := b.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

// requireForgeriesRefused posts in to path as another site's page could (no CSRF header or a
// guessed one, another origin, a cross-site fetch): each is refused by the CSRF checks, not by
// the read-only guard.
func (b *consoleBundle) requireForgeriesRefused(t *testing.T, path string, in any) {
	t.Helper()
	for name, headers := range map[string]map[string]string{
		"no token":         {csrfHeader: ""},
		"wrong token":      {csrfHeader: "guess"},
		"other origin":     {"Origin": "http://attacker.example"},
		"cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
	} {
		code, body := b.post(t, path, in, headers)
		require.Equal(t, http.StatusForbidden, code, name)
		require.NotContains(t, body["error"], "read-only", name)
	}
}

func TestConsoleStacksListsStacksAndMarksStuckOnes(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	// A parked message on qa makes it stuck.
	_, err := b.rec.st.Pool().Exec(context.Background(), `INSERT INTO parked_outbox (id, stack_id, destination, body, created_at, parked_at, reason)
		VALUES (999999, 'qa', 'task', '{}', now(), now(), 'message too large for the queue')`)
	require.NoError(t, err)

	var list stacksJSON
	b.get(t, "/api/stacks", &list)
	byID := map[string]stackRowJSON{}
	for _, s := range list.Stacks {
		byID[s.ID] = s
	}
	require.Contains(t, byID, "feature-9")
	require.Contains(t, byID, "qa")
	require.NotContains(t, byID, "feature-123", "a removed stack is not listed")
	require.Equal(t, "DEPROVISION", byID["feature-9"].State)
	require.Equal(t, 1, byID["feature-9"].Failed)
	require.Len(t, byID["qa"].Stuck, 1)
	require.Contains(t, byID["qa"].Stuck[0], "message too large for the queue")
	require.Empty(t, byID["feature-9"].Stuck, "a failed task alone is not stuck: retry is the operator's call")

	// A pending task past its deadline makes its stack stuck too (the page's now is 13:00).
	_, err = b.rec.st.Pool().Exec(context.Background(),
		`UPDATE stacks SET tasks = jsonb_set(tasks, '{0,deadline}', '"2024-05-01T12:00:00Z"') WHERE id = 'qa'`)
	require.NoError(t, err)
	b.get(t, "/api/stacks?machine=qa-env", &list)
	require.Equal(t, []string{"task deploy is overdue and not settled yet", byID["qa"].Stuck[0]}, list.Stacks[0].Stuck)
	_, err = b.rec.st.Pool().Exec(context.Background(),
		`UPDATE stacks SET tasks = jsonb_set(tasks, '{0,deadline}', '"2024-05-01T14:00:00Z"') WHERE id = 'qa'`)
	require.NoError(t, err)
	b.get(t, "/api/stacks?machine=qa-env", &list)
	require.Len(t, list.Stacks[0].Stuck, 1, "a deadline still ahead is not overdue")
	require.Equal(t, []string{"DEPROVISION"}, list.Machines["feature-env"])

	// Filters and search run on the server.
	b.get(t, "/api/stacks?machine=qa-env", &list)
	require.Len(t, list.Stacks, 1)
	require.Equal(t, "qa", list.Stacks[0].ID)
	b.get(t, "/api/stacks?q=FEATURE", &list)
	require.Len(t, list.Stacks, 1)
	require.Equal(t, "feature-9", list.Stacks[0].ID)
	res := b.get(t, "/api/stacks?q="+strings.Repeat("x", 300), nil)
	require.Equal(t, http.StatusBadRequest, res.StatusCode, "a search the read API refuses is the page's mistake")
}

func TestConsoleStoryTellsTheTimeline(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	var s storyJSON
	b.get(t, "/api/stack?id=feature-123", &s)
	require.Nil(t, s.Stack, "feature-123 was removed")
	require.Contains(t, s.Header, "removed")
	var texts []string
	for _, e := range s.Entries {
		texts = append(texts, e.Text)
	}
	all := strings.Join(texts, "\n")
	require.Contains(t, all, "LAUNCH: INIT → PROVISION")
	require.Contains(t, all, "LAUNCH rejected: event LAUNCH is not allowed in state RUN")
	require.Contains(t, all, "task destroy-infra FAILED after 30s: Error: deleting S3 bucket: BucketNotEmpty")
	require.Len(t, s.Runs, 4)
	require.Equal(t, "failed", s.Runs[2].Status)
	require.Equal(t, int64(30000), s.Runs[2].DurationMS)

	b.get(t, "/api/stack?id=feature-9", &s)
	require.NotNil(t, s.Stack)
	require.Equal(t, "merged", s.Stack.Metadata["reason"])
	// What the state's `on` table handles, NEXT aside.
	require.Equal(t, []string{"DESTROY"}, s.Accepts)
	b.get(t, "/api/stack?id=qa", &s)
	require.Equal(t, []string{"DESTROY", "UPDATE"}, s.Accepts)

	res := b.get(t, "/api/stack?id=nobody", nil)
	require.Equal(t, http.StatusNotFound, res.StatusCode)
}

func TestConsoleEscapesAndSetsSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	evil := `<img src=x onerror="alert(1)"></script><script>alert(2)</script>`
	b.rec.apply(4*time.Hour, message.Event{StackID: "qa", Event: "UPDATE", Metadata: message.Metadata{"note": evil, evil: "key"}})

	res, err := b.client.Get(b.ts.URL + "/api/stack?id=qa")
	require.NoError(t, err)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.NotContains(t, string(raw), "<script>", "JSON answers escape <, > and & so nothing in them is markup")
	require.Contains(t, string(raw), `\u003cscript\u003e`)
	var s storyJSON
	require.NoError(t, json.Unmarshal(raw, &s))
	require.Equal(t, evil, s.Stack.Metadata["note"], "the value itself is kept whole")

	for _, path := range []string{"/", "/static/app.js", "/api/stacks"} {
		res := b.get(t, path, nil)
		require.Equal(t, http.StatusOK, res.StatusCode, path)
		require.Equal(t, contentSecurityPolicy, res.Header.Get("Content-Security-Policy"), path)
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
		require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	}
	require.Contains(t, contentSecurityPolicy, "script-src 'self';")
	// No inline script anywhere in the page: every <script> has a src.
	page, err := consoleAssets.ReadFile("console_web/index.html")
	require.NoError(t, err)
	for _, tag := range strings.Split(string(page), "<script")[1:] {
		require.Contains(t, tag[:strings.Index(tag, ">")], "src=", "inline script in index.html")
	}
	// The app writes values as text only.
	js, err := consoleAssets.ReadFile("console_web/app.js")
	require.NoError(t, err)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		require.NotContains(t, string(js), sink)
	}
}

func TestConsoleLoopbackAnswersLocalHostsOnly(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	req, err := http.NewRequest(http.MethodGet, b.ts.URL+"/api/session", nil)
	require.NoError(t, err)
	req.Host = "attacker.example:80" // a DNS-rebinding page's requests carry its own host name
	res, err := b.client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusMisdirectedRequest, res.StatusCode)
}

func TestConsoleTokenIsRequiredBeyondLoopback(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, func(s *consoleServer) { s.token = "the-token" })
	for _, path := range []string{"/", "/api/stacks", "/?token=wrong", "/api/stacks?token=the-token-but-longer"} {
		res := b.get(t, path, nil)
		require.Equal(t, http.StatusUnauthorized, res.StatusCode, path)
	}
	// The token in the URL sets the cookie and is dropped from the address.
	res := b.get(t, "/?token=the-token", nil)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	require.Equal(t, "/", res.Header.Get("Location"))
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == tokenCookie {
			cookie = c
		}
	}
	require.NotNil(t, cookie)
	require.True(t, cookie.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)

	req, err := http.NewRequest(http.MethodGet, b.ts.URL+"/api/stacks", nil)
	require.NoError(t, err)
	req.AddCookie(cookie)
	res, err = b.client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	req.Header.Del("Cookie")
	req.Header.Set("Authorization", "Bearer the-token")
	res, err = b.client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	// Bound beyond loopback, any Host is fine once the token is right.
	req.Host = "console.internal:8080"
	res, err = b.client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

func TestConsoleBanner(t *testing.T) {
	t.Parallel()
	s := &consoleServer{operator: "alice", token: "abc"}
	out := s.banner("http://host:8080")
	require.Contains(t, out, "http://host:8080/?token=abc")
	require.Contains(t, out, "needs this token")
	require.Contains(t, out, "read-only")
	s = &consoleServer{operator: "alice", allowActions: true}
	out = s.banner("http://127.0.0.1:8080")
	require.NotContains(t, out, "token")
	require.Contains(t, out, "operator alice")
	require.Contains(t, out, "approvals off (no approvals queue")
	s = &consoleServer{operator: "alice", allowActions: true, approve: func(context.Context, message.Event) error { return nil },
		approver: "arn:aws:iam::000000000000:user/alice"}
	require.Contains(t, s.banner("http://127.0.0.1:8080"), "approvals signed by arn:aws:iam::000000000000:user/alice")
}

func TestConsoleReadOnlyRefusesActions(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	for _, path := range []string{"/api/send", "/api/retry", "/api/machine/save"} {
		code, body := b.post(t, path, map[string]any{"stack": "qa", "event": "DESTROY", "name": "qa-env", "body": "x"}, nil)
		require.Equal(t, http.StatusForbidden, code, path)
		require.Contains(t, body["error"], "read-only")
	}
	var sess sessionJSON
	b.get(t, "/api/session", &sess)
	require.False(t, sess.AllowActions)
}

func TestConsoleActionsNeedCSRFAndReachTheQueue(t *testing.T) {
	t.Parallel()
	queueURL, _ := harness.CreateQueue(t, "console-events", true, 3)
	sqsClient := harness.SQSClient(t)
	b := setupConsole(t, func(s *consoleServer) {
		s.allowActions = true
		s.publish = sqsPublisher(sqsClient, queueURL)
	})
	var s storyJSON
	b.get(t, "/api/stack?id=qa", &s)
	version := s.Stack.Version
	send := map[string]any{"stack": "qa", "event": "DESTROY", "version": version}

	b.requireForgeriesRefused(t, "/api/send", send)
	// An event the state does not accept, and a stale version, are refused.
	code, body := b.post(t, "/api/send", map[string]any{"stack": "qa", "event": "NOPE", "version": version}, nil)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body["error"], "does not accept NOPE")
	code, _ = b.post(t, "/api/send", map[string]any{"stack": "qa", "event": "DESTROY", "version": version - 1}, nil)
	require.Equal(t, http.StatusConflict, code)
	code, body = b.post(t, "/api/retry", map[string]any{"stack": "qa", "version": version}, nil)
	require.Equal(t, http.StatusConflict, code, "qa has no failed tasks")
	require.Contains(t, body["error"], "no failed tasks")

	// Metadata the state manager would refuse is refused here.
	code, body = b.post(t, "/api/send", map[string]any{"stack": "qa", "event": "DESTROY", "version": version,
		"metadata": map[string]string{strings.Repeat("k", 200): "v"}}, nil)
	require.Equal(t, http.StatusBadRequest, code, body)

	send["metadata"] = map[string]string{"reason": "release 2.4.2 replaces it", "operator": "mallory"}
	code, body = b.post(t, "/api/send", send, map[string]string{"Origin": b.ts.URL, "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "tester", body["operator"])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := sqsClient.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), WaitTimeSeconds: 5, MaxNumberOfMessages: 10})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	ev, err := message.ParseEvent([]byte(aws.ToString(out.Messages[0].Body)))
	require.NoError(t, err)
	require.Equal(t, "DESTROY", ev.Event)
	require.Equal(t, "qa", ev.StackID)
	require.Equal(t, "tester", ev.Metadata["operator"], "the operator is the console's, whatever the page sends")
	require.Equal(t, "release 2.4.2 replaces it", ev.Metadata["reason"])
	require.NotNil(t, ev.IfVersion)
	require.Equal(t, version, *ev.IfVersion)
}

func TestConsoleValidatesAndSavesOnlyValidMachines(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, func(s *consoleServer) { s.allowActions = true })
	invalid := "version: \"1\"\nevents: [GO]\nstates:\n  INIT:\n    on:\n      GO: [{advance: NOWHERE}]\n"
	code, body := b.post(t, "/api/validate", machineBodyJSON{Name: "broken", Body: invalid}, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, false, body["valid"])
	var lines []float64
	for _, p := range body["problems"].([]any) {
		lines = append(lines, p.(map[string]any)["line"].(float64))
	}
	require.Contains(t, lines, float64(6), "the unknown advance target is on line 6: %v", body["problems"])

	good, err := os.ReadFile(filepath.Join(b.dir, "qa-env.yml"))
	require.NoError(t, err)
	code, body = b.post(t, "/api/validate", machineBodyJSON{Name: "qa-env", Body: string(good)}, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, true, body["valid"], body)

	// Saving an invalid file is refused and leaves the file alone.
	code, body = b.post(t, "/api/machine/save", machineBodyJSON{Name: "qa-env", Body: invalid}, nil)
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Contains(t, body["error"], "not saved")
	now, err := os.ReadFile(filepath.Join(b.dir, "qa-env.yml"))
	require.NoError(t, err)
	require.Equal(t, string(good), string(now))

	changed := string(good) + "\n# edited in the console\n"
	code, body = b.post(t, "/api/machine/save", machineBodyJSON{Name: "qa-env", Body: changed}, nil)
	require.Equal(t, http.StatusOK, code, body)
	now, err = os.ReadFile(filepath.Join(b.dir, "qa-env.yml"))
	require.NoError(t, err)
	require.Equal(t, changed, string(now))

	code, _ = b.post(t, "/api/machine/save", machineBodyJSON{Name: "../escape", Body: changed}, nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, "a name that is no machine name is refused")
}

func TestConsoleMachinesAndGraph(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	var list []machineSummaryJSON
	b.get(t, "/api/machines", &list)
	require.Len(t, list, 2)
	require.Equal(t, "feature-env", list[0].Name)
	require.True(t, list[0].Valid)
	require.Equal(t, 1, list[0].Counts["DEPROVISION"])

	res, err := b.client.Get(b.ts.URL + "/api/machine/graph.svg?name=feature-env")
	require.NoError(t, err)
	svg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, string(svg))
	require.Equal(t, "image/svg+xml", res.Header.Get("Content-Type"))
	require.Contains(t, string(svg), "<svg")
	require.Contains(t, string(svg), "1 stack", "DEPROVISION shows its one stack")
	require.Contains(t, string(svg), "0 stacks")

	// Names that are no machine names never reach the file system.
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(b.dir), "outside.yml"), []byte("x"), 0o644))
	for _, path := range []string{"/api/machine/graph.svg?name=../outside", "/api/machine?name=../outside", "/api/machine?name="} {
		res := b.get(t, path, nil)
		require.Equal(t, http.StatusBadRequest, res.StatusCode, path)
	}
}

func TestConsoleLiveStreamAnnouncesChanges(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.ts.URL+"/api/live", nil)
	require.NoError(t, err)
	res, err := b.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	lines := bufio.NewScanner(res.Body)
	nextChange := func() string {
		for lines.Scan() {
			if lines.Text() == "event: change" {
				require.True(t, lines.Scan())
				return lines.Text()
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return ""
	}
	firstMark := nextChange()
	b.rec.apply(5*time.Hour, message.Event{StackID: "new-one", Event: "LAUNCH", Machine: "qa-env"})
	require.NotEqual(t, firstMark, nextChange())
}

func TestConsoleServesTaskLogsFromS3(t *testing.T) {
	t.Parallel()
	bucket := harness.CreateBucket(t, "console-logs")
	b := setupConsole(t, func(s *consoleServer) {
		s.logs = &s3Logs{client: harness.S3Client(t)}
		s.logBucket = bucket
	})
	var s storyJSON
	b.get(t, "/api/stack?id=feature-123", &s)
	run := s.Runs[0]
	key := message.TaskLogKey("feature-env", "feature-123", run.Task, run.RunID)
	harness.PutObject(t, bucket, key, "terraform apply\nApply complete!\n")

	var log map[string]any
	b.get(t, "/api/log?stack=feature-123&run="+url.QueryEscape(run.RunID), &log)
	require.Equal(t, "terraform apply\nApply complete!\n", log["text"])
	require.Equal(t, "s3://"+bucket+"/"+key, log["location"])

	res := b.get(t, "/api/log?stack=feature-123&run=not-a-run", nil)
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	res = b.get(t, "/api/log?stack=feature-123&run="+url.QueryEscape(s.Runs[1].RunID), nil)
	require.Equal(t, http.StatusNotFound, res.StatusCode, "no log stored for that run")
}

// startConsoleCommand runs `stackseam console ARGS` in-process until the test ends and returns
// the URL it printed.
func startConsoleCommand(t *testing.T, env map[string]string, args ...string) (url string, stdout *harness.SyncBuffer) {
	t.Helper()
	return startConsoleCommandAt(t, env, time.Now, args...)
}

// startConsoleCommandAt is startConsoleCommand with the console's clock.
func startConsoleCommandAt(t *testing.T, env map[string]string, clock func() time.Time, args ...string) (url string, stdout *harness.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &harness.SyncBuffer{}, &harness.SyncBuffer{}
	c := &cli{stdout: out, stderr: errOut, getenv: func(k string) string { return env[k] }, now: clock, pollInterval: 20 * time.Millisecond}
	done := make(chan int, 1)
	go func() { done <- c.run(ctx, append([]string{"console"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		require.Equal(t, exitOK, <-done, errOut.String())
	})
	for {
		if _, rest, ok := strings.Cut(out.String(), "open "); ok {
			line, _, _ := strings.Cut(rest, "\n")
			return line, out
		}
		select {
		case code := <-done:
			t.Fatalf("stackseam console exited %d: %s", code, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestConsoleCommandBindsLoopbackAndAsksForATokenElsewhere(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t)
	rec.record()
	env := map[string]string{"DATABASE_URL": rec.url, "MACHINES_DIR": "../../machines", "STACKSEAM_OPERATOR": "ops-bot"}

	u, out := startConsoleCommand(t, env, "--listen", "127.0.0.1:0")
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/$`, u)
	require.Contains(t, out.String(), "read-only")
	res, err := http.Get(u + "api/stacks")
	require.NoError(t, err)
	var list stacksJSON
	require.NoError(t, json.NewDecoder(res.Body).Decode(&list))
	res.Body.Close()
	require.Len(t, list.Stacks, 2)

	u, out = startConsoleCommand(t, env, "--listen", "0.0.0.0:0", "--allow-actions", "--queue-url", "http://127.0.0.1:1/q", "--region", "us-east-1")
	require.Regexp(t, `^http://localhost:\d+/\?token=[0-9a-f]{48}$`, u)
	require.Contains(t, out.String(), "needs this token")
	require.Contains(t, out.String(), "operator ops-bot")
	base, _, _ := strings.Cut(u, "?")
	res, err = http.Get(base + "api/session")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	// A browser opening the printed URL gets a cookie and keeps working without the token.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browserish := &http.Client{Jar: jar}
	res, err = browserish.Get(u)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, base, res.Request.URL.String(), "the token left the address")
	res, err = browserish.Get(base + "api/session")
	require.NoError(t, err)
	var sess sessionJSON
	require.NoError(t, json.NewDecoder(res.Body).Decode(&sess))
	res.Body.Close()
	require.True(t, sess.AllowActions)
	require.Equal(t, "ops-bot", sess.Operator)

	code, _, stderr := runEnv(t, env, now, "console", "--listen", "127.0.0.1:0", "--allow-actions")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--allow-actions needs the event queue")
}

func TestConsoleMachinesInABucket(t *testing.T) {
	t.Parallel()
	bucket := harness.CreateBucket(t, "console-machines")
	harness.UploadDir(t, bucket, "machines/", "../../machines")
	b := setupConsole(t, func(s *consoleServer) {
		s.allowActions = true
		s.machines = &s3Machines{client: harness.S3Client(t), bucket: bucket, prefix: "machines/"}
	})
	var list []machineSummaryJSON
	b.get(t, "/api/machines", &list)
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
		require.True(t, m.Valid, m.Name)
	}
	require.Equal(t, []string{"feature-env", "qa-env", "reviewed-env"}, names)

	var file machineFileJSON
	b.get(t, "/api/machine?name=qa-env", &file)
	require.Equal(t, "s3://"+bucket+"/machines/qa-env.yml", file.Location)
	changed := file.Body + "\n# saved from the console\n"
	code, body := b.post(t, "/api/machine/save", machineBodyJSON{Name: "qa-env", Body: changed}, nil)
	require.Equal(t, http.StatusOK, code, body)
	got, ok := harness.ReadObject(t, bucket, "machines/qa-env.yml")
	require.True(t, ok)
	require.Equal(t, changed, got)
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	t.Parallel()
	tb := &tailBuffer{max: 10}
	for i := 0; i < 7; i++ {
		_, _ = tb.Write([]byte("abcd"))
	}
	text, cut := tb.tail()
	require.Equal(t, "cdabcdabcd", string(text))
	require.True(t, cut)
	tb = &tailBuffer{max: 10}
	_, _ = tb.Write([]byte("short"))
	text, cut = tb.tail()
	require.Equal(t, "short", string(text))
	require.False(t, cut)
}

// TestConsoleStuckAsStacksStuckSeesIt: the stacks page and a stack's page mark what
// `stackseam stacks --stuck` lists, with the engine's own deadlines.
func TestConsoleStuckAsStacksStuckSeesIt(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, nil)
	r := b.rec
	r.deadlines = engine.Deadlines{DefaultTimeout: 15 * time.Minute, Visibility: 90 * time.Minute, Receives: 3}
	r.apply(-3*time.Hour, message.Event{StackID: "stuck-1", Event: "LAUNCH", Machine: "feature-env"})
	s := r.apply(-4*time.Hour, message.Event{StackID: "stuck-2", Event: "LAUNCH", Machine: "feature-env"})
	forced := result(s, "provision-infra", message.EventTaskError, "no result within 5h15m0s", nil)
	forced.SettledBy = message.SettledByDeadline
	r.apply(2*time.Hour, forced)
	r.apply(2*time.Hour, message.Event{StackID: "fine", Event: "LAUNCH", Machine: "feature-env"})

	var list stacksJSON
	b.get(t, "/api/stacks?q=stuck-", &list)
	require.Len(t, list.Stacks, 2)
	require.Equal(t, []string{"task provision-infra is overdue and not settled yet", "task seed-database is overdue and not settled yet"},
		list.Stacks[0].Stuck)
	require.Len(t, list.Stacks[1].Stuck, 2, "stuck-2: seed-database overdue, provision-infra failed by its deadline")
	require.Equal(t, "task provision-infra failed by the state manager (deadline): no result within 5h15m0s", list.Stacks[1].Stuck[1])
	b.get(t, "/api/stacks?q=fine", &list)
	require.Empty(t, list.Stacks[0].Stuck)

	var story storyJSON
	b.get(t, "/api/stack?id=stuck-2", &story)
	require.Contains(t, story.Troubles, "task provision-infra failed by the state manager (deadline): no result within 5h15m0s")
}
