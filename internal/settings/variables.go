package settings

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Variable is one environment variable a function reads.
type Variable struct {
	// Name is the variable's name.
	Name string
	// Required means the function refuses to start without it (in local mode, at least).
	Required bool
	// LocalOnly means only local mode (polling the queue) uses it; in Lambda the event-source
	// mapping does that work, so the construct must not set it.
	LocalOnly bool
	// Deployed means the construct must set it: the deployed function does not work, or works
	// differently than documented, without it.
	Deployed bool
	// Runtime means the Lambda runtime sets it (LAMBDA_TASK_ROOT), not the construct.
	Runtime bool
	// Build means only the satisfier's one-task mode reads it, inside a CodeBuild build, where
	// CodeBuild or the hand-over sets it (CODEBUILD_BUILD_ID, TASK_OBJECT_KEY): the construct
	// must not set it on the function.
	Build bool
}

// Declared is the one list of the environment variables a function reads. The function reads
// them through it, so a variable it does not list cannot be read (it panics, which every test that
// starts the function notices), and the construct's test checks the template against it: every
// variable the construct sets is listed and not LocalOnly, and every Deployed one is set.
type Declared struct {
	// Function names the function ("statemanager", "satisfier").
	Function string
	// Variables are the variables, in the order of the function's documentation.
	Variables []Variable

	mu   sync.Mutex
	read map[string]bool
}

// StateManager is what the state manager reads (see README.md, "Configuration").
var StateManager = &Declared{Function: "statemanager", Variables: []Variable{
	{Name: "EVENT_QUEUE_URL", Required: true, Deployed: true},
	// Required in Lambda: the state manager pauses its own event-source mapping while the
	// database is unavailable, and finds it by this queue and its function name.
	{Name: "EVENT_QUEUE_ARN", Deployed: true},
	{Name: "AWS_LAMBDA_FUNCTION_NAME", Runtime: true},
	// The approvals queue (README.md, "Plan, approve, apply"): only principals with approval
	// rights can send to it, so its messages are approvals. Local mode polls the URL; in Lambda
	// the ARN recognises its records and pauses its mapping with the event queue's.
	{Name: "APPROVAL_QUEUE_URL", Deployed: true},
	{Name: "APPROVAL_QUEUE_ARN", Deployed: true},
	// The intake queue (README.md, "Publishing from CloudSeam"): a standard queue whose messages
	// are forwarded into the event queue, each with its stack id as group and its own id as
	// deduplication id. Local mode polls the URL; in Lambda the ARN recognises its records and
	// pauses its mapping with the event queue's.
	{Name: "INTAKE_QUEUE_URL", Deployed: true},
	{Name: "INTAKE_QUEUE_ARN", Deployed: true},
	{Name: "TASK_QUEUE_URL", Required: true, Deployed: true},
	// A dispatched task run's deadline is TASK_QUEUE_MAX_RECEIVE_COUNT × (its timeout, or
	// TASK_TIMEOUT, + TASK_QUEUE_VISIBILITY_TIMEOUT) after its dispatch (engine.Deadlines): the
	// construct sets them to what it deployed, and the defaults are the construct's defaults.
	{Name: "TASK_QUEUE_VISIBILITY_TIMEOUT", Deployed: true},
	{Name: "TASK_QUEUE_MAX_RECEIVE_COUNT", Deployed: true},
	{Name: "TASK_TIMEOUT", Deployed: true},
	// The task dead-letter queue, peeked by the sweep: its messages' runs are failed at once.
	{Name: "TASK_DEAD_LETTER_QUEUE_URL", Deployed: true},
	{Name: "NOTIFICATION_TOPIC_ARN", Deployed: true},
	{Name: "MACHINES_DIR"},
	// The state manager names the bucket MACHINES_BUCKET and the satisfier BUCKET: in a
	// deployment both are the construct's bucket, but the state manager reads only machines/
	// from it, and a separate machines bucket is possible.
	{Name: "MACHINES_BUCKET", Deployed: true},
	{Name: "MACHINES_PREFIX", Deployed: true},
	// The bucket of the stacks' fences (fences/<stackId>, internal/fence); the construct's bucket.
	{Name: "FENCE_BUCKET", Deployed: true},
	// An S3 endpoint override (an emulator): S3 is then addressed path-style.
	{Name: "AWS_ENDPOINT_URL_S3"},
	{Name: "AWS_ENDPOINT_URL"},
	{Name: "MACHINES_REFRESH"},
	{Name: "DATABASE_URL"},
	{Name: "DATABASE_SECRET_ID", Deployed: true},
	{Name: "DATABASE_SSLMODE"},
	// A PEM file of the CAs to trust instead of the embedded Amazon RDS bundle (internal/store).
	{Name: "DATABASE_SSLROOTCERT"},
	// The PostgreSQL schema of stackseam's tables (internal/store: store.DefaultSchema, "stackseam").
	{Name: "DATABASE_SCHEMA"},
	{Name: "BATCH_PARALLELISM"},
	{Name: "OUTBOX_SWEEP_AGE"},
	// How long the sweep keeps processed event keys and rejections (history is kept).
	{Name: "PROCESSED_EVENTS_RETENTION"},
	{Name: "REJECTIONS_RETENTION"},
	// While consumption is paused for a database outage; in Lambda the sweep schedule probes.
	{Name: "DATABASE_PROBE_INTERVAL"},
	{Name: "LOG_LEVEL", Deployed: true},
	// Results are accepted only with the satisfier's signature (internal/signing).
	{Name: "RESULT_SIGNING_SECRET_ID", Deployed: true},
	{Name: "RESULT_SIGNING_KEY", LocalOnly: true},
	{Name: "WORKERS", LocalOnly: true},
	{Name: "POLL_WAIT", LocalOnly: true},
	{Name: "RETRY_DELAY", LocalOnly: true},
	// In Lambda the sweep runs on the EventBridge rule's schedule instead.
	{Name: "SWEEP_INTERVAL", LocalOnly: true},
}}

