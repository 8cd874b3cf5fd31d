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
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/functions/applier"
	"github.com/stackseam/stackseam/functions/machine"
	"github.com/stackseam/stackseam/functions/metrics"
	"github.com/stackseam/stackseam/functions/queue"
	env "github.com/stackseam/stackseam/functions/settings"
	"github.com/stackseam/stackseam/functions/store"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: env.LogLevel()}))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, logger); err != nil {
		logger.Error("state manager stopped", "error", err.Error())
		os.Exit(1)
	}
}

// settings is the environment, read once.
type settings struct {
	eventQueueURL  string
	taskQueueURL   string
	topicARN       string
	machinesDir    string
	machinesBucket string
	machinesPrefix string
	machinesEvery  time.Duration
	databaseURL    string
	secretID       string
	sslMode        string
	workers        int
	parallelism    int
	pollWait       time.Duration
	retryDelay     time.Duration
	sweepAge       time.Duration
	sweepEvery     time.Duration
}

func readSettings() (settings, error) {
	s := settings{
		eventQueueURL:  os.Getenv("EVENT_QUEUE_URL"),
		taskQueueURL:   os.Getenv("TASK_QUEUE_URL"),
		topicARN:       os.Getenv("NOTIFICATION_TOPIC_ARN"),
		machinesDir:    os.Getenv("MACHINES_DIR"),
		machinesBucket: os.Getenv("MACHINES_BUCKET"),
		machinesPrefix: env.Or("MACHINES_PREFIX", "machines/"),
		databaseURL:    os.Getenv("DATABASE_URL"),
		secretID:       os.Getenv("DATABASE_SECRET_ID"),
		sslMode:        os.Getenv("DATABASE_SSLMODE"),
	}
	var err error
	ints := []struct {
		name string
		def  int
		dst  *int
	}{{"WORKERS", 1, &s.workers}, {"BATCH_PARALLELISM", 4, &s.parallelism}}
	for _, v := range ints {
		if *v.dst, err = env.Int(v.name, v.def); err != nil {
			return s, err
		}
	}
	durations := []struct {
		name string
		def  time.Duration
		dst  *time.Duration
	}{
		{"MACHINES_REFRESH", 30 * time.Second, &s.machinesEvery},
		{"POLL_WAIT", 20 * time.Second, &s.pollWait},
		{"RETRY_DELAY", 0, &s.retryDelay},
		{"OUTBOX_SWEEP_AGE", 30 * time.Second, &s.sweepAge},
		{"SWEEP_INTERVAL", time.Minute, &s.sweepEvery},
	}
	for _, v := range durations {
		if *v.dst, err = env.Duration(v.name, v.def); err != nil {
			return s, err
		}
	}
	if s.taskQueueURL == "" {
		return s, fmt.Errorf("TASK_QUEUE_URL is required")
	}
	if s.eventQueueURL == "" {
		return s, fmt.Errorf("EVENT_QUEUE_URL is required (local mode polls it; time-to-live events are sent to it)")
	}
	if (s.machinesDir == "") == (s.machinesBucket == "") {
		return s, fmt.Errorf("set exactly one of MACHINES_DIR and MACHINES_BUCKET")
	}
	return s, nil
}

func run(ctx context.Context, logger *slog.Logger) error {
	started := time.Now()
	cfg, err := readSettings()
	if err != nil {
		return err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("error loading AWS configuration: %w", err)
	}
	st, err := store.Open(ctx, store.Config{
		DatabaseURL: cfg.databaseURL, SecretID: cfg.secretID, SSLMode: cfg.sslMode,
		Secrets:  secretsmanager.NewFromConfig(awsCfg),
		MaxConns: int32(cfg.workers*cfg.parallelism + 2),
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := migrate(ctx, st, logger); err != nil {
		return err
	}

	var machines *machine.Catalog
	opts := machine.CatalogOptions{RefreshInterval: cfg.machinesEvery}
	if cfg.machinesDir != "" {
		machines = machine.NewDirCatalog(cfg.machinesDir, opts)
	} else {
		machines = machine.NewS3Catalog(s3.NewFromConfig(awsCfg), cfg.machinesBucket, cfg.machinesPrefix, opts)
	}
	sqsClient := sqs.NewFromConfig(awsCfg)
	outlets := map[string]applier.Outlet{
		store.DestinationTask:  applier.TaskQueue(sqsClient, cfg.taskQueueURL),
		store.DestinationEvent: applier.EventQueue(sqsClient, cfg.eventQueueURL),
	}
	if cfg.topicARN != "" {
		outlets[store.DestinationNotification] = applier.NotificationTopic(sns.NewFromConfig(awsCfg), cfg.topicARN)
	}
	app := &applier.Applier{
		Store:    st,
		Machines: machines,
		Outlets:  outlets,
		Metrics:  metrics.New(os.Stdout, "statemanager"),
		Logger:   logger,
	}
	sweep := func(ctx context.Context) error {
		res, err := app.Sweep(ctx, cfg.sweepAge)
		if err == nil && res.Expired+res.Resent > 0 {
			logger.Info("sweep done", "expired", res.Expired, "resent", res.Resent)
		}
		return err
	}
	logger.Info("state manager ready", "lambda", queue.InLambda(), "workers", cfg.workers,
		"notifications", cfg.topicARN != "", "startupMs", time.Since(started).Milliseconds())
	// An event that fails on its last receive is dead-lettered here rather than by SQS, so that
	// the later events of its stack, received and counted with it, are not dead-lettered too.
	deadLetter := &queue.DeadLetter{Client: sqsClient, QueueURL: cfg.eventQueueURL, Logger: logger}
	return queue.ServeWithTick(ctx, queue.InOrderByGroup(deadLetter.Wrap(app.Handle), cfg.parallelism), &queue.Poller{
		Client: sqsClient, QueueURL: cfg.eventQueueURL, Workers: cfg.workers,
		WaitTime: cfg.pollWait, RetryDelay: cfg.retryDelay, Logger: logger,
	}, queue.Tick{Every: cfg.sweepEvery, Run: sweep})
}

// migrate brings the schema up to date, retrying while the database is not
// reachable yet (a local database still starting, an RDS instance waking).
func migrate(ctx context.Context, st *store.Store, logger *slog.Logger) error {
	for attempt := 1; ; attempt++ {
		applied, err := st.Migrate(ctx)
		if err == nil {
			if len(applied) > 0 {
				logger.Info("database migrated", "versions", applied)
			}
			return nil
		}
		if attempt == 10 || ctx.Err() != nil {
			return err
		}
		logger.Warn("database not ready; retrying", "attempt", attempt, "error", err.Error())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
}
