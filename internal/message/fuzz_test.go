package message

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// fuzzLimit bounds one parse in the fuzz targets; longer is a hang (the
// fuzzer itself has no per-input time limit).
const fuzzLimit = 5 * time.Second

// within runs fn and fails the input if it does not return in time.
func within[T any](t *testing.T, fn func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(fuzzLimit):
		t.Fatalf("no answer within %s", fuzzLimit)
		var zero T
		return zero, nil
	}
}

// eventSeeds are events of every kind the queues carry: publishers'
// (CloudSeam's legacy `action` too), results, system events, and the SQS
// fixture's bodies.
func eventSeeds(f *testing.F) []string {
	seeds := []string{
		`{"stackId":"feature-123","machine":"qa-env","action":"LAUNCH","metadata":{"apiImage":"latest","replicas":3,"public":true}}`,
		`{"stackId":"feature-123","event":"DESTROY","eventId":"d-1"}`,
		`{"stackId":"s1","event":"ACCESS","metadata":{"user":"u"},"ifVersion":4}`,
		`{"stackId":"s1","event":"RETRY_FAILED_TASKS"}`,
		`{"stackId":"s1","event":"ACCESS","metadata":{"gone":null,"kept":"v"}}`,
		`{"stackId":"s1","event":"TASK_COMPLETED","taskRunId":"r1","task":{"name":"infra","executor":"terraform","config":{}},"outputs":{"url":"x","n":1.5}}`,
		`{"stackId":"s1","event":"TASK_ERROR","taskRunId":"r1","task":{"name":"dns","executor":"lambda","config":{"name":"f"}},"description":"boom","log":"s3://b/logs/x.log"}`,
		`{"stackId":"s1","event":"NEXT"}`,
		`{"stackId":"-x y","event":"LAUNCH"}`,
		`{"stackId":"a","event":"X","metadata":{"nested":{"a":1}}}`,
		`{"stackId":`,
		`[1,2]`,
	}
	var fixture struct {
		Records []struct {
			Body string `json:"body"`
		}
	}
	data, err := os.ReadFile("../queue/testdata/sqs_fifo_event.json")
	if err != nil {
		f.Fatal(err)
	}
	if err := json.Unmarshal(data, &fixture); err != nil {
		f.Fatal(err)
	}
	for _, r := range fixture.Records {
		seeds = append(seeds, r.Body)
	}
	return seeds
}

// FuzzParseEvent: whatever the body, ParseEvent neither panics nor hangs; a
// refusal wraps ErrInvalid and says why; an accepted event satisfies the
// rules the state manager relies on and survives a round trip through JSON.
func FuzzParseEvent(f *testing.F) {
	for _, s := range eventSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := within(t, func() (Event, error) { return ParseEvent(body) })
		if err != nil {
			requireReason(t, err, ErrInvalid.Error()+": ")
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal does not wrap ErrInvalid: %v", err)
			}
			return
		}
		checkEvent(t, ev)
		again, err := ParseEvent(mustJSON(t, ev))
		if err != nil {
			t.Fatalf("an accepted event does not parse again once encoded: %v", err)
		}
		if again.StackID != ev.StackID || again.Event != ev.Event || again.Machine != ev.Machine ||
			again.EventID != ev.EventID || again.TaskRunID != ev.TaskRunID || len(again.Metadata) != len(ev.Metadata) ||
			len(again.Outputs) != len(ev.Outputs) {
			t.Fatalf("round trip changed the event: %+v became %+v", ev, again)
		}
	})
}

func checkEvent(t *testing.T, ev Event) {
	t.Helper()
	if !stackIDPattern.MatchString(ev.StackID) || !eventNamePattern.MatchString(ev.Event) {
		t.Fatalf("accepted an event with stackId %q and event %q", ev.StackID, ev.Event)
	}
	if ev.Machine != "" && !MachineNamePattern.MatchString(ev.Machine) {
		t.Fatalf("accepted machine name %q", ev.Machine)
	}
	if err := ev.Metadata.ValidateChanges("metadata"); err != nil {
		t.Fatalf("accepted metadata that is not flat: %v", err)
	}
	if ev.IsResult() {
		if ev.TaskRunID == "" {
			t.Fatal("accepted a result without taskRunId")
		}
		if err := ev.Outputs.Validate("outputs"); err != nil {
			t.Fatalf("accepted outputs that are not flat: %v", err)
		}
	} else if ev.TaskRunID != "" || len(ev.Outputs) > 0 {
		t.Fatal("accepted taskRunId or outputs on an event that is not a result")
	}
	if len(ev.Description) > maxDescriptionLen+len("…(truncated)") {
		t.Fatalf("description of %d bytes was not truncated", len(ev.Description))
	}
}

