package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
)

var historyCommand = &command{
	name:    "history",
	args:    "STACK",
	summary: "print a stack's timeline, with the time spent in each state and by each task",
	help: `
Reads the state manager's database (or, with --stack-name, asks the deployed
query function), where history outlives the stack. Each
line is one thing that happened: events applied, rejected or ignored, state
changes (with the time spent in the state left), tasks dispatched and their
results (with the run's duration), the stack's removal. The time column is
UTC; +T is the time since the stack was created. After the timeline come the
time spent in each state visit and every task run of the stack's latest life.

With --follow it prints new lines as they happen and stops when the stack is
removed (or on Ctrl-C); it waits for a stack that does not exist yet.
With --output json it prints {stackId, exists, entries, states, taskRuns};
with both, one JSON entry per line.

examples:
  stackseam history feature-123
  stackseam history --follow feature-123`,
	run: runHistory,
}

func runHistory(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	follow := fs.Bool("follow", false, "keep printing new entries until the stack is removed")
	r, code := openReading(ctx, c, cmd, fs, args, true)
	if r == nil {
		return code
	}
	defer r.done()
	api, id, out := r.api, r.id, r.out
	if *follow {
		if err := followHistory(ctx, c, api, id, out.json()); err != nil && !errors.Is(err, context.Canceled) {
			return fail(c, cmd, err)
		}
		return exitOK
	}
	entries, err := (&historyReader{api: api, id: id}).all(ctx)
	if err != nil {
		return fail(c, cmd, err)
	}
	if len(entries) == 0 {
		return fail(c, cmd, fmt.Errorf("stack %s has no history: no event ever named it", id))
	}
	res, err := api.Stack(ctx, query.StackRequest{ID: id})
	if err != nil {
		return fail(c, cmd, err)
	}
	stack := toEngineStack(res.Stack)
	now := c.now()
	sum := summarize(entries, stack, now)
	if out.json() {
		return printJSON(c, cmd, historyJSON{StackID: id, Exists: stack != nil, Entries: entriesJSON(entries),
			States: sum.states, TaskRuns: sum.runs})
	}
	w := c.stdout
	fmt.Fprintln(w, historyHeader(id, entries, stack, now))
	fmt.Fprintln(w)
	tl := &timeline{w: w}
	tl.print(entries)
	printSummary(w, sum)
	return exitOK
}

// remotePollInterval is the shortest interval between polls of a deployed query function.
const remotePollInterval = 2 * time.Second

