package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/localenv"
)

const (
	// systemBucket holds machines/, the Terraform state and the task logs.
	systemBucket = "stackseam-demo"
	// sourcesBucket is the bucket the example machines name for their
	// Terraform sources; the emulator is ours, so it can have that name.
	sourcesBucket = "my-company-terraform-sources"
	// secretKey is the satisfier's AWS secret key. The emulator takes any;
	// the satisfier masks its value in logs and results, so it must not be
	// a word ("test") that appears in ordinary text.
	secretKey = "stackseam-demo-secret-access-key-4f1c"
	// waitLimit bounds each wait for the stacks to get somewhere.
	waitLimit = 3 * time.Minute
	stopGrace = 10 * time.Second
)

// demo is one run: what it started, to stop it again.
type demo struct {
	out     *console
	keep    bool
	started time.Time

	root, workDir string
	kept          bool     // the work directory stays (failure, or -keep)
	cleanups      []func() // run in reverse order
	logs          []processLog
	failed        bool

	dbURL    string
	st       *store.Store
	emulator string // the emulator's URL
	eventURL string
	// approvalURL is the approvals queue: stackseam approve sends there.
	approvalURL string
	cliBin      string
	cliEnv      []string
}

type processLog struct {
	name string
	tail *localenv.TailBuffer
}

func (d *demo) atCleanup(fn func()) { d.cleanups = append(d.cleanups, fn) }

// cleanup stops everything, newest first, and removes the work directory
// unless it is to be kept.
func (d *demo) cleanup() {
	if len(d.cleanups) == 0 {
		return
	}
	t := time.Now()
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
	if d.workDir != "" {
		if d.keep || d.failed {
			d.kept = true
		} else if err := os.RemoveAll(d.workDir); err != nil {
			d.out.printf("removing %s: %v\n", d.workDir, err)
		}
	}
	d.out.printf("==> stopped the functions, the fake Lambda, the emulator and PostgreSQL (%s)\n", since(t))
}

// step prints what is being done, does it, and says how long it took.
func (d *demo) step(what string, fn func() error) error {
	t := time.Now()
	d.out.printf("==> %s\n", what)
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	d.out.printf("    (%s)\n", time.Since(t).Round(time.Millisecond))
	return nil
}

func (d *demo) run(ctx context.Context) (err error) {
	defer func() {
		d.failed = err != nil && !errors.Is(err, context.Canceled)
	}()
	d.out.printf("stackseam demo: the state manager, the task satisfier, PostgreSQL and an SQS/S3 emulator on this\n" +
		"machine (no AWS account), driven with the stackseam CLI. Ctrl-C stops everything.\n\n")
	if d.root, err = localenv.RepoRoot(); err != nil {
		return err
	}
	if err := os.Chdir(d.root); err != nil {
		return err
	}
	if d.workDir, err = localenv.NewWorkDir("stackseam-demo-"); err != nil {
		return err
	}
	if err := d.setUp(ctx); err != nil {
		return err
	}
	if err := d.startWebConsole(ctx); err != nil {
		return err
	}
	return d.scenario(ctx)
}

