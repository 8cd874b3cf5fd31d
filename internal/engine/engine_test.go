package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
)

// featureEnv is the machine most tests use:
//
//	INIT -LAUNCH-> PROVISION [infra, dns] -NEXT-> RUN
//	RUN  -ACCESS-> no-op, -DESTROY-> TEARDOWN [destroy] -NEXT-> GONE (terminal)
func featureEnv() *machine.Machine {
	adv := func(s string) []machine.Action { return []machine.Action{{Kind: machine.ActionAdvance, State: s}} }
	return &machine.Machine{
		Name:   "feature-env",
		Events: []string{"LAUNCH", "ACCESS", "DESTROY", "PURGE"},
		States: map[string]*machine.State{
			"INIT":      {Name: "INIT", On: map[string][]machine.Action{"LAUNCH": adv("PROVISION"), "PURGE": adv("GONE")}},
			"PROVISION": {Name: "PROVISION", Tasks: []string{"infra", "dns"}, On: map[string][]machine.Action{"NEXT": adv("RUN"), "DESTROY": adv("TEARDOWN")}},
			"RUN": {Name: "RUN", On: map[string][]machine.Action{
				"ACCESS":  {{Kind: machine.ActionNoop}},
				"DESTROY": adv("TEARDOWN"),
			}},
			"TEARDOWN": {Name: "TEARDOWN", Tasks: []string{"destroy"}, On: map[string][]machine.Action{"NEXT": adv("GONE")}},
			"GONE":     {Name: "GONE", Terminal: true},
		},
		Tasks: map[string]*machine.Task{
			"infra":   {Name: "infra", Executor: "terraform", Config: map[string]any{"action": "apply"}},
			"dns":     {Name: "dns", Executor: "lambda", Config: map[string]any{"name": "dns-fn"}, Retry: &machine.Retry{Attempts: 2, BackoffSeconds: 10}},
			"destroy": {Name: "destroy", Executor: "terraform", Config: map[string]any{"action": "destroy"}},
		},
	}
}

// bundle drives a sequence of events against one stack, like the store would.
type bundle struct {
	t     *testing.T
	m     *machine.Machine
	stack *Stack
	now   time.Time
	runs  int
	// deadlines is the policy applied to every event (none unless a test sets it).
	deadlines Deadlines
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return &bundle{t: t, m: featureEnv(), now: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
}

// launched is setup with its stack launched on feature-env.
func launched(t *testing.T) *bundle {
	t.Helper()
	b := setup(t)
	b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env"})
	return b
}

func (b *bundle) apply(ev message.Event) Decision {
	b.t.Helper()
	if ev.StackID == "" {
		ev.StackID = "feature-1"
	}
	b.now = b.now.Add(time.Second)
	d := Apply(Input{Stack: b.stack, Machine: b.m, Event: ev, Now: b.now, NewRunID: func() string {
		b.runs++
		return fmt.Sprintf("run-%d", b.runs)
	}, Deadlines: b.deadlines})
	if d.Outcome == Applied {
		b.stack = d.Stack
	}
	return d
}

func (b *bundle) result(run string, ok bool) Decision {
	b.t.Helper()
	ev := message.Event{Event: message.EventTaskCompleted, TaskRunID: run}
	if !ok {
		ev.Event = message.EventTaskError
		ev.Description = "terraform apply failed: boom"
	}
	return b.apply(ev)
}

func (b *bundle) runOf(task string) string {
	b.t.Helper()
	for _, tk := range b.stack.Tasks {
		if tk.Name == task {
			return tk.RunID
		}
	}
	b.t.Fatalf("task %s not in stack tasks %+v", task, b.stack.Tasks)
	return ""
}

func kinds(h []HistoryEntry) []string {
	out := make([]string, len(h))
	for i, e := range h {
		out[i] = e.Kind
	}
	return out
}

func transitions(h []HistoryEntry) []string {
	var out []string
	for _, e := range h {
		if e.Kind == KindTransition {
			out = append(out, e.FromState+"->"+e.ToState)
		}
	}
	return out
}

func TestLaunchCreatesStackAndDispatchesTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env", Metadata: message.Metadata{"branch": "feature-1"}})

	require.Equal(t, Applied, d.Outcome)
	require.True(t, d.Created)
	require.Equal(t, "PROVISION", d.Stack.State)
	require.Equal(t, "INIT", d.Stack.PreviousState)
	require.Equal(t, message.Metadata{"branch": "feature-1"}, d.Stack.Metadata)
	require.Equal(t, []string{KindCreated, KindEvent, KindTransition, KindDispatched, KindDispatched}, kinds(d.History))
	require.Len(t, d.Dispatch, 2)
	require.Equal(t, "infra", d.Dispatch[0].Task.Task.Name)
	require.Equal(t, "terraform", d.Dispatch[0].Task.Task.Executor)
	require.Equal(t, "run-1", d.Dispatch[0].Task.TaskRunID)
	require.Equal(t, "run-2", d.Dispatch[1].Task.TaskRunID)
	require.Equal(t, "PROVISION", d.Dispatch[1].Task.Stack.State)
	require.Equal(t, "feature-1", d.Dispatch[1].Task.Stack.Metadata["branch"])
	require.Equal(t, int64(1), d.Stack.Version)
}

