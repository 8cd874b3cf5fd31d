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
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/functions/applier"
	"github.com/stackseam/stackseam/functions/machine"
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
}

func readSettings() (settings, error) {
	s := settings{
		eventQueueURL:  os.Getenv("EVENT_QUEUE_URL"),
		taskQueueURL:   os.Getenv("TASK_QUEUE_URL"),
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
	}
	for _, v := range durations {
		if *v.dst, err = env.Duration(v.name, v.def); err != nil {
			return s, err
		}
	}
	if s.taskQueueURL == "" {
		return s, fmt.Errorf("TASK_QUEUE_URL is required")
	}
	if !queue.InLambda() && s.eventQueueURL == "" {
		return s, fmt.Errorf("EVENT_QUEUE_URL is required in local mode")
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
	app := &applier.Applier{
		Store:    st,
		Machines: machines,
		Send: func(ctx context.Context, msgs []queue.Outgoing) error {
			return queue.Send(ctx, sqsClient, cfg.taskQueueURL, msgs)
		},
		Logger: logger,
	}
	handle := withOutboxSweep(queue.InOrderByGroup(app.Handle, cfg.parallelism), app, cfg.sweepAge, logger)
	logger.Info("state manager ready", "lambda", queue.InLambda(), "workers", cfg.workers,
		"startupMs", time.Since(started).Milliseconds())
	return queue.Serve(ctx, handle, &queue.Poller{
		Client: sqsClient, QueueURL: cfg.eventQueueURL, Workers: cfg.workers,
		WaitTime: cfg.pollWait, RetryDelay: cfg.retryDelay, Logger: logger,
	})
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

// withOutboxSweep publishes abandoned outbox rows at most once per sweep age,
// piggy-backing on batches so it works the same in Lambda and local mode.
func withOutboxSweep(h queue.BatchHandler, app *applier.Applier, age time.Duration, logger *slog.Logger) queue.BatchHandler {
	var mu sync.Mutex
	var last time.Time
	return func(ctx context.Context, batch []queue.Message) []string {
		mu.Lock()
		due := time.Since(last) > age
		if due {
			last = time.Now()
		}
		mu.Unlock()
		if due {
			if _, err := app.SweepOutbox(ctx, age); err != nil {
				logger.Warn("outbox sweep failed", "error", err.Error())
			}
		}
		return h(ctx, batch)
	}
}
