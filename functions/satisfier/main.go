// Command satisfier is the task-satisfier function: it runs the tasks the state manager
// dispatches — Terraform runs and Lambda invocations — and publishes one result per task message
// (TASK_COMPLETED or TASK_ERROR) to the event queue. In AWS Lambda (provided.al2023, binary named
// bootstrap) it handles SQS batches with partial batch failures; anywhere else it polls the task
// queue (local mode). Tasks that need more time than Lambda has (a machine's runner: codebuild, or
// a timeoutSeconds beyond 15 minutes) are handed over to a CodeBuild build when CODEBUILD_PROJECT
// is set: the build runs this binary as `bootstrap --one-task`, which runs the one task it was
// handed (TASK_OBJECT_KEY) and publishes its result itself.
//
// Configuration comes from the environment:
//
//	EVENT_QUEUE_URL            required: the FIFO event queue the results go to (group = stackId,
//	                           deduplication id derived from the taskRunId).
//	TASK_QUEUE_URL             the task queue; required in local mode, which polls it.
//	BUCKET                     the bucket holding the Terraform state (S3 backend, key
//	                           <machine>/<stackId>/<source key or location>, locked with
//	                           <key>.tflock), the task logs
//	                           (logs/<machine>/<stackId>/<task>/<taskRunId>.log) and the stacks'
//	                           fences (fences/<stackId>, read only: a run they do not name as
//	                           current is not started). Without it terraform tasks fail with
//	                           TASK_ERROR saying so, and runs are not checked against fences.
//	BUCKET_REGION              the bucket's region, for the S3 backend. Defaults to the AWS
//	                           region (AWS_REGION).
//	RESULT_SIGNING_SECRET_ID   the secret holding the key every result is signed with (the
//	                           state manager accepts results only with it); RESULT_SIGNING_KEY
//	                           gives the key itself in local mode. Unset: results go unsigned.
//	TERRAFORM_BINARY           path of the terraform or tofu executable (a relative path is
//	                           relative to the working directory). Defaults to tofu, then
//	                           terraform, looked up in PATH and then in LAMBDA_TASK_ROOT.
//	TERRAFORM_SOURCES_DIR      where a `local` source location is looked up; a location must
//	                           stay inside it (no absolute path, no '..', no symbolic link
//	                           leading out). Defaults to LAMBDA_TASK_ROOT in Lambda (the
//	                           bundled files), else the working directory.
//	TERRAFORM_WORK_DIR         where each run's fresh work dir is made and removed. Defaults to
//	                           the system temp dir (/tmp).
//	TERRAFORM_PLUGIN_CACHE_DIR the provider plugin cache, kept across runs and warm invocations.
//	                           Defaults to TF_PLUGIN_CACHE_DIR if set, else
//	                           /tmp/stackseam-terraform-plugins.
//	TERRAFORM_STOP_GRACE       how long Terraform has to stop after SIGINT when its time is up,
//	                           before it is killed. Defaults to 15s.
//	TERRAFORM_LOCK_LEASE       the longest one run can hold a state lock (the S3 backend's lock
//	                           file <state key>.tflock): a lock older than this was left by a
//	                           killed run and is removed; a younger one is waited for. When set
//	                           it must exceed the longest time limit of a task plus the stop
//	                           grace. Unset: each lock stackseam writes says how long its run can
//	                           hold it (its deadline plus TERRAFORM_STOP_GRACE, up to 8 hours on
//	                           CodeBuild) and is judged by that; other locks by 15m15s.
//	TERRAFORM_ROLE_ARN         the role Terraform runs with: before each run the satisfier
//	                           assumes it with a session policy that, in BUCKET (and in a state
//	                           bucket the script names), reaches only <machine>/* — the state of
//	                           the run's machine's stacks and its lock files — and gives Terraform
//	                           the session's credentials (AWS_ACCESS_KEY_ID, _SECRET_ACCESS_KEY,
//	                           _SESSION_TOKEN; every other way to the satisfier's credentials is
//	                           removed from its environment). The satisfier's own code (sources,
//	                           logs, the state lock, fences, plans) keeps its credentials. Unset,
//	                           Terraform runs with the satisfier's own credentials.
//	TASK_TIMEOUT               the time limit of a task whose machine sets no timeoutSeconds.
//	                           Defaults to 15m.
//	TIMEOUT_MARGIN             kept free before a Lambda invocation's deadline to stop a run
//	                           cleanly, store its log and publish the result; should exceed
//	                           TERRAFORM_STOP_GRACE. Defaults to 30s.
//	BATCH_PARALLELISM          tasks of one batch run at the same time. Defaults to 4.
//	WORKERS                    local mode: concurrent receive loops. Defaults to 1.
//	POLL_WAIT                  local mode: long-poll wait. Defaults to 20s.
//	VISIBILITY_TIMEOUT         local mode: task messages are received with this visibility
//	                           timeout, renewed while they run, so a long run is not delivered
//	                           twice and a crashed worker's tasks come back soon. Defaults to 1m.
//	RETRY_DELAY                local mode: a message whose result could not be published is
//	                           delivered again after this. Defaults to the queue's visibility.
//	LOG_LEVEL                  DEBUG, INFO, WARN or ERROR. Defaults to INFO.
//	CODEBUILD_PROJECT          the CodeBuild project tasks that need more than Lambda's 15
//	                           minutes are handed over to (one build per run, the run id its
//	                           idempotency token). Unset: a task with runner: codebuild fails
//	                           saying so, one with a long timeoutSeconds runs here.
//
// In one-task mode (--one-task, inside a build) it also reads:
//
//	TASK_OBJECT_KEY            the key, in BUCKET, of the hand-over record holding the task
//	                           message (set by the hand-over as a build environment override).
//	CODEBUILD_BUILD_ID         the build's id (set by CodeBuild): the run is claimed in its name.
//	CODEBUILD_START_TIME       when the build began, in milliseconds (set by CodeBuild): the run
//	                           ends in time to report before the build's own timeout.
//
// The AWS SDK's own variables apply as usual: AWS_REGION, credentials, and AWS_ENDPOINT_URL or
// the per-service AWS_ENDPOINT_URL_SQS, _S3 and _LAMBDA (emulators, fakes). When an S3 endpoint
// is set, S3 is addressed path-style and the S3 backend is given the same endpoint.
//
// Values of secret-looking environment variables (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, and
// names containing PASSWORD, SECRET, TOKEN, …) are masked in stored logs and in results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	cbapi "github.com/aws/aws-sdk-go-v2/service/codebuild"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stackseam/stackseam/internal/dispatch"
	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/executor/codebuild"
	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/executor/redact"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/internal/fence"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/settings"
	"github.com/stackseam/stackseam/internal/signing"
)