func TestAllTasksCompletedFiresNextOnce(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra, dns := b.runOf("infra"), b.runOf("dns")

	d := b.result(infra, true)
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "PROVISION", d.Stack.State, "one of two tasks done: no NEXT yet")
	require.Empty(t, transitions(d.History))

	d = b.apply(message.Event{Event: message.EventTaskCompleted, TaskRunID: dns, Outputs: message.Metadata{"url": "https://f1.example"}})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "RUN", d.Stack.State)
	require.Equal(t, []string{"PROVISION->RUN"}, transitions(d.History))
	require.Equal(t, "https://f1.example", d.Stack.Metadata["url"], "outputs merge into metadata")
	require.Empty(t, d.Stack.Tasks)
	require.Empty(t, d.Dispatch)

	// The same result again, and the other one again: nothing happens.
	d = b.result(dns, true)
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "stale result")
	require.Equal(t, []string{KindIgnored}, kinds(d.History))
	require.Equal(t, "RUN", b.stack.State)
}

func TestRepeatedResultIsIgnored(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra := b.runOf("infra")
	require.Equal(t, Applied, b.result(infra, true).Outcome)
	d := b.result(infra, true)
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "already completed")
	require.Nil(t, d.Dispatch)
}

func TestStaleResultFromEarlierVisitCannotSatisfyCurrentOne(t *testing.T) {
	t.Parallel()
	b := launched(t)
	oldInfra := b.runOf("infra")
	// Leave PROVISION before its tasks finish, come back through a new stack
	// visit: the old run id must not count.
	b.apply(message.Event{Event: "DESTROY"})
	require.Equal(t, "TEARDOWN", b.stack.State)
	d := b.result(oldInfra, true)
	require.Equal(t, Ignored, d.Outcome)
	require.Equal(t, message.TaskPending, b.stack.Tasks[0].Status)
}

func TestTaskErrorThenRetryFailedTasks(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra, dns := b.runOf("infra"), b.runOf("dns")
	b.result(dns, true)

	d := b.result(infra, false)
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "PROVISION", d.Stack.State)
	require.Equal(t, message.TaskFailed, d.Stack.Tasks[0].Status)
	require.Equal(t, "terraform apply failed: boom", d.Stack.Tasks[0].Description)
	require.Equal(t, []string{KindTaskFailed}, kinds(d.History))
	require.Empty(t, d.Dispatch, "infra has no retry policy")

	d = b.apply(message.Event{Event: message.EventRetryFailedTasks})
	require.Equal(t, Applied, d.Outcome)
	require.Len(t, d.Dispatch, 1)
	newInfra := d.Dispatch[0].Task.TaskRunID
	require.NotEqual(t, infra, newInfra)
	require.Equal(t, 2, d.Stack.Tasks[0].Attempt)
	require.Equal(t, message.TaskCompleted, d.Stack.Tasks[1].Status, "completed tasks are not re-run")

	require.Equal(t, Ignored, b.result(infra, true).Outcome, "the failed run's late success is stale")
	d = b.result(newInfra, true)
	require.Equal(t, "RUN", d.Stack.State)
}

func TestRetryWithNothingToRetryIsIgnored(t *testing.T) {
	t.Parallel()
	b := launched(t)
	d := b.apply(message.Event{Event: message.EventRetryFailedTasks})
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "no failed tasks")
}

