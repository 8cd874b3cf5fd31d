package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
)

var stacksCommand = &command{
	name:    "stacks",
	args:    "",
	summary: "list the live stacks with their state, task counts and age",
	help: `
Reads the state manager's database, or with --stack-name asks the deployed
query function. AGE is the time since the stack was
created, IN STATE the time since it entered its current state, IDLE the time
since the last event was applied to it (the time-to-live clock). Removed
stacks are not listed; ` + "`stackseam history ID`" + ` still shows them.

--stuck lists instead the stacks waiting on a task run past its deadline
(the state manager's sweep has not settled it yet: is the sweep running?)
and those with a run the state manager failed itself within --since, because
no result came by its deadline or its message was dead-lettered; one line
per run, with why.

examples:
  stackseam stacks
  stackseam stacks --machine feature-env --state RUN --output json
  stackseam stacks --stuck --since 72h`,
	run: runStacks,
}

var showCommand = &command{
	name:    "show",
	args:    "STACK",
	summary: "show one stack: state, metadata, and its tasks with status and error text",
	help: `
Reads the state manager's database, or with --stack-name asks the deployed
query function. Exits 1 when the stack does not exist
(saying when it was removed, if it was).

examples:
  stackseam show feature-123
  stackseam show feature-123 --output json`,
	run: runShow,
}

func runStacks(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	machineName := fs.String("machine", "", "only stacks of this `MACHINE`")
	state := fs.String("state", "", "only stacks in this `STATE`")
	limit := fs.Int("limit", 0, "list at most `N` stacks (default all)")
	stuck := fs.Bool("stuck", false, "list stacks with overdue or force-settled task runs instead")
	since := fs.Duration("since", 24*time.Hour, "with --stuck: force-settled runs within this `DURATION`")
	r, code := openReading(ctx, c, cmd, fs, args, false)
	if r == nil {
		return code
	}
	defer r.done()
	api, out, now := r.api, r.out, c.now()
	filter := query.Filter{Machine: *machineName, State: *state}
	if *stuck {
		return listStuck(ctx, c, cmd, api, query.StuckRequest{Filter: filter}, *limit, now, now.Add(-*since), out.json())
	}
	stacks, err := listStacks(ctx, api, query.StacksRequest{Filter: filter}, *limit)
	if err != nil {
		return fail(c, cmd, err)
	}
	if out.json() {
		list := make([]stackJSON, len(stacks))
		for i, s := range stacks {
			list[i] = newStackJSON(s, now)
			list[i].Metadata, list[i].Tasks = nil, nil
		}
		return printJSON(c, cmd, list)
	}
	rows := make([]string, len(stacks))
	for i, s := range stacks {
		pending, failed := countTasks(s.Tasks)
		rows[i] = fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s", s.ID, s.Machine, s.State, pending, failed,
			formatDuration(now.Sub(s.CreatedAt)), formatDuration(now.Sub(s.StateEnteredAt)), formatDuration(now.Sub(s.LastActivityAt)))
	}
	return printTable(c, cmd, "no stacks", "STACK\tMACHINE\tSTATE\tPENDING\tFAILED\tAGE\tIN STATE\tIDLE", rows)
}

// listStacks reads every page of stacks, or the first limit stacks when limit > 0.
func listStacks(ctx context.Context, api query.API, req query.StacksRequest, limit int) ([]*engine.Stack, error) {
	var stacks []*engine.Stack
	for {
		req.Limit = query.MaxPageSize
		if limit > 0 {
			req.Limit = min(limit-len(stacks), query.MaxPageSize)
		}
		page, err := api.Stacks(ctx, req)
		if err != nil {
			return nil, err
		}
		for i := range page.Stacks {
			stacks = append(stacks, toEngineStack(&page.Stacks[i]))
		}
		if page.NextCursor == "" || (limit > 0 && len(stacks) >= limit) {
			return stacks, nil
		}
		req.Cursor = page.NextCursor
	}
}

// toEngineStack is an answer's stack as the formatting code takes it (nil for nil).
func toEngineStack(s *query.Stack) *engine.Stack {
	if s == nil {
		return nil
	}
	return &engine.Stack{ID: s.ID, Machine: s.Machine, State: s.State, PreviousState: s.PreviousState, Metadata: s.Metadata,
		Tasks: s.Tasks, Version: s.Version, CreatedAt: s.CreatedAt, StateEnteredAt: s.StateEnteredAt, LastActivityAt: s.LastActivityAt,
		MachineHash: s.MachineHash}
}