func main() {
	oneTask := flag.Bool("one-task", false, "run the one task handed over to this CodeBuild build (TASK_OBJECT_KEY) and exit")
	flag.Parse()
	settings.MainAWS(vars, "satisfier", func() (options, error) { return readOptions(*oneTask) },
		func(ctx context.Context, logger *slog.Logger, cfg options, awsCfg aws.Config) error {
			return run(ctx, logger, cfg, awsCfg, *oneTask)
		})
}

// options is the environment, read once.
type options struct {
	eventQueueURL, taskQueueURL string
	bucket, bucketRegion        string
	terraformBinary             string
	sourcesDir, workDir         string
	pluginCacheDir              string
	stopGrace, taskTimeout      time.Duration
	lockLease                   time.Duration
	terraformRole               string // TERRAFORM_ROLE_ARN: Terraform runs with it, scoped per machine
	margin                      time.Duration
	parallelism, workers        int
	pollWait, visibility, retry time.Duration
	s3Endpoint                  string // an S3 endpoint override (an emulator)
	taskRoot                    string // LAMBDA_TASK_ROOT: the bundled files
	signingSecretID, signingKey string // the result signing key: a secret, or (local) the key
	codebuildProject            string // where long tasks are handed over to
	taskObjectKey               string // one-task mode: the hand-over record
	buildID, buildStart         string // one-task mode: CODEBUILD_BUILD_ID, CODEBUILD_START_TIME
}