// followHistory prints the timeline as it grows, until the stack is removed
// or ctx ends.
func followHistory(ctx context.Context, c *cli, api query.API, id string, asJSON bool) error {
	r := &historyReader{api: api, id: id}
	tl := &timeline{w: c.stdout}
	enc := json.NewEncoder(c.stdout)
	every := c.pollInterval
	if _, remote := api.(*query.Client); remote {
		// Each poll is a Lambda invocation billed to the deployment and a query on its database.
		every = max(every, remotePollInterval)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		entries, err := r.next(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			for _, e := range entriesJSON(entries) {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
		} else {
			tl.print(entries)
		}
		if r.removed {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// entry is one line of a timeline: a history row, or a rejection that never reached the
// history because the stack did not exist at the time (StackAbsent), as the read API answers it.
type entry = query.Entry

// entryDuration is the entry's duration (the time spent in the state left, or the run's time),
// or nil when the row has none.
func entryDuration(e entry) *time.Duration {
	if e.DurationMS == nil {
		return nil
	}
	d := time.Duration(*e.DurationMS) * time.Millisecond
	return &d
}

// historyReader reads a stack's timeline page by page through the read API, and on from where
// it stopped: following is calling next again.
type historyReader struct {
	api    query.API
	id     string
	cursor string
	// removed is set when the latest entry removed the stack.
	removed bool
}

// next returns the entries recorded since the last call, oldest first: every page there is now.
func (r *historyReader) next(ctx context.Context) ([]entry, error) {
	var out []entry
	for {
		page, err := r.api.History(ctx, query.HistoryRequest{StackID: r.id, Paging: query.Paging{Cursor: r.cursor}})
		if err != nil {
			return nil, err
		}
		r.cursor = page.Cursor
		for _, e := range page.Entries {
			out = append(out, e)
			switch e.Kind {
			case engine.KindRemoved:
				r.removed = true
			case engine.KindCreated:
				r.removed = false
			}
		}
		if !page.More {
			return out, nil
		}
	}
}

// all returns the whole timeline.
func (r *historyReader) all(ctx context.Context) ([]entry, error) { return r.next(ctx) }

// detailNumber reads a number of a history entry's detail: a float64 as encoding/json decodes
// it, or a json.Number from a reader that keeps numbers exact.
func detailNumber(detail map[string]any, key string) (float64, bool) {
	switch v := detail[key].(type) {
	case float64:
		return v, true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

// timeline prints entries as lines: "TIME  +T  WHAT". A line with the date
// starts each new day; +T counts from the latest creation of the stack.
type timeline struct {
	w        io.Writer
	start    time.Time
	lastDate string
}

func (tl *timeline) print(entries []entry) {
	for i := 0; i < len(entries); {
		e := entries[i]
		if tl.start.IsZero() || e.Kind == engine.KindCreated {
			tl.start = e.At
		}
		text, _, n := timelineLine(entries, i)
		i += n
		if d := e.At.Format("2006-01-02"); d != tl.lastDate {
			tl.lastDate = d
			fmt.Fprintf(tl.w, "%s (UTC)\n", d)
		}
		fmt.Fprintf(tl.w, "  %s  %8s  %s\n", e.At.Format("15:04:05.000"), "+"+formatDuration(e.At.Sub(tl.start)), printable(text))
	}
}

// timelineLine is what a timeline says of entries[i] on one line, and how many entries the line
// takes: an event and the state change it caused are one line, the change's with the event's
// extras, and shown is then the change.
func timelineLine(entries []entry, i int) (text string, shown entry, n int) {
	e := entries[i]
	if e.Kind == engine.KindEvent && i+1 < len(entries) {
		if t := entries[i+1]; t.Kind == engine.KindTransition && t.Event == e.Event && t.FromState == e.FromState {
			return describe(t) + eventExtras(e), t, 2
		}
	}
	return describe(e), e, 1
}

// describe says in words what one entry records.
func describe(e entry) string {
	dur := func() string {
		if d := entryDuration(e); d != nil {
			return formatDuration(*d)
		}
		return "?"
	}
	switch e.Kind {
	case engine.KindCreated:
		s := "created by " + e.Event
		if from, _ := e.Detail["importedFrom"].(string); from != "" {
			s = "imported from " + printable(from) + " in " + e.ToState
		}
		if m, _ := e.Detail["machine"].(string); m != "" {
			s += " (machine " + m + ")"
		} else if e.Machine != "" {
			s += " (machine " + e.Machine + ")"
		}
		return s
	case engine.KindEvent:
		s := e.Event
		switch {
		case e.Detail["action"] == "no-op":
			s += ": no-op in " + e.FromState
		case e.Event == message.EventNext:
			s += ": all tasks of " + e.FromState + " done"
		default:
			s += " in " + e.FromState
		}
		return s + eventExtras(e)
	case engine.KindTransition:
		return fmt.Sprintf("%s: %s → %s after %s in %s", e.Event, e.FromState, e.ToState, dur(), e.FromState)
	case engine.KindDispatched:
		s := "  task " + e.Task + " dispatched"
		var why []string
		if n, ok := detailNumber(e.Detail, "attempt"); ok && n > 1 {
			why = append(why, fmt.Sprintf("attempt %d", int(n)))
		}
		if e.Reason != "" {
			why = append(why, e.Reason)
		}
		if n, ok := detailNumber(e.Detail, "delaySeconds"); ok && n > 0 {
			why = append(why, fmt.Sprintf("runs in %s", formatDuration(time.Duration(n)*time.Second)))
		}
		if len(why) > 0 {
			s += " (" + strings.Join(why, ", ") + ")"
		}
		return s
	case engine.KindTaskDone:
		s := "  task " + e.Task + " completed in " + dur()
		if outs, ok := e.Detail["outputs"].([]any); ok && len(outs) > 0 {
			names := make([]string, len(outs))
			for i, o := range outs {
				names[i] = fmt.Sprint(o)
			}
			s += " · outputs " + strings.Join(names, ", ")
		}
		return s + byTaskName(e)
	case engine.KindTaskFailed:
		return "  task " + e.Task + " FAILED after " + dur() + byTaskName(e) + ": " + oneLine(e.Reason, 160)
	case engine.KindRejected:
		s := e.Event + " rejected: " + oneLine(e.Reason, 200)
		if e.StackAbsent {
			s += " (the stack did not exist)"
		}
		return s
	case engine.KindIgnored:
		return e.Event + " ignored: " + oneLine(e.Reason, 200)
	case engine.KindRemoved:
		return fmt.Sprintf("removed in %s after %s", e.FromState, dur())
	default:
		// A kind this CLI does not know yet: show what the row holds.
		parts := []string{e.Kind}
		for _, p := range []string{e.Event, e.FromState, e.ToState, e.Task, e.Reason} {
			if p != "" {
				parts = append(parts, p)
			}
		}
		return strings.Join(parts, " ")
	}
}

// eventExtras adds the metadata an event carried, who approved it and why, or the task that
// raised it.
func eventExtras(e entry) string {
	var s string
	if md, ok := e.Detail["metadata"].(map[string]any); ok && len(md) > 0 {
		s += " · " + formatMetadata(md)
	}
	if e.Detail["approval"] == true {
		by, _ := e.Detail["by"].(string)
		s += " · by " + printable(by)
		if sender, _ := e.Detail["senderId"].(string); sender != "" {
			s += " (SQS sender " + printable(sender) + ")"
		}
		if comment, _ := e.Detail["comment"].(string); comment != "" {
			s += ": " + strconv.Quote(comment)
		}
	}
	if task, _ := e.Detail["raisedBy"].(string); task != "" {
		outcome, _ := e.Detail["outcome"].(string)
		s += " · raised by task " + printable(task) + " (" + printable(outcome) + ")"
	}
	if e.Kind == engine.KindEvent && e.Reason != "" {
		s += " · " + oneLine(e.Reason, 200)
	}
	return s
}

// historyHeader is the first line: the stack, its machine, and where it is
// now.
func historyHeader(id string, entries []entry, stack *engine.Stack, now time.Time) string {
	machineName := ""
	for _, e := range entries {
		if e.Machine != "" {
			machineName = e.Machine
		}
	}
	s := "stack " + id
	if machineName != "" {
		s += " · machine " + machineName
	}
	// The latest creation or removal says whether the stack is gone.
	var lastLife *entry
	for i := range entries {
		if k := entries[i].Kind; k == engine.KindCreated || k == engine.KindRemoved {
			lastLife = &entries[i]
		}
	}
	switch {
	case stack != nil:
		s += fmt.Sprintf(" · %s for %s", stack.State, formatDuration(now.Sub(stack.StateEnteredAt)))
	case lastLife != nil && lastLife.Kind == engine.KindRemoved:
		s += " · removed " + formatTime(lastLife.At)
	default:
		s += " · does not exist"
	}
	return s
}

// stateVisitJSON is one stay of the stack in a state.
type stateVisitJSON struct {
	State     string     `json:"state"`
	EnteredAt time.Time  `json:"enteredAt"`
	LeftAt    *time.Time `json:"leftAt,omitempty"`
	// DurationMS is the stay's length, or its length so far when Current.
	DurationMS int64 `json:"durationMs"`
	Current    bool  `json:"current,omitempty"`
}

// taskRunJSON is one dispatch of a task and what became of it.
type taskRunJSON struct {
	Task         string     `json:"task"`
	State        string     `json:"state"`
	RunID        string     `json:"runId"`
	Attempt      int        `json:"attempt"`
	DispatchedAt time.Time  `json:"dispatchedAt"`
	FinishedAt   *time.Time `json:"finishedAt,omitempty"`
	// Status is completed, failed, pending (the stack still waits for it)
	// or abandoned (the stack left the state, or was removed, first).
	Status string `json:"status"`
	// DurationMS is the run's time, or the time it has been pending.
	DurationMS int64  `json:"durationMs"`
	Error      string `json:"error,omitempty"`
}

type summary struct {
	states []stateVisitJSON
	runs   []taskRunJSON
}

// summarize computes the state visits and task runs of the stack's latest
// life (since its latest creation) from its entries.
func summarize(entries []entry, stack *engine.Stack, now time.Time) summary {
	start := 0
	for i, e := range entries {
		if e.Kind == engine.KindCreated {
			start = i
		}
	}
	var sum summary
	runs := map[string]int{} // run id → index in sum.runs
	closeVisit := func(at time.Time) {
		if n := len(sum.states); n > 0 && sum.states[n-1].LeftAt == nil {
			v := &sum.states[n-1]
			left := at
			v.LeftAt = &left
			v.DurationMS = at.Sub(v.EnteredAt).Milliseconds()
		}
	}
	for _, e := range entries[start:] {
		switch e.Kind {
		case engine.KindCreated:
			sum.states = append(sum.states, stateVisitJSON{State: e.ToState, EnteredAt: e.At})
		case engine.KindTransition:
			closeVisit(e.At)
			sum.states = append(sum.states, stateVisitJSON{State: e.ToState, EnteredAt: e.At})
		case engine.KindRemoved:
			closeVisit(e.At)
		case engine.KindDispatched:
			attempt := 1
			if n, ok := detailNumber(e.Detail, "attempt"); ok {
				attempt = int(n)
			}
			at := e.At
			if n, ok := detailNumber(e.Detail, "delaySeconds"); ok {
				at = at.Add(time.Duration(n) * time.Second)
			}
			runs[e.TaskRunID] = len(sum.runs)
			sum.runs = append(sum.runs, taskRunJSON{Task: e.Task, State: e.FromState, RunID: e.TaskRunID,
				Attempt: attempt, DispatchedAt: at, Status: string(message.TaskPending)})
		case engine.KindTaskDone, engine.KindTaskFailed:
			i, ok := runs[e.TaskRunID]
			if !ok {
				continue
			}
			r := &sum.runs[i]
			finished := e.At
			r.FinishedAt = &finished
			r.Status = string(message.TaskCompleted)
			if e.Kind == engine.KindTaskFailed {
				r.Status = string(message.TaskFailed)
				r.Error = e.Reason
			}
			if e.DurationMS != nil {
				r.DurationMS = *e.DurationMS
			} else {
				r.DurationMS = e.At.Sub(r.DispatchedAt).Milliseconds()
			}
		}
	}
	if n := len(sum.states); n > 0 && sum.states[n-1].LeftAt == nil {
		v := &sum.states[n-1]
		if stack != nil {
			v.Current = true
			v.DurationMS = max(now.Sub(v.EnteredAt), 0).Milliseconds()
		}
	}
	// A pending run is still awaited only if it belongs to the stack's
	// current task list; any other was left behind.
	current := map[string]bool{}
	if stack != nil {
		for _, t := range stack.Tasks {
			current[t.RunID] = true
		}
	}
	for i := range sum.runs {
		r := &sum.runs[i]
		if r.Status != string(message.TaskPending) {
			continue
		}
		if !current[r.RunID] {
			r.Status = "abandoned"
			continue
		}
		r.DurationMS = max(now.Sub(r.DispatchedAt), 0).Milliseconds()
	}
	return sum
}

func printSummary(w io.Writer, sum summary) {
	if len(sum.states) > 0 {
		fmt.Fprintln(w, "\ntime in each state")
		tw := newTable(w)
		for _, v := range sum.states {
			note := ""
			switch {
			case v.Current:
				note = "so far (current)"
			case v.LeftAt == nil:
				note = "(not left)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.State, formatDuration(time.Duration(v.DurationMS)*time.Millisecond), note)
		}
		_ = tw.Flush()
	}
	if len(sum.runs) > 0 {
		fmt.Fprintln(w, "\ntask runs")
		tw := newTable(w)
		for _, r := range sum.runs {
			d := formatDuration(time.Duration(r.DurationMS) * time.Millisecond)
			switch r.Status {
			case "abandoned":
				d = "-"
			case string(message.TaskPending):
				d += " so far"
			}
			errText := ""
			if r.Error != "" {
				errText = oneLine(r.Error, 100)
			}
			fmt.Fprintf(tw, "  %s\t%s\tattempt %d\t%s\t%s\t%s\n", r.Task, r.State, r.Attempt, r.Status, d, errText)
		}
		_ = tw.Flush()
	}
}

// historyJSON is `history --output json`.
type historyJSON struct {
	StackID  string           `json:"stackId"`
	Exists   bool             `json:"exists"`
	Entries  []query.Entry    `json:"entries"`
	States   []stateVisitJSON `json:"states"`
	TaskRuns []taskRunJSON    `json:"taskRuns"`
}

// entriesJSON is the entries as `history --output json` prints them: the read API's entries
// without the machine and the stack-absent mark, which that output has never carried.
func entriesJSON(entries []entry) []query.Entry {
	out := make([]query.Entry, len(entries))
	for i, e := range entries {
		e.Machine, e.StackAbsent = "", false
		out[i] = e
	}
	return out
}

// byTaskName notes a run settled by a result that named only its task (no taskRunId).
func byTaskName(e entry) string {
	if e.Detail["byTaskName"] == true {
		return " (result by task name)"
	}
	return ""
}