// listStuck prints the stuck runs of the stacks the filters keep: the overdue ones first, in
// stack order, then the force-settled ones by when they were settled.
func listStuck(ctx context.Context, c *cli, cmd *command, api query.API, req query.StuckRequest, limit int, now, since time.Time, asJSON bool) int {
	req.Now, req.Since = &now, &since
	req.Limit = query.MaxPageSize
	if limit > 0 {
		req.Limit = min(limit, query.MaxPageSize)
	}
	var overdue, settled []query.StuckRun
	for {
		page, err := api.Stuck(ctx, req)
		if err != nil {
			return fail(c, cmd, err)
		}
		for _, r := range page.Runs {
			if r.Why == query.WhyOverdue {
				overdue = append(overdue, r)
			} else {
				settled = append(settled, r)
			}
		}
		if page.NextCursor == "" || limit > 0 {
			break
		}
		req.Cursor = page.NextCursor
	}
	sort.SliceStable(settled, func(i, j int) bool { return settled[i].At.Before(settled[j].At) })
	runs := append(overdue, settled...)
	if asJSON {
		if runs == nil {
			runs = []query.StuckRun{}
		}
		return printJSON(c, cmd, runs)
	}
	rows := make([]string, len(runs))
	for i, r := range runs {
		why := "settled by " + r.Why
		if r.Why == query.WhyOverdue {
			why = "overdue, not settled yet"
		}
		rows[i] = fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", r.StackID, r.Machine, r.State, r.Task, r.RunID, why, formatDuration(now.Sub(r.At)))
	}
	return printTable(c, cmd, "no stuck stacks", "STACK\tMACHINE\tSTATE\tTASK\tRUN\tWHY\tSINCE", rows)
}

func countTasks(tasks []message.StackTask) (pending, failed int) {
	for _, t := range tasks {
		switch t.Status {
		case message.TaskPending:
			pending++
		case message.TaskFailed:
			failed++
		}
	}
	return pending, failed
}

// stackJSON is a stack as `stacks` and `show` print it with --output json.
type stackJSON struct {
	ID             string           `json:"id"`
	Machine        string           `json:"machine"`
	State          string           `json:"state"`
	PreviousState  string           `json:"previousState"`
	PendingTasks   int              `json:"pendingTasks"`
	FailedTasks    int              `json:"failedTasks"`
	Version        int64            `json:"version"`
	CreatedAt      time.Time        `json:"createdAt"`
	StateEnteredAt time.Time        `json:"stateEnteredAt"`
	LastActivityAt time.Time        `json:"lastActivityAt"`
	Metadata       message.Metadata `json:"metadata,omitempty"`
	Tasks          []taskJSON       `json:"tasks,omitempty"`
}

// taskJSON is one task of the current state. DurationMS is the run's time
// once it finished, or the time it has been pending so far.
type taskJSON struct {
	message.StackTask
	DurationMS int64 `json:"durationMs"`
}

func newStackJSON(s *engine.Stack, now time.Time) stackJSON {
	pending, failed := countTasks(s.Tasks)
	j := stackJSON{ID: s.ID, Machine: s.Machine, State: s.State, PreviousState: s.PreviousState,
		PendingTasks: pending, FailedTasks: failed, Version: s.Version,
		CreatedAt: s.CreatedAt.UTC(), StateEnteredAt: s.StateEnteredAt.UTC(), LastActivityAt: s.LastActivityAt.UTC(),
		Metadata: s.Metadata, Tasks: []taskJSON{}}
	if j.Metadata == nil {
		j.Metadata = message.Metadata{}
	}
	for _, t := range s.Tasks {
		j.Tasks = append(j.Tasks, taskJSON{StackTask: t, DurationMS: taskElapsed(t, now).Milliseconds()})
	}
	return j
}

// taskElapsed is how long a task run took, or has been running.
func taskElapsed(t message.StackTask, now time.Time) time.Duration {
	end := now
	if t.FinishedAt != nil {
		end = *t.FinishedAt
	}
	return max(end.Sub(t.DispatchedAt), 0)
}