// vars are the environment variables the satisfier reads, declared in one place that the
// construct's test checks the template against.
var vars = settings.Satisfier

func readOptions(oneTask bool) (options, error) {
	c := options{
		eventQueueURL:   vars.Get("EVENT_QUEUE_URL"),
		taskQueueURL:    vars.Get("TASK_QUEUE_URL"),
		bucket:          vars.Get("BUCKET"),
		bucketRegion:    vars.Get("BUCKET_REGION"),
		terraformBinary: vars.Get("TERRAFORM_BINARY"),
		terraformRole:   vars.Get("TERRAFORM_ROLE_ARN"),
		sourcesDir:      vars.Or("TERRAFORM_SOURCES_DIR", vars.Get("LAMBDA_TASK_ROOT")),
		workDir:         vars.Or("TERRAFORM_WORK_DIR", os.TempDir()),
		pluginCacheDir: vars.Or("TERRAFORM_PLUGIN_CACHE_DIR",
			vars.Or("TF_PLUGIN_CACHE_DIR", filepath.Join(os.TempDir(), "stackseam-terraform-plugins"))),
		s3Endpoint: vars.Or("AWS_ENDPOINT_URL_S3", vars.Get("AWS_ENDPOINT_URL")),
		taskRoot:   vars.Get("LAMBDA_TASK_ROOT"),

		signingSecretID: vars.Get("RESULT_SIGNING_SECRET_ID"),
		signingKey:      vars.Get("RESULT_SIGNING_KEY"),

		codebuildProject: vars.Get("CODEBUILD_PROJECT"),
		taskObjectKey:    vars.Get("TASK_OBJECT_KEY"),
		buildID:          vars.Get("CODEBUILD_BUILD_ID"),
		buildStart:       vars.Get("CODEBUILD_START_TIME"),
	}
	// Every problem is collected, so a start that fails names all of them at once.
	read := vars.Reading()
	read.Int(&c.parallelism, "BATCH_PARALLELISM", 4)
	read.Int(&c.workers, "WORKERS", 1)
	read.Duration(&c.stopGrace, "TERRAFORM_STOP_GRACE", terraform.DefaultStopGrace)
	read.Duration(&c.taskTimeout, "TASK_TIMEOUT", dispatch.DefaultTimeout)
	read.Duration(&c.margin, "TIMEOUT_MARGIN", dispatch.DefaultMargin)
	read.Duration(&c.pollWait, "POLL_WAIT", 20*time.Second)
	read.Duration(&c.visibility, "VISIBILITY_TIMEOUT", time.Minute)
	read.Duration(&c.retry, "RETRY_DELAY", 0)
	read.Duration(&c.lockLease, "TERRAFORM_LOCK_LEASE", 0)
	if c.eventQueueURL == "" {
		read.Problem(errors.New("EVENT_QUEUE_URL is required"))
	}
	switch {
	case oneTask && (c.taskObjectKey == "" || c.bucket == ""):
		read.Problem(errors.New("TASK_OBJECT_KEY and BUCKET are required in one-task mode"))
	case !oneTask && !queue.InLambda() && c.taskQueueURL == "":
		read.Problem(errors.New("TASK_QUEUE_URL is required in local mode"))
	}
	if c.sourcesDir == "" {
		var err error
		if c.sourcesDir, err = os.Getwd(); err != nil {
			read.Problem(fmt.Errorf("error finding the working directory for TERRAFORM_SOURCES_DIR: %w", err))
		}
	}
	return c, read.Err()
}

