// Package metrics writes CloudWatch metrics in the embedded metric format
// (EMF): one JSON line per record on stdout, which CloudWatch Logs turns into
// metrics. It costs no API calls and no extra permissions.
package metrics

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every stackseam metric.
const Namespace = "stackseam"

// The Function dimension's values: which function wrote a record.
const (
	StateManager = "statemanager"
	Satisfier    = "satisfier"
)

// Dimension names. Every record has Function; the others break a metric down.
const (
	DimFunction    = "Function"
	DimOutcome     = "Outcome"     // Events: an engine outcome (applied, rejected, ignored) or duplicate
	DimEvent       = "Event"       // Events: the event name
	DimExecutor    = "Executor"    // TaskResults, TaskRuns
	DimResult      = "Result"      // TaskResults, TaskRuns: ResultCompleted or ResultFailed
	DimDestination = "Destination" // OutboxLag, OutboxSent
)

// The Result dimension's values.
const (
	ResultCompleted = "completed"
	ResultFailed    = "failed"
)

// The metrics both functions write, and the construct's dashboard and alarms query: the one place
// their names are spelt.
const (
	Events          = "Events"      // state manager: events handled, by Outcome and Event
	Transitions     = "Transitions" // state manager
	Expired         = "Expired"     // state manager: time-to-live events sent
	TaskResults     = "TaskResults" // state manager: results applied, by Executor and Result
	TaskDuration    = "TaskDuration"
	TaskRuns        = "TaskRuns" // satisfier: runs, by Executor and Result
	TaskRunDuration = "TaskRunDuration"
	OutboxLag       = "OutboxLag" // state manager: by Destination
	OutboxSent      = "OutboxSent"
)

// DatabaseUnavailable counts the state manager's failed database probes: one or more per minute
// while the database cannot be reached and event consumption is paused. An alarm watches it.
const DatabaseUnavailable = "DatabaseUnavailable"

// OutboxParked counts messages the state manager parked because they can never be sent (too
// large, or refused by SQS as they are). An alarm watches it.
const OutboxParked = "OutboxParked"

// MachineInvalid counts events whose stack's machine file is broken or deleted (the stack ran on
// the last valid version it ran on, or, with none stored, the event was rejected), and sweeps that
// found such a machine with stacks (so the alarm holds while nothing happens). The file needs
// fixing.
const MachineInvalid = "MachineInvalid"

// TasksOverdue counts task runs the state manager settled as failed because their deadline passed
// without a result (the satisfier crashed or hung). An alarm watches it.
const TasksOverdue = "TasksOverdue"

// TasksDeadLettered counts task runs the state manager settled as failed because their message
// reached the task dead-letter queue.
const TasksDeadLettered = "TasksDeadLettered"

// Units used by stackseam's metrics.
const (
	Count        = "Count"
	Milliseconds = "Milliseconds"
)

// Dim is one dimension value.
type Dim struct{ Name, Value string }

// Value is one metric value.
type Value struct {
	Name  string
	Unit  string
	Value float64
}

// Recorder writes EMF records for one function. A nil *Recorder records
// nothing, so callers need no checks. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	w        io.Writer
	function string
	now      func() time.Time
}

// New returns a recorder writing to w, with the Function dimension set to
// function on every record.
func New(w io.Writer, function string) *Recorder {
	return &Recorder{w: w, function: function, now: time.Now}
}

// Record writes one record. Every record is aggregated by Function alone and
// by Function plus all of dims, so totals and breakdowns both exist.
func (r *Recorder) Record(dims []Dim, values ...Value) {
	if r == nil || len(values) == 0 {
		return
	}
	rec := map[string]any{DimFunction: r.function}
	all := []string{DimFunction}
	for _, d := range dims {
		rec[d.Name] = d.Value
		all = append(all, d.Name)
	}
	sets := [][]string{{DimFunction}}
	if len(all) > 1 {
		sets = append(sets, all)
	}
	defs := make([]map[string]string, len(values))
	for i, v := range values {
		rec[v.Name] = v.Value
		defs[i] = map[string]string{"Name": v.Name, "Unit": v.Unit}
	}
	rec["_aws"] = map[string]any{
		"Timestamp": r.now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": Namespace, "Dimensions": sets, "Metrics": defs,
		}},
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return // only plain strings and numbers go in; cannot happen
	}
	line = append(line, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(line) // one Write per line keeps lines whole among log output
}
