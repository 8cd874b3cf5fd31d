// Command statemanager is the state-manager function: it applies events from
// the event queue to stacks. In AWS Lambda (provided.al2023, binary named
// bootstrap) it handles SQS batches; anywhere else it polls the event queue
// (local mode). Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/applier"
	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/internal/queue"
	env "github.com/stackseam/stackseam/internal/settings"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/internal/store"
)

func main() { env.MainAWS(vars, "state manager", readSettings, run) }

// settings is the environment, read once.
type settings struct {
	eventQueueURL  string
	eventQueueARN  string
	functionName   string // in Lambda
	taskQueueURL   string
	taskDLQURL     string
	deadlines      engine.Deadlines
	topicARN       string
	machinesDir    string
	machinesBucket string
	fenceBucket    string
	s3Endpoint     string // an S3 endpoint override (an emulator)
	machinesPrefix string
	machinesEvery  time.Duration
	database       store.Config
	workers        int
	parallelism    int
	pollWait       time.Duration
	retryDelay     time.Duration
	retention      applier.Retention
	sweepAge       time.Duration
	sweepEvery     time.Duration
	probeEvery     time.Duration
	// The approvals queue: its URL (local mode polls it) and ARN (Lambda).
	approvalURL, approvalARN string
	// The intake queue (standard; forwarded into the event queue): its URL (local mode polls
	// it) and ARN (Lambda).
	intakeURL, intakeARN string
	// The result signing key: a secret, or (local mode) the key itself.
	signingSecretID, signingKey string
}

// vars are the environment variables the state manager reads, declared in one place that the
// construct's test checks the template against.
var vars = env.StateManager

func readSettings() (settings, error) {
	s := settings{
		eventQueueURL:  vars.Get("EVENT_QUEUE_URL"),
		eventQueueARN:  vars.Get("EVENT_QUEUE_ARN"),
		approvalURL:    vars.Get("APPROVAL_QUEUE_URL"),
		approvalARN:    vars.Get("APPROVAL_QUEUE_ARN"),
		intakeURL:      vars.Get("INTAKE_QUEUE_URL"),
		intakeARN:      vars.Get("INTAKE_QUEUE_ARN"),
		functionName:   vars.Get("AWS_LAMBDA_FUNCTION_NAME"),
		taskQueueURL:   vars.Get("TASK_QUEUE_URL"),
		taskDLQURL:     vars.Get("TASK_DEAD_LETTER_QUEUE_URL"),
		topicARN:       vars.Get("NOTIFICATION_TOPIC_ARN"),
		machinesDir:    vars.Get("MACHINES_DIR"),
		machinesBucket: vars.Get("MACHINES_BUCKET"),
		fenceBucket:    vars.Get("FENCE_BUCKET"),
		s3Endpoint:     vars.Or("AWS_ENDPOINT_URL_S3", vars.Get("AWS_ENDPOINT_URL")),
		machinesPrefix: vars.Or("MACHINES_PREFIX", "machines/"),
		database:       store.ConfigFromEnv(vars.Get),

		signingSecretID: vars.Get("RESULT_SIGNING_SECRET_ID"),
		signingKey:      vars.Get("RESULT_SIGNING_KEY"),
	}
	// Every problem is collected, so a start that fails names all of them at once.
	read := vars.Reading()
	read.Int(&s.workers, "WORKERS", 1)
	read.Int(&s.parallelism, "BATCH_PARALLELISM", 10)
	read.Int(&s.deadlines.Receives, "TASK_QUEUE_MAX_RECEIVE_COUNT", deployed.TaskQueueMaxReceiveCount)
	read.Duration(&s.machinesEvery, "MACHINES_REFRESH", 30*time.Second)
	read.Duration(&s.pollWait, "POLL_WAIT", 20*time.Second)
	read.Duration(&s.retryDelay, "RETRY_DELAY", 0)
	read.Duration(&s.sweepAge, "OUTBOX_SWEEP_AGE", 30*time.Second)
	read.Duration(&s.sweepEvery, "SWEEP_INTERVAL", time.Minute)
	read.Duration(&s.probeEvery, "DATABASE_PROBE_INTERVAL", 5*time.Second)
	// The construct's defaults: the satisfier's default run bound (dispatch.DefaultTimeout, its
	// Lambda timeout) and a task queue visibility of six times that.
	read.Duration(&s.deadlines.DefaultTimeout, "TASK_TIMEOUT", 15*time.Minute)
	read.Duration(&s.deadlines.Visibility, "TASK_QUEUE_VISIBILITY_TIMEOUT", 90*time.Minute)
	var err error
	s.retention, err = readRetention()
	read.Problem(err)
	if s.taskQueueURL == "" {
		read.Problem(fmt.Errorf("TASK_QUEUE_URL is required"))
	}
	if s.eventQueueURL == "" {
		read.Problem(fmt.Errorf("EVENT_QUEUE_URL is required (local mode polls it; time-to-live events are sent to it)"))
	}
	if queue.InLambda() && s.eventQueueARN == "" {
		read.Problem(fmt.Errorf("EVENT_QUEUE_ARN is required in Lambda (the state manager pauses its event source mapping while the database is unavailable)"))
	}
	// The intake's messages are forwarded as publishers' events: the same queue as the approvals
	// queue would turn approvals into publishers' events, and the event queue would loop.
	for _, q := range [][2]string{{s.intakeURL, s.approvalURL}, {s.intakeURL, s.eventQueueURL}, {s.intakeARN, s.approvalARN}, {s.intakeARN, s.eventQueueARN}} {
		if q[0] != "" && q[0] == q[1] {
			read.Problem(fmt.Errorf("the intake queue %s must be a queue of its own (it is the approvals or the event queue)", q[0]))
		}
	}
	if (s.machinesDir == "") == (s.machinesBucket == "") {
		read.Problem(fmt.Errorf("set exactly one of MACHINES_DIR and MACHINES_BUCKET"))
	}
	return s, read.Err()
}