func run(ctx context.Context, logger *slog.Logger, cfg options, awsCfg aws.Config, oneTask bool) error {
	started := time.Now()
	// An endpoint override (an emulator) has no bucket sub-domains: address S3 by path, and give
	// the S3 backend the same endpoint.
	s3Endpoint := cfg.s3Endpoint
	s3Client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = s3Endpoint != ""
		// Emulators send no response checksums; the SDK would warn on every download.
		o.DisableLogOutputChecksumValidationSkipped = s3Endpoint != ""
	})
	sqsClient := sqs.NewFromConfig(awsCfg)
	redactor := redact.FromEnviron(os.Environ())
	// Results are signed so that the state manager can tell them from a publisher's forgery.
	// Read when first needed: a Secrets Manager outage fails (and so retries) the publish, never
	// the start. Terraform, which runs as a child of this process, must not inherit the key.
	key := signing.NewSource(secretsmanager.NewFromConfig(awsCfg), cfg.signingSecretID, cfg.signingKey)
	_ = os.Unsetenv("RESULT_SIGNING_KEY")

	executors := map[string]executor.Executor{
		lambdainvoke.Name: &lambdainvoke.Invoker{Client: lambda.NewFromConfig(awsCfg)},
	}
	// The stacks' fences (internal/fence), in the same bucket: a run that is no longer current
	// for its stack is not started, and Terraform checks again while holding the state lock.
	var current func(context.Context, message.Task) (bool, error)
	if cfg.bucket != "" {
		current = func(ctx context.Context, task message.Task) (bool, error) {
			return fence.Current(ctx, s3Client, cfg.bucket, task.Stack.ID, task.TaskRunID)
		}
	}
	tf, why := terraformRunner(cfg, awsCfg.Region, s3Endpoint, s3Client, redactor, logger)
	if tf != nil {
		tf.Current = current
		if cfg.terraformRole != "" {
			tf.Scope = &terraform.Scope{STS: sts.NewFromConfig(awsCfg), RoleARN: cfg.terraformRole, MaxDuration: terraform.MaxChainedSession}
			if oneTask {
				// A build may run for 8 hours; STS grants what it can (Scope falls back to the
				// chained-role hour, renewed before it ends, and the log says so).
				tf.Scope.MaxDuration = terraform.MaxSession
			}
			// Terraform's children (providers, local-exec) run as this process's user: without
			// this they could read the satisfier's own credentials from /proc/<pid>/environ.
			if err := notDumpable(); err != nil {
				return fmt.Errorf("error protecting the satisfier's credentials from Terraform: %w", err)
			}
		}
		executors[terraform.Name] = tf
	} else {
		executors[terraform.Name] = unavailable{why}
		logger.Warn("terraform tasks will fail", "reason", why)
	}
	// Every executor a machine may name (the kinds the state manager parses with) runs here.
	for _, k := range kinds.All {
		if executors[k.Name()] == nil {
			return fmt.Errorf("the satisfier has no executor for %s tasks, which machines may name (internal/executor/kinds)", k.Name())
		}
	}
	d := &dispatch.Dispatcher{
		Executors: executors,
		Publish: func(ctx context.Context, m queue.Outgoing) error {
			faults.BeforeResult() // a crash that loses the result, in fault-injection tests
			k, err := key.Key(ctx)
			if err != nil {
				return fmt.Errorf("error reading the result signing key: %w", err)
			}
			if k.Required() {
				m.Attributes = map[string]string{signing.Attribute: k.Sign(m.Body)}
				m.DedupID = k.DedupID(m.DedupID)
			}
			return queue.Send(ctx, sqsClient, cfg.eventQueueURL, []queue.Outgoing{m})
		},
		Current: current,
		InBuild: oneTask,
		Redact:  redactor,
		Timeout: cfg.taskTimeout,
		Margin:  cfg.margin,
		Metrics: metrics.New(os.Stdout, metrics.Satisfier),
		Logger:  logger,
	}
	if cfg.codebuildProject != "" && !oneTask {
		if cfg.bucket == "" {
			return errors.New("CODEBUILD_PROJECT needs BUCKET: the hand-over records are kept there")
		}
		h := &codebuild.HandOver{Builds: cbapi.NewFromConfig(awsCfg), Project: cfg.codebuildProject,
			S3: s3Client, Bucket: cfg.bucket, Logger: logger}
		d.HandOver = func(ctx context.Context, task message.Task, limit time.Duration) (string, bool, error) {
			return h.Start(ctx, task, limit, cfg.margin)
		}
	}
	if err := d.Check(); err != nil {
		return err
	}
	if oneTask {
		return runOneTask(ctx, cfg, d, s3Client, logger, started)
	}
	if cfg.margin <= cfg.stopGrace {
		logger.Warn("TIMEOUT_MARGIN should exceed TERRAFORM_STOP_GRACE: a Terraform run stopped at the deadline "+
			"may then be killed before its result is published", "margin", cfg.margin.String(), "stopGrace", cfg.stopGrace.String())
	}
	attrs := []any{"lambda", queue.InLambda(), "workers", cfg.workers, "parallelism", cfg.parallelism, "signedResults", key.Configured(),
		"startupMs", time.Since(started).Milliseconds(), "redactedVariables", redactor.Names()}
	if tf != nil {
		attrs = append(attrs, "terraform", tf.Binary, "bucket", tf.Bucket, "terraformRole", cfg.terraformRole)
	}
	if d.HandOver != nil {
		attrs = append(attrs, "codebuildProject", cfg.codebuildProject)
	}
	logger.Info("satisfier ready", attrs...)
	// The task queue is a standard queue: its messages carry no group, so
	// InOrderByGroup handles each one on its own, concurrently, and one
	// failure never holds back another.
	handle := func(ctx context.Context, m queue.Message) error {
		if end, ok := codebuild.ParseBuildEnd([]byte(m.Body)); ok {
			return buildEnded(ctx, cfg.bucket, d, tf, s3Client, logger, end)
		}
		faults.Task(m.Body) // a task that kills or stalls the satisfier, in fault-injection tests
		return d.Handle(ctx, m)
	}
	return queue.Serve(ctx, queue.InOrderByGroup(handle, cfg.parallelism), &queue.Poller{
		Client: sqsClient, QueueURL: cfg.taskQueueURL, Workers: cfg.workers, WaitTime: cfg.pollWait,
		VisibilityTimeout: cfg.visibility, RetryDelay: cfg.retry, Logger: logger,
	})
}

