package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// chromium finds the browser the browser tests drive: $CHROMIUM, else Debian's chromium. In CI
// (CI=true) or with STACKSEAM_BROWSER_TESTS=1 a missing browser fails the test, since .ci/run
// installs it; elsewhere the test skips and says how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found for the browser tests: apt-get install -y chromium (or set CHROMIUM to a Chrome binary)"
	if os.Getenv("CI") == "true" || os.Getenv("STACKSEAM_BROWSER_TESTS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium for one test, with the flags that keep it off the network.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	// A generous bound for the whole test: waits below end as soon as the page shows what
	// they wait for.
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	require.NoError(t, chromedp.Do(ctx)) // starts the browser
	return ctx
}

// screenshot keeps a picture of the page in $STACKSEAM_SCREENSHOTS (a CI artifact; the README's
// pictures come from there), or in the test's temporary folder.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("STACKSEAM_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// completeTasks settles every pending task of s as completed, as the satisfier's results would,
// until the stack waits for an event again.
func completeTasks(r *recorder, at time.Duration, s *engine.Stack) *engine.Stack {
	for s != nil {
		var pending []message.StackTask
		for _, task := range s.Tasks {
			if task.Status == message.TaskPending {
				pending = append(pending, task)
			}
		}
		if len(pending) == 0 {
			return s
		}
		at += time.Second
		s = r.apply(at, result(s, pending[0].Name, message.EventTaskCompleted, "", nil))
	}
	return s
}