func TestRetryPendingTasksRedispatchesWithNewRunIDs(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra, dns := b.runOf("infra"), b.runOf("dns")
	b.result(infra, true)
	d := b.apply(message.Event{Event: message.EventRetryPendingTasks})
	require.Equal(t, Applied, d.Outcome)
	require.Len(t, d.Dispatch, 1)
	require.Equal(t, "dns", d.Dispatch[0].Task.Task.Name)
	require.NotEqual(t, dns, d.Dispatch[0].Task.TaskRunID)
	require.Equal(t, Ignored, b.result(dns, true).Outcome)
}

func TestAutomaticRetryBacksOff(t *testing.T) {
	t.Parallel()
	b := launched(t)

	d := b.result(b.runOf("dns"), false)
	require.Len(t, d.Dispatch, 1)
	require.Equal(t, 10*time.Second, d.Dispatch[0].Delay)
	require.Equal(t, 2, d.Stack.Tasks[1].Attempt)
	require.Equal(t, message.TaskPending, d.Stack.Tasks[1].Status)

	d = b.result(b.runOf("dns"), false)
	require.Len(t, d.Dispatch, 1)
	require.Equal(t, 20*time.Second, d.Dispatch[0].Delay)

	d = b.result(b.runOf("dns"), false)
	require.Empty(t, d.Dispatch, "attempts exhausted: the task stays failed")
	require.Equal(t, message.TaskFailed, d.Stack.Tasks[1].Status)
}

func TestNoopKeepsStateAndMergesMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.stack = &Stack{ID: "feature-1", Machine: "feature-env", State: "RUN", Metadata: message.Metadata{"a": "1"}, Tasks: []message.StackTask{}}
	d := b.apply(message.Event{Event: "ACCESS", Metadata: message.Metadata{"lastUser": "ana", "a": "2"}})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "RUN", d.Stack.State)
	require.Equal(t, message.Metadata{"a": "2", "lastUser": "ana"}, d.Stack.Metadata)
	require.Equal(t, []string{KindEvent}, kinds(d.History))
	require.Equal(t, b.now, d.Stack.LastActivityAt)
}

func TestNullMetadataRemovesTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.stack = &Stack{ID: "feature-1", Machine: "feature-env", State: "RUN",
		Metadata: message.Metadata{"owner.email": "a@b.example", "image": "v1"}, Tasks: []message.StackTask{}}
	input := b.stack
	d := b.apply(message.Event{Event: "ACCESS", Metadata: message.Metadata{"owner.email": nil, "never-set": nil, "lastUser": "ana"}})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, message.Metadata{"image": "v1", "lastUser": "ana"}, d.Stack.Metadata, "null deletes; a missing key stays missing")
	require.Equal(t, message.Metadata{"owner.email": "a@b.example", "image": "v1"}, input.Metadata, "the input is not modified")

	// A stack at its metadata limit can always shrink: a removal is not counted as growth.
	b.stack = &Stack{ID: "feature-1", Machine: "feature-env", State: "RUN", Tasks: []message.StackTask{},
		Metadata: message.Metadata{"big": strings.Repeat("x", message.MaxStackMetadataBytes-3)}}
	d = b.apply(message.Event{Event: "ACCESS", Metadata: message.Metadata{"big": nil, "small": "y"}})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, message.Metadata{"small": "y"}, d.Stack.Metadata)
}

func TestTerminalStateRemovesStackAfterItsTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.stack = &Stack{ID: "feature-1", Machine: "feature-env", State: "RUN", Metadata: message.Metadata{}, CreatedAt: b.now}
	d := b.apply(message.Event{Event: "DESTROY"})
	require.Equal(t, "TEARDOWN", d.Stack.State)
	require.Len(t, d.Dispatch, 1)

	d = b.result(b.runOf("destroy"), true)
	require.Equal(t, Applied, d.Outcome)
	require.True(t, d.Removed)
	require.Nil(t, d.Stack)
	require.Equal(t, []string{"TEARDOWN->GONE"}, transitions(d.History))
	require.Equal(t, KindRemoved, d.History[len(d.History)-1].Kind)
	require.Equal(t, 2*time.Second, d.History[len(d.History)-1].Duration)
}

func TestTerminalStateWithoutTasksRemovesAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.apply(message.Event{Event: "PURGE", Machine: "feature-env"})
	require.Equal(t, Applied, d.Outcome)
	require.True(t, d.Created)
	require.True(t, d.Removed)
	require.Equal(t, []string{KindCreated, KindEvent, KindTransition, KindRemoved}, kinds(d.History))
}

