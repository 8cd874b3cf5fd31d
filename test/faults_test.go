package test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/test/harness"
)

// These tests inject faults into the shipped state manager, built with the
// faultinject tag and armed through faults.EnvVar, and check the design's
// guarantees (docs/design.md §"Guarantees") after each: every stack
// converges, no transition happens twice, no task message is left unsent, and
// a poison message ends in the dead-letter queue holding up nothing but its
// own stack.

// pairTransitions is the whole life of a stack of the pair machine.
var pairTransitions = []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}

// faultSystem is a system whose state managers are restarted when they die.
type faultSystem struct {
	*system
	workers int
	env     []string
	procs   []*harness.Process
	// dead are the processes that exited, and restarts counts them.
	dead     []*harness.Process
	restarts int
}

// newFaultSystem makes a system that runs the faultinject build of the state
// manager with env (faults.EnvVar among it) and an event queue whose messages
// come back visibilitySeconds after a crashed process received them.
func newFaultSystem(t *testing.T, opts systemOptions, visibilitySeconds int, env ...string) *faultSystem {
	t.Helper()
	s := newSystem(t, opts)
	s.bin = harness.BuildBinaryWithTags(t, "./functions/statemanager", faults.BuildTag)
	s.setQueueAttributes(s.eventURL, map[string]string{"VisibilityTimeout": strconv.Itoa(visibilitySeconds)})
	return &faultSystem{system: s, env: env}
}

// start starts n state-manager processes with workers receive loops each.
func (fs *faultSystem) start(n, workers int) {
	fs.t.Helper()
	fs.workers = workers
	for range n {
		fs.procs = append(fs.procs, fs.startStateManager(workers, fs.env...))
	}
}

// supervise restarts every state manager that has exited, as Lambda or a
// process supervisor would.
func (fs *faultSystem) supervise() {
	fs.t.Helper()
	for i, p := range fs.procs {
		if p.Exited() {
			fs.dead = append(fs.dead, p)
			fs.restarts++
			fs.procs[i] = fs.startStateManager(fs.workers, fs.env...)
		}
	}
}

// announced counts the faults of one kind the state managers, live and
// dead, said they injected.
func (fs *faultSystem) announced(fault string) int {
	n := 0
	for _, p := range append(append([]*harness.Process(nil), fs.dead...), fs.procs...) {
		n += strings.Count(p.Output(), faults.Announcement+" "+fault)
	}
	return n
}

// answerTasks plays the satisfier: it receives the task messages waiting now
// and publishes a TASK_COMPLETED for each. Task messages are delivered at
// least once, so the same run may be answered twice; the state manager ignores
// the second result.
func (s *system) answerTasks() int {
	s.t.Helper()
	tasks := s.pollTasks(0)
	var results []queue.Outgoing
	for _, task := range tasks {
		results = append(results, queue.Outgoing{Body: s.result(task, message.EventTaskCompleted, nil),
			GroupID: task.Stack.ID, DedupID: newID()})
	}
	require.NoError(s.t, queue.Send(s.ctx, s.sqs, s.eventURL, results))
	return len(tasks)
}

// states reads the current state of the given stacks; removed (or not yet
// created) stacks are absent. While the database is away it reports !ok.
func (s *system) states(ids []string) (map[string]string, bool) {
	rows, err := s.db.Query(s.ctx, "SELECT id, state FROM stacks WHERE id = ANY($1)", ids)
	if err != nil {
		return nil, false
	}
	out := map[string]string{}
	var id, state string
	_, err = pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		out[id] = state
		return nil
	})
	return out, err == nil
}