// runOneTask runs the one task handed over to this build and publishes its result. It claims the
// run first, so a second build of the same run (a hand-over retried after CodeBuild's idempotency
// token expired) does nothing. The run ends, and reports, before the build's own timeout.
func runOneTask(ctx context.Context, cfg options, d *dispatch.Dispatcher, client *s3.Client, logger *slog.Logger, started time.Time) error {
	task, err := codebuild.Load(ctx, client, cfg.bucket, cfg.taskObjectKey)
	if err != nil {
		return err
	}
	buildID := cfg.buildID
	if buildID == "" {
		buildID = fmt.Sprintf("local:%d", os.Getpid()) // outside CodeBuild (a test), one process is one build
	}
	log := logger.With("stackId", task.Stack.ID, "task", task.Task.Name, "taskRunId", task.TaskRunID, "buildId", buildID)
	if err := codebuild.Claim(ctx, client, cfg.bucket, task, buildID); errors.Is(err, codebuild.ErrClaimed) {
		log.WarnContext(ctx, "run already claimed by another build: nothing to do", "event", "TASK_CLAIMED", "outcome", "claimed", "reason", err.Error())
		return nil
	} else if err != nil {
		return err
	}
	if at, ok := codebuild.StartedAt(cfg.buildStart); ok {
		started = at
	}
	limit := cfg.taskTimeout
	if task.Task.TimeoutSeconds > 0 {
		limit = time.Duration(task.Task.TimeoutSeconds) * time.Second
	}
	// The build's timeout (set by the hand-over from the same values) is its hard end: the
	// dispatcher stops the run a margin before it, with time to store the log and publish.
	runCtx, cancel := context.WithDeadline(ctx, started.Add(message.BuildTimeout(limit, cfg.margin)))
	defer cancel()
	body, err := json.Marshal(task)
	if err != nil {
		return fmt.Errorf("error encoding the task of run %s: %w", task.TaskRunID, err)
	}
	log.InfoContext(ctx, "one-task runner started", "event", "TASK_RECEIVED_BY_BUILD", "outcome", "started",
		"startupMs", time.Since(started).Milliseconds())
	return d.Handle(runCtx, queue.Message{ID: buildID, Body: string(body), ReceiveCount: 1})
}