func TestRejections(t *testing.T) {
	t.Parallel()
	existing := &Stack{ID: "feature-1", Machine: "feature-env", State: "RUN", Metadata: message.Metadata{}}
	cases := []struct {
		name   string
		stack  *Stack
		ev     message.Event
		reason string
	}{
		{"external NEXT", existing, message.Event{Event: "NEXT"}, "cannot be published"},
		{"new stack without machine", nil, message.Event{Event: "LAUNCH"}, "names no machine"},
		{"retry for unknown stack", nil, message.Event{Event: message.EventRetryFailedTasks}, "does not exist"},
		{"machine mismatch", existing, message.Event{Event: "ACCESS", Machine: "other"}, `runs machine "feature-env"`},
		{"event not allowed in state", existing, message.Event{Event: "LAUNCH"}, "not allowed in state RUN (allowed: ACCESS, DESTROY)"},
		{"undeclared event", existing, message.Event{Event: "EXPLODE"}, "not declared by machine feature-env"},
		{"first event not allowed at INIT", nil, message.Event{Event: "DESTROY", Machine: "feature-env"}, "not allowed in state INIT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.ev.StackID = "feature-1"
			d := Apply(Input{Stack: tc.stack, Machine: featureEnv(), Event: tc.ev, Now: time.Now(), NewRunID: func() string { return "x" }})
			require.Equal(t, Rejected, d.Outcome)
			require.Contains(t, d.Reason, tc.reason)
			require.Empty(t, d.Dispatch)
			require.False(t, d.Created)
			if tc.stack != nil {
				require.Equal(t, []string{KindRejected}, kinds(d.History), "rejections of existing stacks are recorded")
				require.Same(t, tc.stack, d.Stack)
			} else {
				require.Empty(t, d.History)
				require.Nil(t, d.Stack)
			}
		})
	}
}

func TestApplyDoesNotMutateInput(t *testing.T) {
	t.Parallel()
	b := launched(t)
	before := b.stack.Clone()
	snapshot := *b.stack
	d := Apply(Input{Stack: b.stack, Machine: b.m, Event: message.Event{StackID: "feature-1", Event: message.EventTaskCompleted, TaskRunID: b.runOf("infra"), Outputs: message.Metadata{"x": "y"}},
		Now: b.now, NewRunID: func() string { return "n" }})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, before, b.stack)
	require.Equal(t, snapshot.Tasks[0].Status, message.TaskPending)
	require.NotContains(t, b.stack.Metadata, "x")
}

// TestRandomResultOrderFiresNextExactlyOnce feeds every permutation-like order
// of results, duplicates and stale runs and checks one transition per visit.
func TestRandomResultOrderFiresNextExactlyOnce(t *testing.T) {
	t.Parallel()
	for seed := 0; seed < 200; seed++ {
		b := setup(t)
		b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env"})
		runs := []string{b.runOf("infra"), b.runOf("dns"), "stale-run"}
		var all []HistoryEntry
		// A deterministic shuffle with duplicates: 6 deliveries of 3 runs.
		order := []int{seed % 3, (seed / 3) % 3, (seed / 9) % 3, 0, 1, 2}
		for _, i := range order {
			d := b.result(runs[i], true)
			all = append(all, d.History...)
		}
		require.Equal(t, []string{"PROVISION->RUN"}, transitions(all), "seed %d", seed)
		require.Equal(t, "RUN", b.stack.State)
	}
}

func TestUnusableMachineIsRejectedWithItsErrors(t *testing.T) {
	t.Parallel()
	d := Apply(Input{Event: message.Event{StackID: "s", Event: "LAUNCH", Machine: "broken"},
		MachineErr: fmt.Errorf("broken.yml:3:5: state name %q must match ^[A-Z0-9-]+$ [state-name]", "run"),
		Now:        time.Now(), NewRunID: func() string { return "x" }})
	require.Equal(t, Rejected, d.Outcome)
	require.Contains(t, d.Reason, `machine "broken" cannot be used: broken.yml:3:5`)
}

func TestResultForMissingStackIsIgnoredAndRecorded(t *testing.T) {
	t.Parallel()
	d := Apply(Input{Event: message.Event{StackID: "gone", Event: message.EventTaskCompleted, TaskRunID: "r1"},
		Now: time.Now(), NewRunID: func() string { return "x" }})
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "does not exist")
	require.Nil(t, d.Stack)
	require.Equal(t, []string{KindIgnored}, kinds(d.History))
}