// launchPairs sends LAUNCH for new stacks of the pair machine.
func (s *system) launchPairs(ids []string) {
	s.t.Helper()
	launches := make([]queue.Outgoing, len(ids))
	for i, id := range ids {
		launches[i] = queue.Outgoing{Body: fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"pair"}`, id), GroupID: id, DedupID: newID()}
	}
	require.NoError(s.t, queue.Send(s.ctx, s.sqs, s.eventURL, launches))
}

// driveLifecycles drives launched stacks of the pair machine to removal: it
// answers every task message, sends DESTROY once a stack is in RUN, calls
// between after each round (to restart processes, restart the database…),
// and returns once every stack is removed, no task message is left in the
// outbox and the queues are empty but for held event messages (stuck behind a
// poison message).
func (s *system) driveLifecycles(ids []string, timeout time.Duration, between func(states map[string]string), held int) {
	s.t.Helper()
	destroyed := map[string]bool{}
	deadline := time.Now().Add(timeout)
	var states map[string]string
	for {
		require.True(s.t, time.Now().Before(deadline), "not converged in %s: destroyed %d of %d, states %v", timeout, len(destroyed), len(ids), states)
		answered := s.answerTasks()
		var ok bool
		if states, ok = s.states(ids); ok {
			var destroys []queue.Outgoing
			for _, id := range ids {
				if states[id] == "RUN" && !destroyed[id] {
					destroyed[id] = true
					destroys = append(destroys, queue.Outgoing{Body: fmt.Sprintf(`{"stackId":%q,"event":"DESTROY"}`, id), GroupID: id, DedupID: newID()})
				}
			}
			require.NoError(s.t, queue.Send(s.ctx, s.sqs, s.eventURL, destroys))
			if len(destroyed) == len(ids) && len(states) == 0 && s.settled(held) {
				return
			}
		}
		if between != nil {
			between(states)
		}
		if answered == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// settled reports whether nothing is left to do: no task message waits in
// the outbox, the task queue is empty and the event queue holds only the held
// messages.
func (s *system) settled(held int) bool {
	var outbox int
	if s.db.QueryRow(s.ctx, "SELECT count(*) FROM outbox").Scan(&outbox) != nil || outbox > 0 {
		return false
	}
	return s.queueDepth(s.eventURL) == held && s.queueDepth(s.taskURL) == 0
}

// requireConverged checks, from history, that every stack took each
// transition of its life exactly once and fired NEXT once per task state,
// and that nothing ended in a dead-letter queue or was rejected.
func (s *system) requireConverged(ids []string) {
	s.t.Helper()
	for _, id := range ids {
		require.Equal(s.t, pairTransitions, s.transitions(id), "stack %s", id)
		require.Equal(s.t, 2, s.count("SELECT count(*) FROM history WHERE stack_id = $1 AND kind = 'event' AND event = 'NEXT'", id),
			"stack %s: NEXT once per state visit", id)
		require.Equal(s.t, 1, s.historyCount(id, "removed"), "stack %s", id)
	}
	require.Equal(s.t, 0, s.count("SELECT count(*) FROM stacks WHERE id = ANY($1)", ids))
	require.Equal(s.t, 0, s.count("SELECT count(*) FROM outbox"), "no task message left unsent")
	require.Equal(s.t, 0, s.count("SELECT count(*) FROM rejections"))
	require.Equal(s.t, 0, s.queueDepth(s.eventDLQ))
	require.Equal(s.t, 0, s.queueDepth(s.taskDLQ))
}

func stackIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return ids
}

// TestFaultConfigurationTypoStopsTheBinary: a misspelt fault must not
// quietly arm nothing.
func TestFaultConfigurationTypoStopsTheBinary(t *testing.T) {
	t.Parallel()
	fs := newFaultSystem(t, systemOptions{}, 30)
	proc := fs.launchStateManager(faults.EnvVar + "=crash-after-comit=1")
	require.Error(t, proc.Wait())
	require.Equal(t, 2, proc.ExitCode())
	require.Contains(t, proc.Output(), `unknown fault "crash-after-comit"`)
}

// TestCrashAfterCommitRedeliveryPublishes: the state manager dies between
// committing LAUNCH and publishing its two task messages, with the sweep off.
// The event comes back to the next process, which finds it applied and only
// publishes the outbox.
func TestCrashAfterCommitRedeliveryPublishes(t *testing.T) {
	t.Parallel()
	fs := newFaultSystem(t, systemOptions{}, 2, faults.EnvVar+"="+faults.CrashAfterCommit+"=1", "SWEEP_INTERVAL=1h")
	fs.start(1, 1)

	ids := []string{"crash-r"}
	fs.launchPairs(ids)
	require.ErrorContains(t, fs.procs[0].Wait(), "killed")
	require.Equal(t, 1, fs.announced(faults.CrashAfterCommit))
	require.Equal(t, "PROVISION", fs.stack("crash-r").State, "LAUNCH was committed")
	require.Equal(t, 2, fs.count("SELECT count(*) FROM outbox"), "its task messages were not published")

	fs.env = []string{"SWEEP_INTERVAL=1h"} // disarmed, and no sweep: only the redelivery can publish
	fs.supervise()
	fs.driveLifecycles(ids, 60*time.Second, nil, 0)
	fs.requireConverged(ids)
	require.Contains(t, fs.procs[0].Output(), `"msg":"event already applied","stackId":"crash-r","event":"LAUNCH"`)
	require.Contains(t, fs.procs[0].Output(), `"outcome":"duplicate","flushed":2`)
	require.NotContains(t, fs.procs[0].Output(), "sent messages left in the outbox")
}

// TestCrashAfterCommitSweepPublishes: as above, but with the sweep on and a
// visibility timeout long enough that the sweep finds the abandoned outbox
// rows and publishes them before the event comes back. (The stack's results
// still wait for that redelivery: in a FIFO group nothing overtakes a message
// in flight.)
func TestCrashAfterCommitSweepPublishes(t *testing.T) {
	t.Parallel()
	fs := newFaultSystem(t, systemOptions{}, 10, faults.EnvVar+"="+faults.CrashAfterCommit+"=1")
	fs.start(1, 1)

	ids := []string{"crash-s"}
	fs.launchPairs(ids)
	require.ErrorContains(t, fs.procs[0].Wait(), "killed")
	require.Equal(t, 1, fs.announced(faults.CrashAfterCommit))
	require.Equal(t, 2, fs.count("SELECT count(*) FROM outbox"))

	fs.env = []string{"SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=1s"}
	fs.supervise()
	tasks := fs.receiveTasks(2)
	fs.procs[0].WaitForOutput(t, `"msg":"sent messages left in the outbox","count":2`, 10*time.Second)
	for _, task := range tasks {
		fs.send("crash-s", fs.result(task, message.EventTaskCompleted, nil))
	}
	fs.driveLifecycles(ids, 60*time.Second, nil, 0)
	fs.requireConverged(ids)
	require.Contains(t, fs.procs[0].Output(), `"msg":"event already applied","stackId":"crash-s","event":"LAUNCH"`)
	require.Contains(t, fs.procs[0].Output(), `"outcome":"duplicate","flushed":0`, "the sweep had published everything")
}

// TestCrashesAfterCommitManyStacks: 30 stacks on two processes that each die
// after a fifth of their commits that dispatch tasks; both the redelivery and
// the sweep recover what the crashes left.
//
// At that rate a batch of ten LAUNCH events kills its process almost every
// time it is received, and each crash counts a receive on every message of
// the batch: with the deployed maxReceiveCount (5) the last events of such a
// batch are dead-lettered before their turn comes. So this test allows 20
// receives; crashes that frequent are the scenario, not a deployed condition.
func TestCrashesAfterCommitManyStacks(t *testing.T) {
	t.Parallel()
	fs := newFaultSystem(t, systemOptions{maxReceiveCount: 20}, 2, faults.EnvVar+"="+faults.CrashAfterCommit+"=0.2",
		"SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=3s")
	fs.start(2, 2)

	ids := stackIDs("crash-m", 30)
	fs.launchPairs(ids)
	fs.driveLifecycles(ids, 3*time.Minute, func(map[string]string) { fs.supervise() }, 0)
	fs.requireConverged(ids)
	crashes := fs.announced(faults.CrashAfterCommit)
	require.Positive(t, crashes)
	require.Equal(t, crashes, fs.restarts, "every exit was an injected crash")
	t.Logf("%d crashes after commit, %d restarts", crashes, fs.restarts)
}

// TestFailingSQSSendsConverge: a third of the state managers' SendMessageBatch
// requests fail. The events are retried, find themselves applied, and
// publish their outbox.
func TestFailingSQSSendsConverge(t *testing.T) {
	t.Parallel()
	fs := newFaultSystem(t, systemOptions{}, 30, faults.EnvVar+"="+faults.SQSSendFail+"=0.33",
		"SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=3s")
	fs.start(2, 2)

	ids := stackIDs("sqs-fail", 30)
	fs.launchPairs(ids)
	fs.driveLifecycles(ids, 3*time.Minute, nil, 0)
	fs.requireConverged(ids)
	failures := fs.announced(faults.SQSSendFail)
	require.Positive(t, failures)
	require.Zero(t, fs.restarts)
	for _, p := range fs.procs {
		require.False(t, p.Exited())
	}
	t.Logf("%d SendMessageBatch requests failed", failures)
}

// TestDatabaseRestartWhileEventsFlow: the database server restarts twice
// while 30 stacks go through their lives on two processes.
func TestDatabaseRestartWhileEventsFlow(t *testing.T) {
	t.Parallel()
	srv := harness.NewDatabaseServer(t, harness.TLSOnly(), harness.Durable())
	fs := newFaultSystem(t, systemOptions{server: srv}, 30, // the deployed maxReceiveCount
		"SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=3s")
	fs.start(2, 2)

	ids := stackIDs("db-restart", 30)
	fs.launchPairs(ids)
	restarts := 0
	fs.driveLifecycles(ids, 3*time.Minute, func(states map[string]string) {
		up, coming := 0, 0
		for _, st := range states {
			switch st {
			case "RUN", "TEARDOWN":
				up++
			case "INIT", "PROVISION":
				coming++
			}
		}
		// Once while stacks come up, and once when all are up, while they
		// go down (they cannot all be removed yet: their teardown tasks wait
		// for this goroutine to answer them).
		if (restarts == 0 && up >= len(ids)/3) || (restarts == 1 && len(states) > 0 && coming == 0) {
			restarts++
			srv.Restart(t, time.Second)
		}
	}, 0)
	require.Equal(t, 2, restarts)
	fs.requireConverged(ids)
	retries := 0
	for _, p := range fs.procs {
		require.False(t, p.Exited(), "the state managers outlive the database")
		retries += strings.Count(p.Output(), `"outcome":"retry"`)
	}
	require.Positive(t, retries, "events failed while the database was away")
	fs.requireOnlyTLSConnections() // reconnections after the restarts too
}

// TestPoisonMessageHoldsUpOnlyItsStack: one event of stack P always fails
// (an error), one of stack Q always panics its handler, each with two task
// results queued behind it; the event queue has the deployed maxReceiveCount,
// and the emulator delivers a group's messages together, as SQS does. Each
// poison is tried maxReceiveCount times and then lands in the dead-letter
// queue; the results behind it are held until then, then applied (they are
// received and counted with the poison every time, so they must not follow
// it into the dead-letter queue). 20 other stacks, launched while the poisons
// fail, run their whole lives on the same process without one retry.
func TestPoisonMessageHoldsUpOnlyItsStack(t *testing.T) {
	t.Parallel()
	const poison, poisonPanic = "POISON-7f3a", "PANIC-9c1e"
	fs := newFaultSystem(t, systemOptions{}, 30,
		faults.EnvVar+"="+faults.Poison+"="+poison+","+faults.PoisonPanic+"="+poisonPanic)
	fs.start(1, 2)

	markers := map[string]string{"poison-p": poison, "poison-q": poisonPanic}
	held := []string{"poison-p", "poison-q"}
	fs.launchPairs(held)
	byStack := map[string][]message.Task{}
	for _, task := range fs.receiveTasks(4) {
		byStack[task.Stack.ID] = append(byStack[task.Stack.ID], task)
	}
	for _, id := range held {
		// The poison first, then both results, which queue up behind it in
		// the stack's FIFO group.
		fs.send(id, fmt.Sprintf(`{"stackId":%q,"event":"ACCESS","metadata":{"note":%q}}`, id, markers[id]),
			fs.result(byStack[id][0], message.EventTaskCompleted, nil),
			fs.result(byStack[id][1], message.EventTaskCompleted, nil))
	}
	fs.procs[0].WaitForOutput(t, faults.Announcement+" "+faults.PoisonPanic, 30*time.Second)
	fs.procs[0].WaitForOutput(t, faults.Announcement+" "+faults.Poison+"\n", 30*time.Second)

	others := stackIDs("poison-other", 20)
	fs.launchPairs(others)
	all := append(append([]string(nil), held...), others...)
	fs.driveLifecycles(all, 3*time.Minute, nil, 0)

	dead := fs.drainQueue(fs.eventDLQ, 2)
	require.ElementsMatch(t, held, []string{stackOf(t, dead[0]), stackOf(t, dead[1])})
	for _, body := range dead {
		require.Contains(t, body, markers[stackOf(t, body)])
	}
	// Every stack, P and Q too, lived its whole life; nothing else was dead-lettered.
	fs.requireConverged(all)
	require.False(t, fs.procs[0].Exited(), "a panicking handler does not take the process down")
	require.Zero(t, fs.restarts)

	out := fs.procs[0].Output()
	for _, fault := range []string{faults.Poison, faults.PoisonPanic} {
		require.Equal(t, deployed.EventQueueMaxReceiveCount, strings.Count(out, faults.Announcement+" "+fault+"\n"),
			"%s tried exactly maxReceiveCount times", fault)
	}
	logs := jsonLines(t, out)
	for _, id := range held {
		movedAt := slices.IndexFunc(logs, func(l map[string]any) bool {
			return l["stackId"] == id && l["outcome"] == "dead-lettered"
		})
		require.GreaterOrEqual(t, movedAt, 0, "%s: the poison was moved by the state manager", id)
		require.EqualValues(t, deployed.EventQueueMaxReceiveCount, logs[movedAt]["receiveCount"])
		firstResult := slices.IndexFunc(logs, func(l map[string]any) bool {
			return l["stackId"] == id && l["event"] == message.EventTaskCompleted && l["outcome"] == "applied"
		})
		require.Greater(t, firstResult, movedAt, "%s: the results waited for the poison to leave", id)
		require.True(t, slices.ContainsFunc(logs[:movedAt], func(l map[string]any) bool {
			return l["stackId"] == id && l["msg"] == "message not handled: an earlier message of its stack failed"
		}), "%s: the results were received in the poison's batches (the in-batch path ran)", id)
	}
	for _, l := range logs {
		if id, _ := l["stackId"].(string); strings.HasPrefix(id, "poison-other") {
			require.NotEqual(t, "retry", l["outcome"], "another stack's event failed: %v", l)
		}
	}
}

// jsonLines returns the JSON objects among a process's output lines, in order.
func jsonLines(t *testing.T, output string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(output, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func stackOf(t *testing.T, body string) string {
	t.Helper()
	var ev struct {
		StackID string `json:"stackId"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &ev))
	return ev.StackID
}
