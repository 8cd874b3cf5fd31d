// Package lambdainvoke is the lambda executor: it invokes a task's AWS Lambda function
// synchronously with the stack, and the object the function returns becomes the task's outputs.
package lambdainvoke

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/message"
)

// Invoker runs lambda tasks: `config: {name, args?}`.
type Invoker struct {
	// Client invokes the functions. Required.
	Client *lambda.Client
}

// Config is a lambda task's config.
type Config struct {
	// Name is the function's name, ARN or name:qualifier.
	Name string `json:"name"`
	// Args, a JSON object, is passed on to the function as "args" when set.
	Args json.RawMessage `json:"args,omitempty"`
}

// Payload is what the function receives (CloudSeam's fields, plus args).
type Payload struct {
	StackID  string           `json:"stackId"`
	Metadata message.Metadata `json:"metadata"`
	Args     json.RawMessage  `json:"args,omitempty"`
}

// functionError is the payload Lambda returns with X-Amz-Function-Error.
type functionError struct {
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

// ParseConfig reads a lambda task's config from a task message (see executor.DecodeConfig).
func ParseConfig(raw map[string]any) (Config, error) {
	return executor.DecodeConfig[Config](Kind, raw)
}

// BuildPayload returns the JSON the function is invoked with.
func BuildPayload(task message.Task, c Config) ([]byte, error) {
	p := Payload{StackID: task.Stack.ID, Metadata: task.Stack.Metadata, Args: c.Args}
	if p.Metadata == nil {
		p.Metadata = message.Metadata{} // the function always gets an object
	}
	return json.Marshal(p)
}

// Run invokes the function and waits for its answer. A function error (X-Amz-Function-Error)
// fails the task with the error's type and message; a returned JSON object becomes the outputs
// (see executor.FlatOutputs); anything else returned is accepted and noted, without outputs.
func (iv *Invoker) Run(ctx context.Context, task message.Task) (executor.Outcome, error) {
	c, err := ParseConfig(task.Task.Config)
	if err != nil {
		return executor.Outcome{}, err
	}
	payload, err := BuildPayload(task, c)
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("error encoding the payload for lambda function %s: %w", c.Name, err)
	}
	out, err := iv.Client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(c.Name),
		InvocationType: types.InvocationTypeRequestResponse,
		Payload:        payload,
	})
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("error invoking lambda function %s: %w", c.Name, err)
	}
	if out.FunctionError != nil {
		return executor.Outcome{}, describeFunctionError(c.Name, aws.ToString(out.FunctionError), out.Payload)
	}
	return outcome(c.Name, out.Payload)
}

// describeFunctionError turns a function error into the task's error: "lambda function NAME
// failed: TYPE: MESSAGE".
func describeFunctionError(name, kind string, payload []byte) error {
	var fe functionError
	if err := json.Unmarshal(payload, &fe); err != nil || (fe.ErrorType == "" && fe.ErrorMessage == "") {
		return fmt.Errorf("lambda function %s failed (%s error): %s", name, kind, executor.Shorten(string(payload), 4096))
	}
	if fe.ErrorType == "" {
		fe.ErrorType = kind
	}
	return fmt.Errorf("lambda function %s failed: %s: %s", name, fe.ErrorType, fe.ErrorMessage)
}

// outcome reads the outputs from what the function returned.
func outcome(name string, payload []byte) (executor.Outcome, error) {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return executor.Outcome{}, nil
	}
	var values map[string]json.RawMessage
	if trimmed[0] != '{' || json.Unmarshal(trimmed, &values) != nil {
		return executor.Outcome{Notes: []string{fmt.Sprintf(
			"lambda function %s returned %s, not a JSON object, so the task has no outputs", name, executor.DescribeJSON(trimmed))}}, nil
	}
	outputs, notes, err := executor.FlatOutputs(values)
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("lambda function %s returned outputs that cannot be read: %w", name, err)
	}
	return executor.Outcome{Outputs: outputs, Notes: notes}, nil
}