func run(ctx context.Context, logger *slog.Logger, cfg settings, awsCfg aws.Config) error {
	started := time.Now()
	dbCfg := cfg.database
	dbCfg.Secrets = secretsmanager.NewFromConfig(awsCfg)
	dbCfg.MaxConns = int32(cfg.workers*cfg.parallelism + 2)
	st, err := store.Open(ctx, dbCfg)
	if err != nil {
		return err
	}
	defer st.Close()

	var machines *catalog.Catalog
	opts := catalog.Options{RefreshInterval: cfg.machinesEvery}
	if cfg.machinesDir != "" {
		machines = catalog.NewDir(cfg.machinesDir, opts)
	} else {
		machines = catalog.NewS3(s3.NewFromConfig(awsCfg), cfg.machinesBucket, cfg.machinesPrefix, opts)
	}
	sqsClient := sqs.NewFromConfig(awsCfg)
	// Results are accepted only with the satisfier's signature; the state manager signs the
	// results it writes itself (a parked task message's TASK_ERROR) with the same key.
	// The key is read when first needed (and by the gate's probe): a Secrets Manager outage pauses
	// consumption like a database outage instead of failing the start.
	key := signing.NewSource(secretsmanager.NewFromConfig(awsCfg), cfg.signingSecretID, cfg.signingKey)
	if queue.InLambda() && !key.Configured() {
		logger.Warn("no result signing key configured (RESULT_SIGNING_SECRET_ID): results are accepted unsigned, so anyone who may publish events can settle tasks")
	}
	outlets := map[string]applier.Outlet{
		store.DestinationTask:  applier.TaskQueue(sqsClient, cfg.taskQueueURL),
		store.DestinationEvent: applier.EventQueue(sqsClient, cfg.eventQueueURL, key),
	}
	if cfg.fenceBucket != "" {
		// Each decision that changes a stack's current runs writes its fence before its task
		// messages go out, so the satisfier can refuse a stale run without the database.
		outlets[store.DestinationFence] = applier.Fences(s3.NewFromConfig(awsCfg, func(o *s3.Options) {
			o.UsePathStyle = cfg.s3Endpoint != "" // an emulator has no bucket sub-domains
		}), cfg.fenceBucket)
	}
	if cfg.topicARN != "" {
		outlets[store.DestinationNotification] = applier.NotificationTopic(sns.NewFromConfig(awsCfg), cfg.topicARN)
	}
	recorder := metrics.New(os.Stdout, metrics.StateManager)
	app := &applier.Applier{
		Store:     st,
		Machines:  machines,
		Outlets:   outlets,
		ResultKey: key,
		Metrics:   recorder,
		Logger:    logger,
	}
	// While the database is unavailable nothing is received, so an outage of any length spends
	// no receive counts (docs/design.md §"Guarantees").
	gate := &queue.Gate{
		Probe:      ready(st, key, logger),
		Transient:  store.IsTransient,
		ProbeEvery: cfg.probeEvery,
		Logger:     logger,
		OnUnavailable: func(context.Context, error) {
			recorder.Record(nil, metrics.Value{Name: metrics.DatabaseUnavailable, Unit: metrics.Count, Value: 1})
		},
	}
	if queue.InLambda() {
		lambdaClient := lambda.NewFromConfig(awsCfg)
		pausers := queue.Pausers{&queue.EventSourceMapping{Client: lambdaClient, FunctionName: cfg.functionName, QueueARN: cfg.eventQueueARN}}
		for _, arn := range []string{cfg.approvalARN, cfg.intakeARN} {
			if arn != "" {
				pausers = append(pausers, &queue.EventSourceMapping{Client: lambdaClient, FunctionName: cfg.functionName, QueueARN: arn})
			}
		}
		gate.Pauser = pausers
	}
	for _, src := range []string{cfg.approvalARN, cfg.approvalURL} {
		if src != "" {
			app.ApprovalSources = append(app.ApprovalSources, src)
		}
	}
	app.Retention = cfg.retention
	app.Deadlines = cfg.deadlines
	if cfg.taskDLQURL != "" {
		app.TaskDeadLetters = &applier.TaskDeadLetterQueue{Client: sqsClient, URL: cfg.taskDLQURL, Receives: cfg.deadlines.Receives}
	}
	sweep := func(ctx context.Context) error {
		if queue.InLambda() {
			// A paused mapping delivers nothing that could resume it: the scheduled tick does.
			if err := gate.Check(ctx); err != nil {
				return err
			}
		}
		res, err := app.Sweep(ctx, cfg.sweepAge)
		if err == nil && res.Expired+res.Resent+res.PrunedEvents+res.PrunedRejections+res.Overdue+res.DeadLettered > 0 {
			logger.Info("sweep done", "expired", res.Expired, "resent", res.Resent,
				"prunedEventKeys", res.PrunedEvents, "prunedRejections", res.PrunedRejections,
				"overdueRunsSettled", res.Overdue, "deadLetteredRunsSettled", res.DeadLettered)
		}
		return err
	}
	// A database that is down at start pauses consumption like one that fails later; the
	// function never fails to start because of it (in Lambda a failed init would spend the
	// receive counts of the batch that started it).
	dbErr := gate.Start(ctx)
	logger.Info("state manager ready", "lambda", queue.InLambda(), "workers", cfg.workers,
		"notifications", cfg.topicARN != "", "databaseAvailable", dbErr == nil, "startupMs", time.Since(started).Milliseconds())
	// An event that fails on its last receive is dead-lettered here rather than by SQS, so that
	// the later events of its stack, received and counted with it, are not dead-lettered too.
	// Outside the gate: a failure the gate marks as an outage (queue.ErrPaused) is never moved.
	deadLetter := &queue.DeadLetter{Client: sqsClient, QueueURL: cfg.eventQueueURL, Logger: logger}
	events := queue.InOrderByGroup(deadLetter.Wrap(gate.Guard(app.Handle)), cfg.parallelism)
	handle := events
	var sourcesDone sync.WaitGroup
	// Lambda hands one event source's records per invocation, so a batch is routed by its first.
	routes := map[string]queue.BatchHandler{}
	if cfg.approvalURL != "" || cfg.approvalARN != "" {
		// Approvals take the same path as events, with the approvals queue's own dead-letter queue.
		approvalDeadLetter := &queue.DeadLetter{Client: sqsClient, QueueURL: cfg.approvalURL, Logger: logger}
		approvals := queue.InOrderByGroup(approvalDeadLetter.Wrap(gate.Guard(app.Handle)), cfg.parallelism)
		routes[cfg.approvalARN] = approvals
		if !queue.InLambda() && cfg.approvalURL != "" {
			sourcesDone.Go(func() {
				_ = (&queue.Poller{Client: sqsClient, QueueURL: cfg.approvalURL, WaitTime: cfg.pollWait,
					RetryDelay: cfg.retryDelay, Logger: logger, Gate: gate}).Run(ctx, approvals)
			})
		}
	}
	if cfg.intakeURL != "" || cfg.intakeARN != "" {
		// The intake is a standard queue: no groups, no order to keep, so SQS's own redrive
		// dead-letters what fails too often. What it forwards is applied from the event queue.
		intake := &applier.Intake{Applier: app, Client: sqsClient, EventQueueURL: cfg.eventQueueURL, Key: key}
		forward := queue.InOrderByGroup(gate.Guard(intake.Handle), cfg.parallelism)
		routes[cfg.intakeARN] = forward
		if !queue.InLambda() && cfg.intakeURL != "" {
			sourcesDone.Go(func() {
				_ = (&queue.Poller{Client: sqsClient, QueueURL: cfg.intakeURL, WaitTime: cfg.pollWait,
					RetryDelay: cfg.retryDelay, Logger: logger, Gate: gate}).Run(ctx, forward)
			})
		}
	}
	delete(routes, "") // local mode: the pollers above, never a batch's Source
	if len(routes) > 0 {
		handle = func(ctx context.Context, batch []queue.Message) []string {
			if len(batch) > 0 {
				if h, ok := routes[batch[0].Source]; ok {
					return h(ctx, batch)
				}
			}
			return events(ctx, batch)
		}
	}
	defer sourcesDone.Wait()
	return queue.ServeWithTick(ctx, handle, &queue.Poller{
		Client: sqsClient, QueueURL: cfg.eventQueueURL, Workers: cfg.workers,
		WaitTime: cfg.pollWait, RetryDelay: cfg.retryDelay, Logger: logger, Gate: gate,
	}, queue.Tick{Every: cfg.sweepEvery, Run: sweep, Broadcast: func(ctx context.Context, payload []byte) error {
		b, err := message.ParseBroadcast(payload)
		if err != nil {
			// Not worth a retry: the payload is the schedule's, fixed at deployment.
			logger.Error("broadcast refused", "error", err.Error())
			return nil
		}
		_, err = app.Broadcast(ctx, b)
		return err
	}})
}