// Satisfier is what the task satisfier reads (see functions/satisfier's package documentation).
var Satisfier = &Declared{Function: "satisfier", Variables: []Variable{
	{Name: "EVENT_QUEUE_URL", Required: true, Deployed: true},
	{Name: "TASK_QUEUE_URL", Deployed: true},
	{Name: "BUCKET", Deployed: true},
	{Name: "BUCKET_REGION"},
	{Name: "TERRAFORM_BINARY", Deployed: true},
	{Name: "TERRAFORM_SOURCES_DIR"},
	{Name: "LAMBDA_TASK_ROOT", Runtime: true},
	{Name: "TERRAFORM_WORK_DIR"},
	{Name: "TERRAFORM_PLUGIN_CACHE_DIR"},
	{Name: "TF_PLUGIN_CACHE_DIR"},
	{Name: "TERRAFORM_STOP_GRACE"},
	{Name: "TERRAFORM_LOCK_LEASE"},
	// The role Terraform runs with, assumed per run with a session policy that reaches only the
	// run's machine's objects in the bucket (terraform.Scope); the construct sets it on the
	// function and on the task builds. Unset, Terraform runs with the satisfier's own credentials.
	{Name: "TERRAFORM_ROLE_ARN", Deployed: true},
	{Name: "TASK_TIMEOUT"},
	{Name: "TIMEOUT_MARGIN"},
	{Name: "BATCH_PARALLELISM"},
	{Name: "LOG_LEVEL", Deployed: true},
	// The key results are signed with (internal/signing): the construct's secret, or the key
	// itself in local mode.
	{Name: "RESULT_SIGNING_SECRET_ID", Deployed: true},
	{Name: "RESULT_SIGNING_KEY", LocalOnly: true},
	// The AWS SDK reads these itself too; the satisfier also gives the S3 endpoint to
	// Terraform's S3 backend.
	{Name: "AWS_ENDPOINT_URL_S3"},
	{Name: "AWS_ENDPOINT_URL"},
	{Name: "WORKERS", LocalOnly: true},
	{Name: "POLL_WAIT", LocalOnly: true},
	{Name: "VISIBILITY_TIMEOUT", LocalOnly: true},
	{Name: "RETRY_DELAY", LocalOnly: true},
	// The CodeBuild project tasks longer than Lambda allows are handed over to
	// (internal/executor/codebuild); unset, they run in the satisfier itself.
	{Name: "CODEBUILD_PROJECT", Deployed: true},
	// The one-task mode in a build: the hand-over record's key (set by the hand-over), and the
	// build's id and start time (set by CodeBuild).
	{Name: "TASK_OBJECT_KEY", Build: true},
	{Name: "CODEBUILD_BUILD_ID", Build: true},
	{Name: "CODEBUILD_START_TIME", Build: true},
}}

