package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

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
			batch[i].Source = r.EventSourceARN
			batch[i].Attributes = stringAttributes(r.MessageAttributes, func(a events.SQSMessageAttribute) *string { return a.StringValue })
			inBatch[r.MessageId] = true
		}
		resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
		for _, id := range h(ctx, batch) {
			if !inBatch[id] {
				slog.ErrorContext(ctx, "batch handler reported a failed message that is not in the batch", "messageId", id)
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

// Tick is periodic work done beside the queue (sweeps). In local mode it runs
// every Every; in Lambda it runs whenever the function is invoked by a
// schedule (an EventBridge scheduled event, or the payload
// {"stackseam":"tick"}) instead of by SQS.
type Tick struct {
	Every time.Duration
	Run   func(ctx context.Context) error
	// Broadcast, when set, handles an invocation with the payload {"stackseam":"broadcast", …}
	// (message.Broadcast, sent by a schedule's rule) in Lambda.
	Broadcast func(ctx context.Context, payload []byte) error
}

// ServeWithTick is Serve plus tick: local mode runs tick.Run on a ticker next
// to the poller; in Lambda a non-SQS invocation runs it.
func ServeWithTick(ctx context.Context, h BatchHandler, p *Poller, tick Tick) error {
	if !InLambda() {
		if p == nil {
			return errors.New("queue: not in Lambda and no poller given")
		}
		go runTicks(ctx, tick)
		return p.Run(ctx, h)
	}
	sqsHandler := LambdaHandler(h)
	handler := func(ctx context.Context, raw json.RawMessage) (any, error) {
		var peek struct {
			Records   json.RawMessage `json:"Records"`
			Source    string          `json:"source"`
			Stackseam string          `json:"stackseam"`
		}
		if err := json.Unmarshal(raw, &peek); err != nil {
			return nil, fmt.Errorf("invocation payload is not a JSON object: %w", err)
		}
		switch {
		case peek.Records != nil:
			var ev events.SQSEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, fmt.Errorf("invocation payload is not an SQS event: %w", err)
			}
			return sqsHandler(ctx, ev)
		case peek.Stackseam == "broadcast" && tick.Broadcast != nil:
			if err := tick.Broadcast(ctx, raw); err != nil {
				return nil, err
			}
			return map[string]bool{"ok": true}, nil
		case peek.Source == "aws.events" || peek.Stackseam == "tick":
			if err := tick.Run(ctx); err != nil {
				return nil, err
			}
			return map[string]bool{"ok": true}, nil
		default:
			return nil, errors.New("invocation is neither an SQS batch nor a scheduled tick")
		}
	}
	go lambda.StartWithOptions(handler, lambda.WithEnableSIGTERM(), lambda.WithContext(ctx))
	<-ctx.Done()
	return nil
}

func runTicks(ctx context.Context, tick Tick) {
	if tick.Every <= 0 || tick.Run == nil {
		return
	}
	t := time.NewTicker(tick.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := tick.Run(ctx); err != nil && ctx.Err() == nil {
				slog.WarnContext(ctx, "periodic work failed; will run again", "error", err.Error())
			}
		}
	}
}