// readRetention reads PROCESSED_EVENTS_RETENTION and REJECTIONS_RETENTION: unset takes the
// default, 0 keeps the rows forever. A processed event key kept for less than the event queue's
// retention could let a redelivered message be applied twice, so a shorter one is refused.
func readRetention() (applier.Retention, error) {
	var r applier.Retention
	read := vars.Reading()
	read.Duration(&r.ProcessedEvents, "PROCESSED_EVENTS_RETENTION", applier.DefaultProcessedEventsRetention)
	read.Duration(&r.Rejections, "REJECTIONS_RETENTION", applier.DefaultRejectionsRetention)
	if err := read.Err(); err != nil {
		return r, err
	}
	for _, d := range []*time.Duration{&r.ProcessedEvents, &r.Rejections} {
		if *d == 0 {
			*d = -1 // keep forever
		}
	}
	if r.ProcessedEvents > 0 && r.ProcessedEvents < applier.MinProcessedEventsRetention {
		return r, fmt.Errorf("PROCESSED_EVENTS_RETENTION=%s is shorter than the event queue's retention (%s): a redelivered message would be applied twice; use at least %s, or 0 to keep the keys forever",
			r.ProcessedEvents, applier.MinProcessedEventsRetention, applier.MinProcessedEventsRetention)
	}
	return r, nil
}

// migrateTimeout bounds applying the migrations, separately from the probe's own timeout, so a
// long migration is not cancelled by every probe.
const migrateTimeout = 5 * time.Minute

// ready is the gate's probe: the schema is migrated (once per process; migrations are safe under
// concurrency), the database takes writes (a ping passes on a read-only database after a
// failover), and the result signing key, if configured, has been read.
func ready(st *store.Store, key *signing.Source, logger *slog.Logger) func(context.Context) error {
	var mu sync.Mutex
	migrated := false
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if !migrated {
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), migrateTimeout)
			applied, err := st.Migrate(mctx)
			cancel()
			if err != nil {
				return err
			}
			if len(applied) > 0 {
				logger.Info("database migrated", "versions", applied)
			}
			migrated = true
		}
		if err := st.CheckWritable(ctx); err != nil {
			return err
		}
		if _, err := key.Key(ctx); err != nil {
			return fmt.Errorf("result signing key unavailable: %w", err)
		}
		return nil
	}
}
