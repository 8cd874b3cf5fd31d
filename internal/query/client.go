package query

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Invoker is the part of the Lambda client Client uses (*lambda.Client).
type Invoker interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Client asks a deployed query function, through the Lambda Invoke API with the caller's own
// credentials: what it may ask is what IAM lets it invoke (the construct's GrantRead).
type Client struct {
	lambda   Invoker
	function string
}

// NewClient returns a Client invoking function (a name or ARN) through lc.
func NewClient(lc Invoker, function string) *Client { return &Client{lambda: lc, function: function} }

var _ API = (*Client)(nil)

// invoke invokes the function with req and returns its answer, or its *Error.
func (c *Client) invoke(ctx context.Context, req Request) (*Response, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("error encoding the query: %w", err)
	}
	out, err := c.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(c.function), Payload: payload,
		InvocationType: types.InvocationTypeRequestResponse})
	if err != nil {
		return nil, fmt.Errorf("error invoking the query function %s: %w", c.function, err)
	}
	if out.FunctionError != nil || isFunctionError(out.Payload) {
		var fe struct {
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.Unmarshal(out.Payload, &fe)
		return nil, fmt.Errorf("the query function %s failed: %s", c.function, fe.ErrorMessage)
	}
	var resp Response
	dec := json.NewDecoder(bytes.NewReader(out.Payload))
	dec.UseNumber() // metadata values exactly as published
	if err := dec.Decode(&resp); err != nil {
		return nil, fmt.Errorf("error reading the answer of the query function %s: %w", c.function, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return &resp, nil
}

// isFunctionError recognises the runtime's error object ({"errorMessage", "errorType"}), which
// no answer looks like: the Lambda Runtime Interface Emulator sends it without the
// X-Amz-Function-Error header Lambda adds.
func isFunctionError(payload []byte) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil {
		return false
	}
	_, msg := obj["errorMessage"]
	_, typ := obj["errorType"]
	return msg && typ
}

// Stacks implements API.
func (c *Client) Stacks(ctx context.Context, req StacksRequest) (*StacksPage, error) {
	return ask(ctx, c, askStacks, req)
}

// Stuck implements API.
func (c *Client) Stuck(ctx context.Context, req StuckRequest) (*StuckPage, error) {
	return ask(ctx, c, askStuck, req)
}

// Stack implements API.
func (c *Client) Stack(ctx context.Context, req StackRequest) (*StackResult, error) {
	return ask(ctx, c, askStack, req)
}

// History implements API.
func (c *Client) History(ctx context.Context, req HistoryRequest) (*HistoryPage, error) {
	return ask(ctx, c, askHistory, req)
}

// Machines implements API.
func (c *Client) Machines(ctx context.Context, req MachinesRequest) (*MachinesPage, error) {
	return ask(ctx, c, askMachines, req)
}

// Summaries implements API.
func (c *Client) Summaries(ctx context.Context, req SummariesRequest) (*SummariesPage, error) {
	return ask(ctx, c, askSummaries, req)
}

// Troubles implements API.
func (c *Client) Troubles(ctx context.Context, req TroublesRequest) (*TroublesPage, error) {
	return ask(ctx, c, askTroubles, req)
}

// StateCounts implements API.
func (c *Client) StateCounts(ctx context.Context, req StateCountsRequest) (*StateCountsResult, error) {
	return ask(ctx, c, askStateCounts, req)
}

// MachineVersion implements API.
func (c *Client) MachineVersion(ctx context.Context, req MachineVersionRequest) (*MachineVersionResult, error) {
	return ask(ctx, c, askMachineVersion, req)
}

// ChangeMark implements API.
func (c *Client) ChangeMark(ctx context.Context, req ChangeMarkRequest) (*ChangeMarkResult, error) {
	return ask(ctx, c, askChangeMark, req)
}