func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	b := setupConsole(t, nil)
	recordReviewed(t, b)
	evil := `<img src=x onerror="document.title='pwned'">`
	b.rec.apply(3*time.Hour, message.Event{StackID: "qa", Event: "UPDATE", Metadata: message.Metadata{"note": evil}})

	// A message parked for feature-9 makes it stuck.
	_, err := b.rec.st.Pool().Exec(context.Background(), `INSERT INTO parked_outbox (id, stack_id, destination, body, created_at, parked_at, reason)
		VALUES (999999, 'feature-9', 'task', '{}', now(), now(), 'the task message is larger than the queue accepts')`)
	require.NoError(t, err)

	// The stacks page lists the stacks, stuck ones marked, then a stack launched now appears and reaches RUN live.
	do(t, ctx,
		chromedp.Navigate(b.ts.URL+"/#/stacks"),
		chromedp.WaitVisible(`tr.stuck[data-stack="feature-9"]`),
		chromedp.WaitVisible(`#live.on`),
	)
	require.Equal(t, "read-only", value(t, ctx, chromedp.Text(`#mode`)))
	require.Contains(t, value(t, ctx, chromedp.Text(`tr.stuck[data-stack="feature-9"]`)), "larger than the queue accepts")
	require.Equal(t, 1, value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('tr.stuck').length`)))
	s := b.rec.apply(3*time.Hour, message.Event{StackID: "browser-1", Event: "LAUNCH", Machine: "qa-env"})
	do(t, ctx, chromedp.WaitVisible(`tr[data-stack="browser-1"][data-state="DEPLOY"]`))
	s = completeTasks(b.rec, 3*time.Hour, s)
	require.Equal(t, "RUN", s.State)
	do(t, ctx, chromedp.WaitVisible(`tr[data-stack="browser-1"][data-state="RUN"]`))
	screenshot(t, ctx, "stacks")

	// Its story shows its tasks, dispatched and completed, and no action in a read-only console.
	do(t, ctx, chromedp.Click(`tr[data-stack="browser-1"] a`), chromedp.WaitVisible(`#runs`))
	timeline := value(t, ctx, chromedp.Text(`#timeline`))
	require.Contains(t, timeline, "task deploy dispatched")
	require.Contains(t, timeline, "task deploy completed in 1.0s")
	require.Contains(t, timeline, "task smoke-test completed")
	require.Contains(t, timeline, "NEXT: VERIFY → RUN")
	require.Zero(t, value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#view button.danger').length`)))
	screenshot(t, ctx, "story")

	// Metadata written by a publisher is shown as text, never run as markup.
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/stack/qa"), chromedp.WaitVisible(`#metadata`))
	require.Contains(t, value(t, ctx, chromedp.Text(`#metadata`)), evil)
	require.Zero(t, value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#metadata img').length`)))
	require.NotEqual(t, "pwned", value(t, ctx, chromedp.Title()))

	// A read-only console offers no approval, and says who can answer and how.
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/stack/reviewed"), chromedp.WaitVisible(`#approval-hint`))
	require.Contains(t, value(t, ctx, chromedp.Text(`#approval-hint`)), "stackseam approve reviewed")
	require.Zero(t, value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#approval').length`)))

	// An invalid machine typed into the editor shows its problem at its line.
	invalid := "version: \"1\"\nevents: [GO]\nstates:\n  INIT:\n    on:\n      GO:\n        - action: advance\n          state: NOWHERE\n"
	do(t, ctx,
		chromedp.Navigate(b.ts.URL+"/#/machine/scratch"),
		chromedp.WaitVisible(`#editor[data-loaded]`),
		chromedp.SendKeys(`#editor`, invalid),
		chromedp.WaitVisible(`#problems li.problem[data-line="8"]`),
	)
	problem := value(t, ctx, chromedp.Text(`#problems li.problem[data-line="8"]`))
	require.Contains(t, problem, "line 8, column 18")
	require.Contains(t, problem, "NOWHERE")
	screenshot(t, ctx, "editor")

	// A machine is drawn with the number of stacks in each state.
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/machine/qa-env"), chromedp.WaitVisible(`#state-counts`))
	require.True(t, value(t, ctx, chromedp.Poll[bool](`document.querySelector('#graph img') && document.querySelector('#graph img').naturalWidth > 0`)))
	screenshot(t, ctx, "machine")
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/machines"), chromedp.WaitVisible(`section[data-machine="qa-env"]`))
	screenshot(t, ctx, "machines")

	// Every page labels its controls, and on a phone's width none is wider than the screen
	// (wide tables scroll inside their own box).
	unlabelled := `[...document.querySelectorAll('#view input, #view select, #view textarea')].filter(e => !e.labels || !e.labels.length).length`
	fits := `document.documentElement.scrollWidth <= window.innerWidth`
	for _, page := range []struct{ hash, ready string }{
		{"#/stacks", `tr[data-stack="browser-1"]`},
		{"#/stack/feature-9", `#timeline`},
		{"#/stack/reviewed", `#approval-hint`},
		{"#/machines", `section[data-machine="qa-env"]`},
		{"#/machine/qa-env", `#editor[data-loaded]`},
	} {
		do(t, ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(b.ts.URL+"/"+page.hash), chromedp.WaitVisible(page.ready))
		require.Zero(t, value(t, ctx, chromedp.Evaluate[int](unlabelled)), page.hash)
		do(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(b.ts.URL+"/"+page.hash), chromedp.WaitVisible(page.ready))
		require.True(t, value(t, ctx, chromedp.Evaluate[bool](fits)), "%s is wider than a phone", page.hash)
	}
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/stacks"), chromedp.WaitVisible(`tr[data-stack="browser-1"]`))
	screenshot(t, ctx, "stacks-phone")
}

// do runs browser steps and fails the test at the first that fails.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// value runs one browser action and returns its value.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err)
	return v
}

func TestConsoleInABrowserActionsAndToken(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	queueURL, _ := harness.CreateQueue(t, "console-browser", true, 3)
	approvalsURL, _ := harness.CreateQueue(t, "console-browser-approvals", true, 3)
	sqsClient := harness.SQSClient(t)
	approverARN := "arn:aws:sts::000000000000:assumed-role/release/tester"
	b := setupConsole(t, func(s *consoleServer) {
		s.allowActions = true
		s.publish = sqsPublisher(sqsClient, queueURL)
		s.approve = sqsPublisher(sqsClient, approvalsURL)
		s.approver = approverARN
		s.token = "browser-token"
	})
	recordReviewed(t, b)

	// Without the token the console answers nothing; with it, the page loads and the token
	// leaves the address bar for a cookie.
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/stacks"))
	require.Contains(t, value(t, ctx, chromedp.Text(`body`)), "needs its token")
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/?token=browser-token#/stack/qa"), chromedp.WaitVisible(`#timeline`))
	require.NotContains(t, value(t, ctx, chromedp.Location()), "browser-token")

	// An action asks first; cancelling sends nothing, confirming sends the event.
	send := `//button[text()="Send DESTROY…"]`
	do(t, ctx,
		chromedp.Click(send),
		chromedp.WaitVisible(`#confirm`),
		chromedp.Click(`#confirm-cancel`),
		chromedp.WaitNotVisible(`#confirm`),
		chromedp.Click(send),
		chromedp.WaitVisible(`#confirm`),
	)
	do(t, ctx, chromedp.Click(`#confirm-cancel`), chromedp.WaitNotVisible(`#confirm`),
		chromedp.SendKeys(`#send-meta`, "reason=replaced by 2.4.2"),
		chromedp.Click(send), chromedp.WaitVisible(`#confirm`))
	require.Contains(t, value(t, ctx, chromedp.Text(`#confirm-text`)), "Send DESTROY with reason=replaced by 2.4.2 to stack qa")
	screenshot(t, ctx, "confirm")
	do(t, ctx, chromedp.Click(`#confirm-ok`))
	value(t, ctx, chromedp.Poll[bool](`document.querySelector('p.status').textContent.startsWith('Sent')`))
	require.Equal(t, "Sent DESTROY as tester. The timeline shows it once the state manager applies it.", value(t, ctx, chromedp.Text(`p.status`)))

	rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := sqsClient.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), WaitTimeSeconds: 5, MaxNumberOfMessages: 10})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1, "the cancelled confirmation sent nothing")
	ev, err := message.ParseEvent([]byte(aws.ToString(out.Messages[0].Body)))
	require.NoError(t, err)
	require.Equal(t, "DESTROY", ev.Event)
	require.Equal(t, "tester", ev.Metadata["operator"])
	require.Equal(t, "replaced by 2.4.2", ev.Metadata["reason"])

	// A stack waiting for approval shows the plan and Approve/Reject (not "Send APPROVE"); Approve
	// asks first, then sends to the approvals queue with the approver and the comment.
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/stack/reviewed"), chromedp.WaitVisible(`#approval button[data-approval="APPROVE"]`),
		chromedp.WaitVisible(`#plans section[data-task="plan"]`))
	plan := value(t, ctx, chromedp.Text(`#plans section[data-task="plan"]`))
	require.Contains(t, plan, "1 to add, 1 to change, 1 to destroy, 0 to replace")
	require.Contains(t, plan, "delete terraform_data.old")
	require.Zero(t, value(t, ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('#view button')].filter(b => b.textContent.includes('Send APPROVE') || b.textContent.includes('Send REJECT')).length`)))
	do(t, ctx, chromedp.SendKeys(`#approval-comment`, "reviewed with the DBA"))
	screenshot(t, ctx, "approval")
	do(t, ctx, chromedp.Click(`#approval button[data-approval="APPROVE"]`), chromedp.WaitVisible(`#confirm`))
	question := value(t, ctx, chromedp.Text(`#confirm-text`))
	require.Contains(t, question, "Approve the pending plan of stack reviewed (state AWAITING-APPROVAL")
	require.Contains(t, question, "as "+approverARN+` with the comment "reviewed with the DBA"`)
	screenshot(t, ctx, "approve-confirm")
	do(t, ctx, chromedp.Click(`#confirm-ok`))
	value(t, ctx, chromedp.Poll[bool](`document.querySelector('p.status').textContent.startsWith('Sent APPROVE')`))
	// Its comment field is labelled, and the page fits a phone.
	require.Zero(t, value(t, ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('#view input, #view select, #view textarea')].filter(e => !e.labels || !e.labels.length).length`)))
	do(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload(), chromedp.WaitVisible(`#approval`))
	require.True(t, value(t, ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`)), "the approval page is wider than a phone")
	do(t, ctx, chromedp.EmulateViewport(1280, 900))
	m := receiveOne(t, approvalsURL)
	require.Equal(t, map[string]any{"stackId": "reviewed", "event": "APPROVE", "by": approverARN, "comment": "reviewed with the DBA", "ifVersion": float64(2)}, m.body)

	// A drift check's summary is on the transition it caused.
	do(t, ctx, chromedp.Navigate(b.ts.URL+"/#/stack/drifted"), chromedp.WaitVisible(`#timeline .summary`))
	require.Contains(t, value(t, ctx, chromedp.Text(`#timeline .summary`)), "drift drift-check: drift · 0 to add, 1 to change, 0 to destroy, 0 to replace · terraform_data.app")
}
