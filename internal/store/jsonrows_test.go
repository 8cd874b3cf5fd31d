package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
)

// oddStrings are strings whose JSON needs escapes, or that encoding/json writes differently.
var oddStrings = []string{"", "plain", `quote " and \ backslash`, "line\nfeed\ttab\rcr", "\x00\x01\x1f\x7f",
	"<html> & </html>", "\u2028\u2029", "é✓😀", "bad \xff\xfe utf-8 \xe2\x82", "\uFFFD"}

// TestRowsJSONMatchesEncodingJSON: the rows written by hand hold the same values as encoding/json
// writes for them (what PostgreSQL reads), odd strings, missing durations and details included.
func TestRowsJSONMatchesEncodingJSON(t *testing.T) {
	ms := int64(1500)
	at := time.Date(2026, 12, 1, 18, 0, 0, 123456789, time.UTC)
	var hist []historyRow
	var out []outboxRow
	for i, s := range oddStrings {
		r := historyRow{Ord: i, StackID: "s" + s, Machine: s, At: at.Add(time.Duration(i) * time.Second), Kind: s,
			Event: s, FromState: s, ToState: s, Task: s, TaskRunID: s, Reason: s, MessageID: s}
		if i%2 == 0 {
			r.DurationMS = &ms
			r.Detail = map[string]any{s: s, "n": json.Number("1.5"), "list": []any{s, true, nil}}
		} else {
			// What the engine writes, all of it written by hand.
			r.Detail = map[string]any{"attempt": i, "n64": int64(-i), "ok": true, "none": nil, "outputs": []string{s, "b"},
				"noOutputs": []string(nil), "metadata": map[string]any{s: json.Number("-1.5e3"), "z": json.Number(""), "b": false},
				"md": message.Metadata{"k": s}}
		}
		if i == 3 {
			r.Detail = map[string]any{"float": 1.25, "time": at} // left to encoding/json
		}
		hist = append(hist, r)
		out = append(out, outboxRow{StackID: s, Destination: DestinationTask, Body: s, DelaySeconds: i, CreatedAt: at})
	}
	same := func(name string, got []byte, gotErr error, want any) {
		t.Helper()
		wantJSON, err := json.Marshal(want)
		if err != nil || gotErr != nil {
			t.Fatalf("%s: encoding/json: %v; by hand: %v", name, err, gotErr)
		}
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: by hand is not JSON: %v\n%s", name, err, got)
		}
		if err := json.Unmarshal(wantJSON, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s differs:\nby hand:       %s\nencoding/json: %s", name, got, wantJSON)
		}
	}
	got, err := historyRowsJSON(hist)
	same("history", got, err, hist)
	type row struct {
		StackID      string    `json:"stack_id"`
		Destination  string    `json:"destination"`
		Body         string    `json:"body"`
		DelaySeconds int       `json:"delay_seconds"`
		CreatedAt    time.Time `json:"created_at"`
	}
	var outWant []row
	for _, r := range out {
		outWant = append(outWant, row(r))
	}
	got, err = outboxRowsJSON(out)
	same("outbox", got, err, outWant)
	got, err = historyRowsJSON(nil)
	same("no history", got, err, []historyRow{})

	// A time encoding/json refuses is refused here too.
	if _, err := outboxRowsJSON([]outboxRow{{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}); err == nil {
		t.Fatal("a time in year 10000 was encoded")
	}
	// A detail encoding/json refuses is refused here too.
	if _, err := historyRowsJSON([]historyRow{{Detail: map[string]any{"f": func() {}}}}); err == nil {
		t.Fatal("a detail encoding/json refuses was encoded")
	}

	if _, err := historyRowsJSON([]historyRow{{Detail: map[string]any{"n": json.Number("1x")}}}); err == nil {
		t.Fatal("an invalid json.Number was encoded")
	}

	deadline := at.Add(time.Hour)
	var tasks []message.StackTask
	for i, s := range oddStrings {
		task := message.StackTask{Name: s, Status: message.TaskStatus(s), RunID: s, Attempt: i, DispatchedAt: at, Description: s, Log: s}
		if i%2 == 0 {
			task.Deadline, task.FinishedAt = &deadline, &at
		}
		tasks = append(tasks, task)
	}
	got, err = tasksJSON(tasks)
	same("tasks", got, err, tasks)
	got, err = tasksJSON(nil)
	same("no tasks", got, err, []message.StackTask(nil))
	got, err = tasksJSON([]message.StackTask{})
	same("empty tasks", got, err, []message.StackTask{})
	if _, err := tasksJSON([]message.StackTask{{FinishedAt: &time.Time{}, DispatchedAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}); err == nil {
		t.Fatal("a time in year -1 was encoded")
	}

	runs := []string{"a", "b\"c"}
	body, err := fenceBody(runsDecision(runs))
	same("fence", []byte(body), err, map[string][]string{"runs": runs})
}

// TestSameMetadata: only metadata equal value for value is written back as stored.
func TestSameMetadata(t *testing.T) {
	base := message.Metadata{"s": "x", "n": json.Number("1"), "b": true}
	for _, c := range []struct {
		other message.Metadata
		same  bool
	}{
		{message.Metadata{"s": "x", "n": json.Number("1"), "b": true}, true},
		{message.Metadata{"s": "x", "n": json.Number("1.0"), "b": true}, false},
		{message.Metadata{"s": "x", "n": "1", "b": true}, false},
		{message.Metadata{"s": "x", "n": json.Number("1"), "b": false}, false},
		{message.Metadata{"s": "x", "n": json.Number("1")}, false},
		{message.Metadata{"s": "x", "n": json.Number("1"), "c": true}, false},
	} {
		if got := sameMetadata(base, c.other); got != c.same {
			t.Errorf("sameMetadata(%v, %v) = %v", base, c.other, got)
		}
	}
	// Values a comparison cannot judge (nested, as an imported stack may hold) count as changed.
	nested := message.Metadata{"m": map[string]any{"a": 1}}
	if sameMetadata(nested, nested) {
		t.Error("nested metadata counted as unchanged")
	}
	if sameMetadata(message.Metadata{}, nil) {
		t.Error("empty and nil metadata, stored as {} and null, counted as the same")
	}
}

// runsDecision is an applied decision whose stack has a pending task for each run.
func runsDecision(runs []string) engine.Decision {
	s := &engine.Stack{}
	for _, r := range runs {
		s.Tasks = append(s.Tasks, message.StackTask{Name: r, Status: message.TaskPending, RunID: r})
	}
	return engine.Decision{Outcome: engine.Applied, Stack: s}
}