func TestNotificationsForTransitionsFailuresAndRemoval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env"})
	require.Len(t, d.Notifications, 1)
	n := d.Notifications[0]
	require.Equal(t, message.NotifyTransition, n.Kind)
	require.Equal(t, "PROVISION", n.State)
	require.Equal(t, "INIT", n.FromState)
	require.Equal(t, "LAUNCH", n.Event)
	require.Equal(t, "feature-env", n.Machine)

	d = b.result(b.runOf("infra"), false)
	require.Len(t, d.Notifications, 1)
	require.Equal(t, message.NotifyTaskFailed, d.Notifications[0].Kind)
	require.Equal(t, "infra", d.Notifications[0].Task)
	require.Equal(t, "terraform apply failed: boom", d.Notifications[0].Description)
	require.Equal(t, "terraform", d.History[0].Detail["executor"])

	require.Empty(t, b.result(b.runOf("dns"), true).Notifications, "a completed task alone notifies nobody")

	b.stack = &Stack{ID: "feature-1", Machine: "feature-env", State: "TEARDOWN", Metadata: message.Metadata{},
		Tasks: []message.StackTask{{Name: "destroy", Status: message.TaskPending, RunID: "r-d"}}}
	d = b.result("r-d", true)
	require.True(t, d.Removed)
	var got []string
	for _, n := range d.Notifications {
		got = append(got, n.Kind+":"+n.State)
	}
	require.Equal(t, []string{"transition:GONE", "removed:GONE"}, got)
}

func TestIfVersionCancelsEventsAfterActivity(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.stack = &Stack{ID: "feature-1", Machine: "feature-env", State: "RUN", Metadata: message.Metadata{}, Version: 7}
	stale := int64(6)
	d := b.apply(message.Event{Event: "DESTROY", IfVersion: &stale})
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "changed since the event was issued (version 6, now 7)")

	current := int64(7)
	d = b.apply(message.Event{Event: "DESTROY", IfVersion: &current})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "TEARDOWN", d.Stack.State)

	d = Apply(Input{Event: message.Event{StackID: "gone", Event: "DESTROY", IfVersion: &current}, Now: time.Now(), NewRunID: func() string { return "x" }})
	require.Equal(t, Ignored, d.Outcome, "a conditional event for a removed stack is moot, not bad")
}

// A stack's metadata is bounded so its task messages always fit in SQS: an event that would grow
// it past the limit is rejected, and a result that would is still settled, as a failure that says
// why, so the stack never waits on it.
func TestStackMetadataIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	chunk := func(key string) message.Metadata {
		return message.Metadata{key: strings.Repeat("x", message.MaxMetadataBytes-len(key)-1)}
	}
	d := b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env", Metadata: chunk("a")})
	require.Equal(t, Applied, d.Outcome)
	infra, dns := b.runOf("infra"), b.runOf("dns")

	d = b.apply(message.Event{Event: message.EventTaskCompleted, TaskRunID: infra, Outputs: chunk("b")})
	require.Equal(t, Applied, d.Outcome, "two chunks fit")
	d = b.apply(message.Event{Event: message.EventTaskCompleted, TaskRunID: dns, Outputs: chunk("c")})
	require.Equal(t, Applied, d.Outcome, "the result is settled")
	failed := d.History[0]
	require.Equal(t, KindTaskFailed, failed.Kind, "outputs that cannot be kept fail the task")
	require.Contains(t, failed.Reason, "the result was not kept: the stack's metadata would grow to")
	require.Equal(t, 2, d.Stack.Tasks[1].Attempt, "and the machine's retry policy applies")
	require.NotContains(t, d.Stack.Metadata, "c")
	require.LessOrEqual(t, d.Stack.Metadata.Bytes(), message.MaxStackMetadataBytes)

	d = b.apply(message.Event{Event: message.EventRetryPendingTasks, Metadata: chunk("d")})
	require.Equal(t, Rejected, d.Outcome)
	require.Contains(t, d.Reason, "at most 65536 are allowed")
	// Replacing a key's value counts only the difference.
	d = b.apply(message.Event{Event: message.EventRetryPendingTasks, Metadata: chunk("a")})
	require.Equal(t, Applied, d.Outcome)
}

func TestTransitionsPerEventAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// LAUNCH lists more advances than one event may take, hopping between
	// two states without tasks.
	var hops []machine.Action
	for i := 0; i < MaxTransitionsPerEvent*3; i++ {
		hops = append(hops, machine.Action{Kind: machine.ActionAdvance, State: []string{"RUN", "PROVISION"}[i%2]})
	}
	b.m.States["INIT"].On["LAUNCH"] = hops
	d := b.apply(message.Event{Event: "LAUNCH", Machine: "feature-env"})
	require.Equal(t, Applied, d.Outcome)
	transitions, stopped := 0, 0
	for _, h := range d.History {
		switch {
		case h.Kind == KindTransition:
			transitions++
		case h.Kind == KindEvent && strings.Contains(h.Reason, "stopped after"):
			stopped++
		}
	}
	require.Equal(t, MaxTransitionsPerEvent, transitions)
	require.Equal(t, 1, stopped, "the history says why the rest was not taken")
}

// A publisher cannot move a stack more than MaxTransitionsPerMinute times a minute; results are
// never held back, so a task always settles.
func TestTransitionsPerMinuteAreBounded(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra := b.runOf("infra")
	b.stack.RecentTransitions = MaxTransitionsPerMinute
	d := b.apply(message.Event{Event: "DESTROY"})
	require.Equal(t, Rejected, d.Outcome)
	require.Contains(t, d.Reason, "took 60 transitions in the last minute")

	b.stack.RecentTransitions = MaxTransitionsPerMinute
	d = b.result(infra, true)
	require.Equal(t, Applied, d.Outcome, "a result settles its task whatever the rate")
}

// byName is a result as CloudSeam's satisfier (or an operator, for a manual step) sends it: the
// task's name, no taskRunId.
func byName(event, task string) message.Event {
	return message.Event{Event: event, Task: &message.TaskSpec{Name: task}}
}

func TestResultByTaskNameSettlesTheCurrentPendingRun(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra := b.runOf("infra")

	d := b.apply(byName(message.EventTaskCompleted, "infra"))
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, []string{KindTaskDone}, kinds(d.History))
	require.Equal(t, infra, d.History[0].TaskRunID, "the history names the run it settled")
	require.Equal(t, true, d.History[0].Detail["byTaskName"], "and that a result without a run id settled it")
	require.NotContains(t, d.History[0].Detail, "settledBy", "settledBy is for runs the state manager failed itself")

	// The same by-name result again: the run is no longer pending, so nothing happens.
	d = b.apply(byName(message.EventTaskCompleted, "infra"))
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "already completed")

	// A task the state does not have.
	d = b.apply(byName(message.EventTaskCompleted, "destroy"))
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "not a task of stack feature-1 in state PROVISION")

	// A by-name failure of the other task: the machine's retry policy applies as for any failure,
	// and the retried run is pending again, so a later by-name result settles the new run.
	d = b.apply(message.Event{Event: message.EventTaskError, Task: &message.TaskSpec{Name: "dns"}, Description: "manual check failed"})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, []string{KindTaskFailed, KindDispatched}, kinds(d.History))
	retried := b.runOf("dns")
	d = b.apply(byName(message.EventTaskCompleted, "dns"))
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, retried, d.History[0].TaskRunID)
	require.Equal(t, "RUN", d.Stack.State, "both tasks done: NEXT fired")
}

func TestResultWithRunIDStaysStaleProof(t *testing.T) {
	t.Parallel()
	b := launched(t)
	infra := b.runOf("infra")
	// A run id of another task (or of an earlier visit) never settles a task, even one the
	// result names: the run id decides, not the name.
	d := b.apply(message.Event{Event: message.EventTaskCompleted, TaskRunID: "run-from-last-week", Task: &message.TaskSpec{Name: "infra"}})
	require.Equal(t, Ignored, d.Outcome)
	require.Contains(t, d.Reason, "stale result")
	require.Equal(t, message.TaskPending, b.stack.Tasks[0].Status)
	d = b.apply(message.Event{Event: message.EventTaskCompleted, TaskRunID: infra, Task: &message.TaskSpec{Name: "dns"}})
	require.Equal(t, Applied, d.Outcome)
	require.Equal(t, "infra", d.History[0].Task, "the run id decides which task is settled")
	require.NotContains(t, d.History[0].Detail, "byTaskName")
}
