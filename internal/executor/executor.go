// Package executor runs task messages: it hands each task to the executor its machine names
// (terraform, lambda) and publishes the one result — TASK_COMPLETED or TASK_ERROR — that the state
// manager waits for. The executors themselves live in the sub-packages.
package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stackseam/stackseam/internal/message"
)

// Executor runs one kind of task. Run returns the outcome of one run; an error means the task
// failed, and its text becomes the TASK_ERROR description, so it must say what a person can act
// on. Run must stop when ctx is done (the dispatcher's timeout) and may return an Outcome with an
// error (a Terraform log is kept for failed runs too).
type Executor interface {
	Run(ctx context.Context, task message.Task) (Outcome, error)
}

// ErrStale is the error of a run that is no longer current for its stack (an advance left its
// state, a retry superseded it, the stack was removed): it was not run. Its TASK_ERROR carries a
// run id the state manager no longer waits for, so the result is ignored as stale.
var ErrStale = errors.New("stale run")

// Stale is the ErrStale error of task's run.
func Stale(task message.Task) error {
	return fmt.Errorf("%w: run %s of task %s is no longer current for stack %s (its fence names other runs); it was not run",
		ErrStale, task.TaskRunID, task.Task.Name, task.Stack.ID)
}

// Outcome is what one run produced.
type Outcome struct {
	// Outputs are merged into the stack's metadata on success.
	Outputs message.Metadata
	// Log is where the run's full log is stored (s3://bucket/key), "" when none was kept.
	Log string
	// Notes tell a person about a successful run what the outputs left out or changed.
	Notes []string
	// Outcome says what a successful run found (message.OutcomeChanges…), "" for nothing to
	// report; the machine may map it to an event.
	Outcome string
}

// FlatOutputs turns the values of a JSON object (Terraform outputs, the object a Lambda returned)
// into flat stack metadata. Strings, numbers and booleans are kept as they are; a list or an
// object becomes its compact JSON text — a string, so nothing is lost and a later Terraform task
// can jsondecode it; null is left out, since metadata cannot hold it. notes says, key by key, what
// was changed or left out.
func FlatOutputs(values map[string]json.RawMessage) (outputs message.Metadata, notes []string, err error) {
	outputs = message.Metadata{}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		raw := bytes.TrimSpace(values[k])
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("output %s is not JSON: %w", k, err)
		}
		switch v.(type) {
		case string, json.Number, bool:
			outputs[k] = v
		case nil:
			notes = append(notes, fmt.Sprintf("output %s is null and was left out", k))
		default:
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				return nil, nil, fmt.Errorf("output %s: %w", k, err)
			}
			outputs[k] = compact.String()
			notes = append(notes, fmt.Sprintf("output %s is %s and was stored as its JSON text", k, jsonKind(v)))
		}
	}
	return outputs, notes, nil
}

// jsonKind names the kind of a decoded JSON value, as a person would.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// DescribeJSON names the kind of a JSON document ("an object", "a list", "a string", "null"…),
// or says it is not JSON; an executor uses it to say what it got instead of an object.
func DescribeJSON(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return "not JSON"
	}
	return jsonKind(v)
}

// Shorten keeps the start and the end of s when it is longer than max bytes — the end of a
// Terraform error is usually the part that says what went wrong — and says how much it left out.
func Shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	head, tail := max/4, max-max/4
	cut := len(s) - head - tail
	out := s[:head] + fmt.Sprintf("\n…(%d bytes left out; the full text is in the log)…\n", cut) + s[len(s)-tail:]
	return strings.ToValidUTF8(out, "")
}
