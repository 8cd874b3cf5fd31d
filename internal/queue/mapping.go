package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// EventSourceMapping pauses and resumes the Lambda event-source mapping that feeds a function
// from a queue: a Pauser for Gate in Lambda. The mapping is found by function and queue ARN at
// each call, because the function cannot be told its mapping's UUID (the mapping is created after
// the function, so naming it in the function's environment would be a dependency cycle).
//
// The state manager owns its mapping's Enabled flag: a mapping disabled by hand is enabled again by
// the next scheduled check that finds the database available (docs/design.md §"Guarantees").
type EventSourceMapping struct {
	Client       *lambda.Client
	FunctionName string // AWS_LAMBDA_FUNCTION_NAME
	QueueARN     string // the event source
}

// Pause disables the mapping, so Lambda stops receiving from the queue.
func (e *EventSourceMapping) Pause(ctx context.Context) error { return e.setEnabled(ctx, false) }

// Resume enables the mapping if it is disabled.
func (e *EventSourceMapping) Resume(ctx context.Context) error { return e.setEnabled(ctx, true) }

func (e *EventSourceMapping) setEnabled(ctx context.Context, enabled bool) error {
	if e.Client == nil || e.FunctionName == "" || e.QueueARN == "" {
		return errors.New("event source mapping: a Lambda client, the function name and the queue ARN are required")
	}
	out, err := e.Client.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{
		FunctionName: aws.String(e.FunctionName), EventSourceArn: aws.String(e.QueueARN),
	})
	if err != nil {
		return fmt.Errorf("error listing the event source mappings of %s: %w", e.FunctionName, err)
	}
	if len(out.EventSourceMappings) == 0 {
		return fmt.Errorf("function %s has no event source mapping for %s", e.FunctionName, e.QueueARN)
	}
	for _, m := range out.EventSourceMappings {
		state := aws.ToString(m.State)
		already := map[bool][]string{true: {"Enabled", "Enabling"}, false: {"Disabled", "Disabling"}}[enabled]
		if state == already[0] || state == already[1] {
			continue
		}
		if _, err := e.Client.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{
			UUID: m.UUID, Enabled: aws.Bool(enabled),
		}); err != nil {
			return fmt.Errorf("error setting event source mapping %s enabled=%t (state %s): %w", aws.ToString(m.UUID), enabled, state, err)
		}
	}
	return nil
}
