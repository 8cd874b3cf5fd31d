// Command query is the query function: it answers operators' read-only questions about this
// deployment's stacks (internal/query's Request and Response) when invoked through the Lambda
// Invoke API, so the CLI and the web console reach a deployed stackseam with IAM credentials and
// no network path to the database. It runs in AWS Lambda only (provided.al2023, binary
// bootstrap); locally the CLI reads the database itself. Configuration is the environment:
// DATABASE_SECRET_ID (or DATABASE_URL), DATABASE_SSLMODE, DATABASE_SSLROOTCERT and LOG_LEVEL, as
// for the state manager. Its connections are read-only (store.Config.ReadOnly).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/internal/queue"
	env "github.com/stackseam/stackseam/internal/settings"
	"github.com/stackseam/stackseam/internal/store"
)

// vars are the environment variables the query function reads, declared in one place that the
// construct's test checks the template against.
var vars = env.Query

func main() { env.MainAWS(vars, "query function", lambdaSettings, run) }

// lambdaSettings is readSettings in Lambda, the only place the query function runs.
func lambdaSettings() (store.Config, error) {
	if !queue.InLambda() {
		return store.Config{}, errors.New("the query function runs in AWS Lambda only; locally, `stackseam stacks|show|history --database-url` reads the database itself")
	}
	return readSettings()
}

// readSettings reads the database settings; every problem is named at once.
func readSettings() (store.Config, error) {
	cfg := store.ConfigFromEnv(vars.Get)
	if cfg.DatabaseURL == "" && cfg.SecretID == "" {
		return cfg, errors.New("set DATABASE_SECRET_ID (or DATABASE_URL)")
	}
	// Two connections: one invocation at a time per execution environment, and one spare for
	// a connection being replaced.
	cfg.MaxConns = 2
	// Nothing on the read path can write: every transaction of every connection is read-only.
	cfg.ReadOnly = true
	return cfg, nil
}

func run(ctx context.Context, logger *slog.Logger, dbCfg store.Config, awsCfg aws.Config) error {
	dbCfg.Secrets = secretsmanager.NewFromConfig(awsCfg)
	st, err := store.Open(ctx, dbCfg)
	if err != nil {
		return err
	}
	reader := query.NewReader(st)
	logger.Info("query function ready", "lambda", true)
	handler := func(ctx context.Context, payload json.RawMessage) (*query.Response, error) {
		started := time.Now()
		resp, err := reader.Handle(ctx, payload)
		if err != nil {
			logger.Error("query failed", "error", err.Error(), "durationMs", time.Since(started).Milliseconds())
			return nil, fmt.Errorf("query failed: %w", err)
		}
		if resp.Error != nil {
			// The refusal names the field, never the values asked about.
			logger.Warn("query refused", "code", resp.Error.Code)
		} else {
			logger.Debug("query answered", "durationMs", time.Since(started).Milliseconds())
		}
		return resp, nil
	}
	// WithEnableSIGTERM makes Lambda send SIGTERM before it shuts the environment down; main's
	// signal.NotifyContext turns it into ctx being done, and the pool is closed on the way out.
	// The runtime loop exits the process itself if it fails.
	go lambda.StartWithOptions(handler, lambda.WithEnableSIGTERM(), lambda.WithContext(ctx))
	<-ctx.Done()
	st.Close()
	return nil
}