// setUp starts the services and the functions.
func (d *demo) setUp(ctx context.Context) error {
	if err := d.step("starting a throwaway PostgreSQL", func() error {
		pg, err := localenv.StartPostgres(d.workDir, "demo")
		if err != nil {
			return err
		}
		d.atCleanup(pg.Shutdown)
		if d.dbURL, err = pg.CreateDatabase("stackseam"); err != nil {
			return err
		}
		d.st, err = store.Open(ctx, store.Config{DatabaseURL: d.dbURL})
		if err != nil {
			return err
		}
		d.atCleanup(d.st.Close)
		d.out.printf("    postgres://127.0.0.1:%d/stackseam\n", pg.Port())
		return ctx.Err()
	}); err != nil {
		return err
	}

	if err := d.step("starting the SQS/S3 emulator (fauxqs)", func() error {
		emu, err := localenv.StartEmulator(d.root)
		if err != nil {
			return err
		}
		d.atCleanup(emu.Stop)
		d.emulator = emu.URL
		d.out.printf("    %s\n", emu.URL)
		return ctx.Err()
	}); err != nil {
		return err
	}

	bins := map[string]string{}
	if err := d.step("building the stackseam CLI, the state manager and the task satisfier", func() error {
		for _, pkg := range []string{"./cmd/stackseam", "./functions/statemanager", "./functions/satisfier"} {
			out := filepath.Join(d.workDir, "bin", filepath.Base(pkg))
			if err := localenv.Build(d.root, out, pkg); err != nil {
				return err
			}
			bins[filepath.Base(pkg)] = out
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	d.cliBin = bins["stackseam"]

	var tofu string
	if err := d.step("finding OpenTofu "+localenv.TofuVersion+" (make deps builds it once)", func() error {
		var err error
		tofu, err = localenv.TofuBinary(d.root)
		if err == nil {
			rel, _ := filepath.Rel(d.root, tofu)
			d.out.printf("    %s\n", rel)
		}
		return err
	}); err != nil {
		return err
	}

	var taskURL string
	if err := d.step("creating the queues and buckets", func() error {
		sqsClient := sqsClient(d.emulator)
		var err error
		var dlq string
		if d.eventURL, dlq, err = localenv.CreateQueue(ctx, sqsClient, "stackseam-events", true, 5, nil); err != nil {
			return err
		}
		d.out.printf("    event queue  %s (dead letters: %s)\n", d.eventURL, dlq)
		if taskURL, dlq, err = localenv.CreateQueue(ctx, sqsClient, "stackseam-tasks", false, 5, nil); err != nil {
			return err
		}
		d.out.printf("    task queue   %s (dead letters: %s)\n", taskURL, dlq)
		if d.approvalURL, dlq, err = localenv.CreateQueue(ctx, sqsClient, "stackseam-approvals", true, 5, nil); err != nil {
			return err
		}
		d.out.printf("    approvals    %s (dead letters: %s)\n", d.approvalURL, dlq)
		s3 := localenv.NewS3Client(d.emulator)
		for _, b := range []string{systemBucket, sourcesBucket} {
			if err := localenv.CreateBucket(ctx, s3, b); err != nil {
				return err
			}
		}
		d.out.printf("    buckets      s3://%s (machines, Terraform state, task logs), s3://%s (Terraform sources)\n",
			systemBucket, sourcesBucket)
		return nil
	}); err != nil {
		return err
	}

	if err := d.step("uploading machines/ and the sample Terraform sources", func() error {
		s3 := localenv.NewS3Client(d.emulator)
		uploads := []struct{ dir, bucket, prefix string }{
			{"machines", systemBucket, "machines"},
			{"test/demo/terraform/feature-env", sourcesBucket, "feature-env"},
			{"test/demo/terraform/qa-env", sourcesBucket, "qa-env"},
			{"test/demo/terraform/reviewed-env", sourcesBucket, "reviewed-env"},
		}
		for _, u := range uploads {
			n, err := localenv.UploadDir(ctx, s3, u.bucket, u.prefix, filepath.Join(d.root, u.dir))
			if err != nil {
				return err
			}
			d.out.printf("    %-32s → s3://%s/%s/ (%d files)\n", u.dir+"/", u.bucket, u.prefix, n)
		}
		return nil
	}); err != nil {
		return err
	}

	lambdaEnv := ""
	if err := d.step("serving a fake Lambda Invoke API for the lambda tasks", func() error {
		f := localenv.NewLambdaFake()
		d.atCleanup(f.Close)
		fakeFunctions(f)
		lambdaEnv = f.Env()
		d.out.printf("    %s: feature-env-seed-database, qa-env-smoke-test, qa-env-seed-database\n", f.URL)
		return nil
	}); err != nil {
		return err
	}

	aws := localenv.AWSEnv(d.emulator)
	d.cliEnv = append(aws, "DATABASE_URL="+d.dbURL, "EVENT_QUEUE_URL="+d.eventURL, "APPROVAL_QUEUE_URL="+d.approvalURL)
	return d.step("starting the state manager and the task satisfier in local mode", func() error {
		common := append(aws, "EVENT_QUEUE_URL="+d.eventURL, "TASK_QUEUE_URL="+taskURL, "POLL_WAIT=1s", "RETRY_DELAY=2s")
		sm, err := d.start(ctx, bins["statemanager"], "state manager ready", append(common,
			"DATABASE_URL="+d.dbURL,
			"MACHINES_BUCKET="+systemBucket,
			"MACHINES_PREFIX=machines/",
			"MACHINES_REFRESH=2s",
			"FENCE_BUCKET="+systemBucket, // as deployed: stale runs are refused
			"APPROVAL_QUEUE_URL="+d.approvalURL,
		))
		if err != nil {
			return err
		}
		sat, err := d.start(ctx, bins["satisfier"], "satisfier ready", append(common,
			"AWS_SECRET_ACCESS_KEY="+secretKey,
			lambdaEnv,
			"BUCKET="+systemBucket,
			"TERRAFORM_BINARY="+tofu,
			"TERRAFORM_WORK_DIR="+filepath.Join(d.workDir, "terraform"),
			"TERRAFORM_PLUGIN_CACHE_DIR="+filepath.Join(d.workDir, "terraform-plugins"),
		))
		if err != nil {
			return err
		}
		d.out.printf("    statemanager pid %d, satisfier pid %d; their logs: %s\n", sm, sat, filepath.Join(d.workDir, "logs"))
		return nil
	})
}

// start starts one function in local mode, its output going to a log
// file, and waits until it says ready. It returns its pid.
func (d *demo) start(ctx context.Context, bin, ready string, env []string) (int, error) {
	name := filepath.Base(bin)
	if err := os.MkdirAll(filepath.Join(d.workDir, "logs"), 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(filepath.Join(d.workDir, "logs", name+".log"))
	if err != nil {
		return 0, err
	}
	tail := localenv.NewTailBuffer(16 << 10)
	p, err := localenv.StartProcess(bin, env, nil, io.MultiWriter(f, tail))
	if err != nil {
		f.Close()
		return 0, err
	}
	d.logs = append(d.logs, processLog{name: name, tail: tail})
	d.atCleanup(func() {
		if err := p.Stop(stopGrace); err != nil {
			d.out.printf("stopping %s: %v\n", name, err)
		}
		p.KillGroup()
		f.Close()
	})
	deadline := time.After(60 * time.Second)
	for !strings.Contains(tail.String(), ready) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-p.Done():
			return 0, fmt.Errorf("%s exited while starting (%v)", name, p.Wait())
		case <-deadline:
			return 0, fmt.Errorf("%s did not get ready within a minute", name)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p.Pid(), nil
}

// cli runs the stackseam CLI in the foreground, showing the command line
// and its output.
func (d *demo) cli(ctx context.Context, args ...string) error {
	d.out.printf("\n$ stackseam %s\n", strings.Join(args, " "))
	cmd := d.cliCommand(ctx, args...)
	w := d.out.lines()
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	_ = w.Close()
	if err != nil {
		return fmt.Errorf("stackseam %s: %w", strings.Join(args, " "), err)
	}
	return ctx.Err()
}

func (d *demo) cliCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.cliBin, args...)
	cmd.Dir = d.root
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, d.cliEnv...)
	cmd.SysProcAttr = localenv.ChildAttr(nil)
	// An interrupted CLI gets SIGTERM, which it handles, rather than a kill.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// follow runs `stackseam history --follow` in the background and returns a
// channel that gets its result when it ends (when the stack is removed).
func (d *demo) follow(ctx context.Context, stackID string) (<-chan error, error) {
	d.out.printf("\n$ stackseam history --follow %s &   # the live timeline, until the stack is removed\n", stackID)
	cmd := d.cliCommand(ctx, "history", "--follow", stackID)
	w := d.out.lines()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		_ = w.Close()
		done <- err
	}()
	d.atCleanup(func() {
		select {
		case err := <-done:
			done <- err
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	})
	return done, nil
}

// narrate prints a comment line of the transcript.
func (d *demo) narrate(format string, args ...any) {
	d.out.printf("\n# "+format+"\n", args...)
}

// waitFor polls until cond holds.
func (d *demo) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not happen within %s", what, waitLimit)
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// inState waits until every stack rests in state with no task pending.
func (d *demo) inState(ctx context.Context, state string, stackIDs ...string) error {
	return d.waitFor(ctx, strings.Join(stackIDs, " and ")+" reaching "+state, func() (bool, error) {
		for _, id := range stackIDs {
			s, err := d.st.GetStack(ctx, id)
			if err != nil || s == nil || s.State != state {
				return false, err
			}
		}
		return true, nil
	})
}

// removed waits until the stack is gone.
func (d *demo) removed(ctx context.Context, stackID string) error {
	return d.waitFor(ctx, stackID+" being removed", func() (bool, error) {
		s, err := d.st.GetStack(ctx, stackID)
		if err != nil || s != nil {
			return false, err
		}
		rows, err := d.st.History(ctx, stackID, store.HistoryOptions{})
		return err == nil && len(rows) > 0, err
	})
}

// scenario drives the two stacks through their lives with the CLI.
func (d *demo) scenario(ctx context.Context) error {
	if err := d.cli(ctx, "validate", "machines/"); err != nil {
		return err
	}
	timeline, err := d.follow(ctx, "feature-123")
	if err != nil {
		return err
	}
	d.narrate("CI pushed branch feature/123: launch its environment. The release pipeline launches QA too.")
	if err := d.cli(ctx, "send", "--stack", "feature-123", "--machine", "feature-env", "--event", "LAUNCH",
		"--meta", "owner=alice", "--meta", "branch=feature/123"); err != nil {
		return err
	}
	if err := d.cli(ctx, "send", "--stack", "qa", "--machine", "qa-env", "--event", "LAUNCH", "--meta", "appVersion=2.4.1"); err != nil {
		return err
	}
	if err := d.inState(ctx, "RUN", "feature-123", "qa"); err != nil {
		return err
	}
	d.narrate("Both environments are up.")
	if err := d.cli(ctx, "stacks"); err != nil {
		return err
	}
	d.narrate("Someone opens the feature environment: ACCESS is a no-op that records when.")
	lastAccess := time.Now().UTC().Format(time.RFC3339)
	if err := d.cli(ctx, "send", "--stack", "feature-123", "--event", "ACCESS", "--meta", "lastAccess="+lastAccess); err != nil {
		return err
	}
	if err := d.waitFor(ctx, "ACCESS being applied", func() (bool, error) {
		s, err := d.st.GetStack(ctx, "feature-123")
		return err == nil && s != nil && s.Metadata["lastAccess"] == lastAccess, err
	}); err != nil {
		return err
	}
	if err := d.cli(ctx, "show", "feature-123"); err != nil {
		return err
	}
	d.narrate("The branch is merged: destroy its environment, and QA's for today.")
	for _, id := range []string{"feature-123", "qa"} {
		if err := d.cli(ctx, "send", "--stack", id, "--event", "DESTROY"); err != nil {
			return err
		}
	}
	select {
	case err := <-timeline:
		if err != nil {
			return fmt.Errorf("stackseam history --follow: %w", err)
		}
	case <-time.After(waitLimit):
		return fmt.Errorf("feature-123 was not removed within %s", waitLimit)
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := d.removed(ctx, "qa"); err != nil {
		return err
	}
	if err := d.review(ctx); err != nil {
		return err
	}
	d.narrate("Both stacks are gone; their history stays.")
	if err := d.cli(ctx, "stacks"); err != nil {
		return err
	}
	if err := d.cli(ctx, "history", "feature-123"); err != nil {
		return err
	}
	d.narrate("The machine feature-123 ran (Mermaid; --format dot or svg for Graphviz):")
	return d.cli(ctx, "graph", "feature-env")
}

// review takes the reviewed environment prod through a plan, an approval with a name on it, and
// the apply of exactly the approved plan (machines/reviewed-env.yml).
func (d *demo) review(ctx context.Context) error {
	d.narrate("prod is reviewed: every change is planned, and applied only once a person approves the plan.")
	if err := d.cli(ctx, "send", "--stack", "prod", "--machine", "reviewed-env", "--event", "LAUNCH", "--meta", "release=2.0.0"); err != nil {
		return err
	}
	if err := d.inState(ctx, "AWAITING-APPROVAL", "prod"); err != nil {
		return err
	}
	d.narrate("The plan found changes, so prod waits for an approval. What would change:")
	if err := d.cli(ctx, "plan", "prod"); err != nil {
		return err
	}
	if err := d.cli(ctx, "approve", "prod", "--comment", "first deployment, reviewed"); err != nil {
		return err
	}
	if err := d.inState(ctx, "RUN", "prod"); err != nil {
		return err
	}
	d.narrate("Exactly the approved plan was applied; the history says who approved it, and why.")
	if err := d.cli(ctx, "history", "prod"); err != nil {
		return err
	}
	if err := d.cli(ctx, "send", "--stack", "prod", "--event", "DESTROY"); err != nil {
		return err
	}
	return d.removed(ctx, "prod")
}

func sqsClient(endpoint string) *sqs.Client { return sqs.NewFromConfig(localenv.AWSConfig(endpoint)) }

// fakeFunctions defines the Lambda functions the example machines invoke.
// Each takes a moment and returns outputs, as real ones would.
func fakeFunctions(f *localenv.LambdaFake) {
	type invocation struct {
		StackID  string         `json:"stackId"`
		Metadata map[string]any `json:"metadata"`
		Args     map[string]any `json:"args"`
	}
	respond := func(delay time.Duration, outputs func(invocation) map[string]any) localenv.LambdaFunction {
		return func(ctx context.Context, payload []byte) localenv.LambdaResponse {
			var in invocation
			if err := json.Unmarshal(payload, &in); err != nil {
				return localenv.HandlerError("BadRequest", err.Error())
			}
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			body, _ := json.Marshal(outputs(in))
			return localenv.LambdaResponse{Payload: body}
		}
	}
	f.Function("feature-env-seed-database", respond(700*time.Millisecond, func(in invocation) map[string]any {
		return map[string]any{"databaseUrl": "postgres://db.internal:5432/" + strings.ReplaceAll(in.StackID, "-", "_"),
			"dataset": fmt.Sprint(in.Args["dataset"])}
	}))
	f.Function("qa-env-smoke-test", respond(500*time.Millisecond, func(in invocation) map[string]any {
		return map[string]any{"smokeTests": "passed", "testedVersion": fmt.Sprint(in.Metadata["appVersion"])}
	}))
	f.Function("qa-env-seed-database", respond(500*time.Millisecond, func(invocation) map[string]any {
		return map[string]any{"dataset": "full"}
	}))
}