// FuzzParseTask: whatever the body, ParseTask neither panics nor hangs; a
// refusal says what is wrong; an accepted task message has everything the
// satisfier needs to run it and report back.
func FuzzParseTask(f *testing.F) {
	for _, s := range []string{
		`{"task":{"name":"infra","executor":"terraform","config":{"source":{"type":"s3","bucket":"b","key":"k/"},"action":"apply","variables":{"a":"b"}}},"stack":{"id":"feature-1","machine":"pair","state":"PROVISION","previousState":"INIT","metadata":{"branch":"feature/1","n":3},"tasks":[{"name":"infra","status":"pending","runId":"r1","attempt":1,"dispatchedAt":"2026-01-02T03:04:05Z"}]},"taskRunId":"r1"}`,
		`{"task":{"name":"notify","executor":"lambda","config":{"name":"notify-fn","args":{"channel":"#deploys"}},"timeoutSeconds":30},"stack":{"id":"s","machine":"m","state":"S","metadata":{},"tasks":[]},"taskRunId":"r2"}`,
		`{"task":{"name":"x"},"stack":{"id":"s"}}`,
		`{"taskRunId":"r"}`,
		`null`,
		`{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		task, err := within(t, func() (Task, error) { return ParseTask(body) })
		if err != nil {
			requireReason(t, err, "malformed task message: ")
			return
		}
		if task.TaskRunID == "" || task.Task.Name == "" || task.Task.Executor == "" || task.Stack.ID == "" || task.Stack.Machine == "" {
			t.Fatalf("accepted a task message without a required field: %+v", task)
		}
		again, err := ParseTask(mustJSON(t, task))
		if err != nil || again.TaskRunID != task.TaskRunID || again.Task.Name != task.Task.Name || again.Stack.ID != task.Stack.ID {
			t.Fatalf("round trip changed the task message: %+v became %+v (%v)", task, again, err)
		}
	})
}

// FuzzParseResult builds the result the satisfier publishes from fuzzed
// fields, and checks how the state manager reads it: either as that very
// result, or refused with a reason — never a panic, never a result that
// settles something other than the run it names.
func FuzzParseResult(f *testing.F) {
	f.Add("TASK_COMPLETED", "feature-1", "r1", "infra", "terraform", "", []byte(`{"url":"https://x","n":3,"ok":true}`), "s3://b/logs/r1.log")
	f.Add("TASK_ERROR", "feature-1", "r2", "notify", "lambda", "lambda function notify-fn failed: Boom: no", []byte(`{}`), "")
	f.Add("TASK_COMPLETED", "s", "", "infra", "terraform", "", []byte(`null`), "")
	f.Add("TASK_COMPLETED", "s", "r", "infra", "terraform", "", []byte(`{"nested":{"a":1}}`), "")
	f.Add("TASK_ERROR", "bad id", "r", "t", "lambda", strings.Repeat("x", maxDescriptionLen+1), []byte(`{"a":[1]}`), "")
	f.Fuzz(func(t *testing.T, event, stackID, runID, name, executor, description string, outputs []byte, log string) {
		var out Metadata
		if json.Unmarshal(outputs, &out) != nil {
			out = nil
		}
		r := Result{Event: event, StackID: stackID, TaskRunID: runID, Description: description, Outputs: out, Log: log,
			Task: TaskSpec{Name: name, Executor: executor, Config: map[string]any{}}}
		body := mustJSON(t, r)
		// What is on the wire: encoding/json replaces invalid UTF-8.
		var wire Result
		if err := json.Unmarshal(body, &wire); err != nil {
			t.Fatalf("a Result does not decode: %v", err)
		}
		ev, err := within(t, func() (Event, error) { return ParseEvent(body) })
		if err != nil {
			requireReason(t, err, ErrInvalid.Error()+": ")
			return
		}
		checkEvent(t, ev)
		if ev.Event != wire.Event || ev.StackID != wire.StackID || ev.Log != wire.Log {
			t.Fatalf("result %s for %s parsed as %s for %s", wire.Event, wire.StackID, ev.Event, ev.StackID)
		}
		if ev.IsResult() && (ev.TaskRunID != wire.TaskRunID || ev.Task == nil || ev.Task.Name != wire.Task.Name) {
			t.Fatalf("result for run %q of %q parsed as run %q", wire.TaskRunID, wire.Task.Name, ev.TaskRunID)
		}
		if ev.IsResult() && len(ev.Outputs) != len(wire.Outputs) {
			t.Fatalf("result outputs %v parsed as %v", wire.Outputs, ev.Outputs)
		}
	})
}

// requireReason checks that a refusal says something after its prefix.
func requireReason(t *testing.T, err error, prefix string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) || strings.TrimSpace(strings.TrimPrefix(msg, prefix)) == "" {
		t.Fatalf("refusal without a reason: %q", msg)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	return data
}