// Query is what the query function reads (see functions/query's package documentation): only how
// to reach the database, which it opens read-only.
var Query = &Declared{Function: "query", Variables: []Variable{
	{Name: "DATABASE_SECRET_ID", Deployed: true},
	{Name: "DATABASE_URL"},
	// verify-full, as for the state manager: the construct sets it so the deployed function
	// never depends on the default.
	{Name: "DATABASE_SSLMODE", Deployed: true},
	{Name: "DATABASE_SSLROOTCERT"},
	// The schema of stackseam's tables, as the state manager has it (internal/store).
	{Name: "DATABASE_SCHEMA"},
	{Name: "LOG_LEVEL", Deployed: true},
}}

// Lookup returns the declaration of name.
func (d *Declared) Lookup(name string) (Variable, bool) {
	i := slices.IndexFunc(d.Variables, func(v Variable) bool { return v.Name == name })
	if i < 0 {
		return Variable{}, false
	}
	return d.Variables[i], true
}

// Names returns every declared name, in order.
func (d *Declared) Names() []string {
	names := make([]string, len(d.Variables))
	for i, v := range d.Variables {
		names[i] = v.Name
	}
	return names
}

// Read returns the names read so far through d, sorted; tests compare it with Names.
func (d *Declared) Read() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for n := range d.read {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// use checks that name is declared and records that it was read. An undeclared name is a
// programming error: the construct's test could not check it.
func (d *Declared) use(name string) {
	if _, ok := d.Lookup(name); !ok {
		panic(fmt.Sprintf("settings: %s reads %s, which is not in its declared variables (internal/settings)", d.Function, name))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.read == nil {
		d.read = map[string]bool{}
	}
	d.read[name] = true
}

// Get returns the value of the declared variable name ("" when unset).
func (d *Declared) Get(name string) string {
	d.use(name)
	return os.Getenv(name)
}

// Or is the package's Or for a declared variable.
func (d *Declared) Or(name, def string) string {
	d.use(name)
	return Or(name, def)
}

// Int is the package's Int for a declared variable.
func (d *Declared) Int(name string, def int) (int, error) {
	d.use(name)
	return Int(name, def)
}

// Duration is the package's Duration for a declared variable.
func (d *Declared) Duration(name string, def time.Duration) (time.Duration, error) {
	d.use(name)
	return Duration(name, def)
}

// LogLevel is the package's LogLevel, reading the declared LOG_LEVEL.
func (d *Declared) LogLevel() slog.Level {
	d.use("LOG_LEVEL")
	return LogLevel()
}

// CheckDeployed compares the variables a deployment sets on the function (the construct's
// template) with the declaration and returns every problem, sorted: a variable the function does
// not read (a typo, or another function's name for it, like BUCKET for MACHINES_BUCKET), one only
// local mode reads, one the Lambda runtime sets, and a Deployed one that is missing.
func (d *Declared) CheckDeployed(set []string) []string {
	var problems []string
	has := map[string]bool{}
	for _, name := range set {
		has[name] = true
		v, ok := d.Lookup(name)
		switch {
		case !ok:
			problems = append(problems, d.Function+": the construct sets "+name+", which the function does not read")
		case v.LocalOnly:
			problems = append(problems, d.Function+": the construct sets "+name+", which only local mode reads")
		case v.Runtime:
			problems = append(problems, d.Function+": the construct sets "+name+", which the Lambda runtime sets")
		case v.Build:
			problems = append(problems, d.Function+": the construct sets "+name+", which only a CodeBuild build sets")
		}
	}
	for _, v := range d.Variables {
		if v.Deployed && !has[v.Name] {
			problems = append(problems, d.Function+": the construct does not set "+v.Name+", which the deployed function needs")
		}
	}
	slices.Sort(problems)
	return problems
}

// Main is what each function's main does: logs JSON at d's LOG_LEVEL to stdout, runs run until
// it returns or SIGTERM/SIGINT cancels its context, and exits 1 with the error logged when it
// fails. what names the function in that last line ("state manager", "satisfier", …).
func (d *Declared) Main(what string, run func(context.Context, *slog.Logger) error) {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: d.LogLevel()}))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, logger)
	stop()
	if err != nil {
		logger.Error(what+" stopped", "error", err.Error())
		os.Exit(1)
	}
}
