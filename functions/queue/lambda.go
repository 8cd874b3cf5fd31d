package queue

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// LambdaHandler adapts a BatchHandler to aws-lambda-go's SQS signature with partial batch
// responses (events.SQSEventResponse.BatchItemFailures). It never returns an error for message
// failures.
//
// Failed IDs that are not in the event are dropped (and logged): Lambda would otherwise count the
// whole batch as failed and deliver the messages that succeeded again.
func LambdaHandler(h BatchHandler) func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		batch := make([]Message, len(ev.Records))
		inBatch := make(map[string]bool, len(ev.Records))
		for i, r := range ev.Records {
			batch[i] = messageFromAttributes(r.MessageId, r.Body, r.Attributes)
			inBatch[r.MessageId] = true
		}
		resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
		for _, id := range h(ctx, batch) {
			if !inBatch[id] {
				slog.ErrorContext(ctx, "batch handler reported a failed message that is not in the batch", "message_id", id)
				continue
			}
			delete(inBatch, id) // report each ID once
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: id})
		}
		return resp, nil
	}
}

// InLambda reports whether the process runs inside AWS Lambda (AWS_LAMBDA_RUNTIME_API is set).
func InLambda() bool {
	return os.Getenv("AWS_LAMBDA_RUNTIME_API") != ""
}

// Serve runs h until ctx is done: inside Lambda it serves invocations through the Lambda runtime,
// elsewhere it runs p (local mode; p may be nil in Lambda). Pass a ctx that SIGTERM cancels
// (signal.NotifyContext): Serve then returns nil so that main's deferred cleanups (closing pools)
// run, in Lambda too, where the runtime itself never returns.
func Serve(ctx context.Context, h BatchHandler, p *Poller) error {
	if !InLambda() {
		if p == nil {
			return errors.New("queue: not in Lambda and no poller given")
		}
		return p.Run(ctx, h)
	}
	// WithEnableSIGTERM makes Lambda send SIGTERM before shutting the sandbox down; the caller's
	// signal.NotifyContext turns it into ctx being done. The runtime loop exits the process itself
	// if it fails, so there is nothing to wait for but ctx.
	go lambda.StartWithOptions(LambdaHandler(h), lambda.WithEnableSIGTERM(), lambda.WithContext(ctx))
	<-ctx.Done()
	return nil
}