// buildEnded handles CodeBuild's event for a build that ended (EventBridge sends it to the task
// queue). A build that succeeded published its run's result itself; one that failed, faulted, was
// stopped or timed out may have died without a word (killed, its host lost), so its run is failed
// here — a second result for a run that did report is dropped or ignored — and the state lock the
// dead run may still hold is released, so the stack's next run need not wait out its time.
func buildEnded(ctx context.Context, bucket string, d *dispatch.Dispatcher, tf *terraform.Runner, client *s3.Client,
	logger *slog.Logger, end codebuild.BuildEnd) error {
	log := logger.With("buildId", end.BuildID, "buildStatus", end.Status)
	if end.Reported() || end.ObjectKey == "" || bucket == "" {
		log.DebugContext(ctx, "build ended", "event", "BUILD_ENDED", "outcome", "reported")
		return nil
	}
	task, err := codebuild.Load(ctx, client, bucket, end.ObjectKey)
	if err != nil {
		return err
	}
	log = log.With("stackId", task.Stack.ID, "task", task.Task.Name, "taskRunId", task.TaskRunID)
	if tf != nil && task.Task.Executor == "terraform" {
		released, err := tf.ReleaseDeadRun(ctx, task)
		if err != nil {
			return err
		}
		if released {
			log.WarnContext(ctx, "released the state lock of a build that ended without reporting", "event", "BUILD_ENDED", "outcome", "lock-released")
		}
	}
	desc := fmt.Sprintf("the CodeBuild build %s that ran it ended %s without reporting a result (stopped, killed, or its host was lost); "+
		"the run's log, if it stored one, is at %s in the satisfier's bucket", end.BuildID, end.Status, terraform.LogKey(task))
	if end.LogLink != "" {
		desc += "; the build's own log: " + end.LogLink
	}
	log.WarnContext(ctx, "build ended without reporting: its run is failed", "event", "BUILD_ENDED", "outcome", "failed")
	return d.Fail(ctx, task, desc, "")
}

// terraformRunner builds the terraform executor, or says why there is none.
func terraformRunner(cfg options, region, endpoint string, client *s3.Client, r *redact.Redactor, logger *slog.Logger) (*terraform.Runner, string) {
	if cfg.bucket == "" {
		return nil, "the terraform executor is not configured: set BUCKET, the bucket for Terraform state and logs"
	}
	bin := cfg.terraformBinary
	if bin != "" && !filepath.IsAbs(bin) && strings.ContainsRune(bin, filepath.Separator) {
		// Terraform runs in its work dir: a relative path (bin/tofu in a CodeBuild build's
		// source dir) means the satisfier's working directory.
		if abs, err := filepath.Abs(bin); err == nil {
			bin = abs
		}
	}
	if bin == "" {
		bin = findTerraform(cfg.taskRoot)
		if bin == "" {
			return nil, "the terraform executor is not configured: no tofu or terraform in PATH or LAMBDA_TASK_ROOT; set TERRAFORM_BINARY"
		}
	}
	if cfg.bucketRegion != "" {
		region = cfg.bucketRegion
	}
	return &terraform.Runner{
		Binary: bin, S3: client, Bucket: cfg.bucket, Region: region, Endpoint: endpoint,
		SourcesDir: cfg.sourcesDir, WorkDir: cfg.workDir, PluginCacheDir: cfg.pluginCacheDir,
		StopGrace: cfg.stopGrace, LockLease: cfg.lockLease, Redact: r, Logger: logger,
	}, ""
}

// findTerraform looks for tofu, then terraform, in PATH and then among the bundled files.
func findTerraform(root string) string {
	for _, name := range []string{"tofu", "terraform"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if root != "" {
		for _, name := range []string{"tofu", "terraform", "bin/tofu", "bin/terraform"} {
			p := filepath.Join(root, name)
			if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

// unavailable stands for an executor this satisfier was not configured for: its tasks fail with
// the reason, which tells the operator what to set.
type unavailable struct{ reason string }

func (u unavailable) Run(context.Context, message.Task) (executor.Outcome, error) {
	return executor.Outcome{}, errors.New(u.reason)
}