func runShow(ctx context.Context, c *cli, cmd *command, args []string) int {
	s, out, code := readStack(ctx, c, cmd, args)
	if s == nil {
		return code
	}
	now := c.now()
	if out.json() {
		return printJSON(c, cmd, newStackJSON(s, now))
	}
	w := c.stdout
	tw := newTable(w)
	fmt.Fprintf(tw, "stack\t%s\n", s.ID)
	fmt.Fprintf(tw, "machine\t%s\n", s.Machine)
	state := fmt.Sprintf("%s since %s (%s)", s.State, formatTime(s.StateEnteredAt), formatDuration(now.Sub(s.StateEnteredAt)))
	if s.PreviousState != "" {
		state += ", from " + s.PreviousState
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "created\t%s (%s)\n", formatTime(s.CreatedAt), ago(now, s.CreatedAt))
	fmt.Fprintf(tw, "last event\t%s (%s)\n", formatTime(s.LastActivityAt), ago(now, s.LastActivityAt))
	fmt.Fprintf(tw, "version\t%d\n", s.Version)
	if err := tw.Flush(); err != nil {
		return fail(c, cmd, err)
	}

	fmt.Fprintln(w, "\nmetadata")
	if len(s.Metadata) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else {
		tw = newTable(w)
		// One row per key, the value whole: spaces, "=" and all (control characters escaped).
		for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
			fmt.Fprintf(tw, "  %s\t%s\n", printable(k), formatValue(s.Metadata[k]))
		}
		_ = tw.Flush()
	}

	fmt.Fprintf(w, "\ntasks of %s\n", s.State)
	if len(s.Tasks) == 0 {
		fmt.Fprintln(w, "  (none: the stack waits for an event)")
		return exitOK
	}
	tw = newTable(w)
	for _, t := range s.Tasks {
		fmt.Fprintf(tw, "  %s\t%s\tattempt %d\t%s\trun %s\n", t.Name, t.Status, t.Attempt, taskTiming(t, now), printable(t.RunID))
	}
	_ = tw.Flush()
	_, failed := countTasks(s.Tasks)
	stuck := false
	for _, t := range s.Tasks {
		stuck = stuck || (t.Status == message.TaskPending && now.Sub(t.DispatchedAt) > stuckAfter)
	}
	for _, t := range s.Tasks {
		if t.Description == "" && t.Log == "" {
			continue
		}
		fmt.Fprintf(w, "\n  %s:\n", t.Name)
		if t.Description != "" {
			for _, line := range strings.Split(strings.TrimRight(t.Description, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", printable(line))
			}
		}
		if t.Log != "" {
			fmt.Fprintf(w, "    log: %s\n", printable(t.Log))
		}
	}
	switch {
	case failed > 0:
		fmt.Fprintf(w, "\n%d failed: `stackseam retry %s` runs them again.\n", failed, s.ID)
	case stuck:
		fmt.Fprintf(w, "\nA task has been pending for more than %s; if its result was lost, `stackseam retry --pending %s` dispatches the pending tasks again.\n",
			formatDuration(stuckAfter), s.ID)
	}
	return exitOK
}

// stuckAfter is when show suggests retrying pending tasks: the satisfier's
// default task time limit, after which a result should have come back.
const stuckAfter = 15 * time.Minute

// taskTiming says how long a task took or has been waiting.
func taskTiming(t message.StackTask, now time.Time) string {
	switch {
	case t.FinishedAt != nil:
		return "took " + formatDuration(t.FinishedAt.Sub(t.DispatchedAt))
	case t.DispatchedAt.After(now):
		return "dispatched in " + formatDuration(t.DispatchedAt.Sub(now))
	default:
		timing := "pending for " + formatDuration(now.Sub(t.DispatchedAt))
		switch {
		case t.Deadline == nil:
		case t.Deadline.After(now):
			// When the state manager stops waiting and fails the run (README.md, the guarantees).
			timing += ", deadline in " + formatDuration(t.Deadline.Sub(now))
		default:
			timing += ", overdue by " + formatDuration(now.Sub(*t.Deadline))
		}
		return timing
	}
}

// readStack parses the arguments of a command that shows the one live stack they name (with
// the read flags and nothing of its own) and reads that stack. When it cannot (bad arguments, no
// connection, no such stack) it has said why, and s is nil and code the exit code.
func readStack(ctx context.Context, c *cli, cmd *command, args []string) (s *engine.Stack, out outputFlag, code int) {
	r, code := openReading(ctx, c, cmd, newFlags(cmd), args, true)
	if r == nil {
		return nil, out, code
	}
	defer r.done()
	res, err := r.api.Stack(ctx, query.StackRequest{ID: r.id})
	if err != nil {
		return nil, r.out, fail(c, cmd, err)
	}
	if s = toEngineStack(res.Stack); s == nil {
		return nil, r.out, fail(c, cmd, missingStack(r.id, res))
	}
	return s, r.out, exitOK
}

// missingStack explains why a stack is not there: it was removed, only
// rejected events named it, or nothing is known about it.
func missingStack(id string, res *query.StackResult) error {
	if res.RemovedAt != nil {
		return fmt.Errorf("stack %s does not exist: it was removed at %s (`stackseam history %s` shows what happened)",
			id, formatTime(*res.RemovedAt), id)
	}
	if res.Rejected > 0 && res.LastRejectedAt != nil {
		return fmt.Errorf("stack %s does not exist; %d event(s) naming it were rejected, the last one at %s: %s",
			id, res.Rejected, formatTime(*res.LastRejectedAt), res.LastReason)
	}
	return fmt.Errorf("stack %s does not exist", id)
}
