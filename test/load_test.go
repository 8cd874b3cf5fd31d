package test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
)

// fiveMachine has a state of five parallel tasks, and a PING event that does
// nothing but merge metadata, so a test can put markers into a stack's event
// stream.
const fiveMachine = `version: 1
events: [LAUNCH, PING, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: PROVISION}]
  PROVISION:
    tasks: [t1, t2, t3, t4, t5]
    on:
      PING: [{action: no-op}]
      NEXT: [{action: advance, state: RUN}]
  RUN:
    on:
      PING: [{action: no-op}]
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
tasks:
  t1: {executor: lambda, config: {name: f1}}
  t2: {executor: lambda, config: {name: f2}}
  t3: {executor: lambda, config: {name: f3}}
  t4: {executor: lambda, config: {name: f4}}
  t5: {executor: lambda, config: {name: f5}}
`

// loadRun plays publisher and satisfier for many stacks of fiveMachine and
// remembers, per stack, the SQS message ids of everything it sent in the order
// it sent them: the order every stack's events must be applied in.
type loadRun struct {
	s *system
	// sent is each stack's event messages in sending order.
	sent map[string][]string
	// pings counts the PING events sent to each stack; the nth carries
	// metadata seq=n.
	pings map[string]int
	// stale marks the stacks whose first dispatch is made stale by
	// RETRY_PENDING_TASKS before any of its results, and retried those that
	// got it.
	stale, retried map[string]bool
	// current is the run each task must be settled by (stack → task → run).
	current map[string]map[string]string
	// staleRuns are the runs of stale stacks' first dispatch.
	staleRuns []string
	results   int // results sent, duplicates and stale ones included
}

type loadMessage struct{ stack, body string }

// send publishes messages in order with SendMessageBatch and records their
// ids; FIFO keeps the order of a group's entries within and across requests.
func (l *loadRun) send(msgs []loadMessage) {
	l.s.t.Helper()
	for start := 0; start < len(msgs); start += 10 {
		chunk := msgs[start:min(start+10, len(msgs))]
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(l.s.eventURL)}
		for i, m := range chunk {
			in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)),
				MessageBody: aws.String(m.body), MessageGroupId: aws.String(m.stack), MessageDeduplicationId: aws.String(newID())})
		}
		out, err := l.s.sqs.SendMessageBatch(l.s.ctx, in)
		require.NoError(l.s.t, err)
		require.Empty(l.s.t, out.Failed)
		ids := map[string]string{}
		for _, ok := range out.Successful {
			ids[aws.ToString(ok.Id)] = aws.ToString(ok.MessageId)
		}
		for i, m := range chunk {
			id := ids[strconv.Itoa(i)]
			require.NotEmpty(l.s.t, id)
			l.sent[m.stack] = append(l.sent[m.stack], id)
		}
	}
}

func (l *loadRun) ping(stack string) loadMessage {
	l.pings[stack]++
	return loadMessage{stack, fmt.Sprintf(`{"stackId":%q,"event":"PING","metadata":{"seq":%d}}`, stack, l.pings[stack])}
}

// answer receives up to max task messages and answers them in one shuffled
// round: every result once, a tenth of them twice, PINGs in between, and for
// stale stacks RETRY_PENDING_TASKS before any result of the first dispatch.
func (l *loadRun) answer(round, max int) int {
	l.s.t.Helper()
	var tasks []message.Task
	for len(tasks) < max {
		more := l.s.pollTasks(0)
		if len(more) == 0 {
			break
		}
		tasks = append(tasks, more...)
	}
	var out []loadMessage
	for i, j := range shuffled(len(tasks), round+1) {
		task := tasks[j]
		id := task.Stack.ID
		attempt := 0
		for _, st := range task.Stack.Tasks {
			if st.RunID == task.TaskRunID {
				attempt = st.Attempt
			}
		}
		require.Positive(l.s.t, attempt, "the task message lists its own run")
		if l.stale[id] && attempt == 1 {
			if !l.retried[id] {
				l.retried[id] = true
				out = append(out, loadMessage{id, fmt.Sprintf(`{"stackId":%q,"event":%q}`, id, message.EventRetryPendingTasks)})
			}
			l.staleRuns = append(l.staleRuns, task.TaskRunID)
		}
		if !l.stale[id] || attempt > 1 {
			if l.current[id] == nil {
				l.current[id] = map[string]string{}
			}
			if _, ok := l.current[id][task.Task.Name]; !ok {
				l.current[id][task.Task.Name] = task.TaskRunID
			}
		}
		// The output names the run, so a stale result that got through
		// would show in the metadata.
		body := l.s.result(task, message.EventTaskCompleted, map[string]any{"outputs": map[string]any{task.Task.Name: task.TaskRunID}})
		if i%3 == 0 {
			out = append(out, l.ping(id))
		}
		out = append(out, loadMessage{id, body})
		l.results++
		if (i*7+round)%10 == 0 {
			out = append(out, loadMessage{id, body})
			l.results++
		}
	}
	l.send(out)
	return len(tasks)
}

// TestThousandStacksFiveTasksOrderedAndExact is the load and ordering proof:
// 1,000 stacks whose PROVISION state has five parallel tasks, on three
// state-manager processes of four workers each. Results come back in shuffled
// rounds, a tenth of them twice; a tenth of the stacks get
// RETRY_PENDING_TASKS before any result, which makes the first dispatch's
// five results stale; PING events carrying a per-stack sequence number are
// mixed in. Then, checked from the database: no update lost, NEXT exactly once
// per stack, every stale or duplicate result ignored, and every stack's
// events applied exactly in the order they were sent.
//
// The emulator receives from FIFO queues as SQS does (README, "Development"):
// a batch holds as many messages of a stack as it can, in order, and nothing
// more of that stack comes while any is in flight. So batches here carry
// several events of one stack, which queue.InOrderByGroup must apply in order,
// and the event queue has the deployed maxReceiveCount.
func TestThousandStacksFiveTasksOrderedAndExact(t *testing.T) {
	t.Parallel()
	const stacks = 1000
	s := newSystem(t, systemOptions{})
	machines := machinesDir(t, "five", fiveMachine)
	for range 3 {
		s.startStateManager(4, "MACHINES_DIR="+machines)
	}
	l := &loadRun{s: s, sent: map[string][]string{}, pings: map[string]int{}, stale: map[string]bool{},
		retried: map[string]bool{}, current: map[string]map[string]string{}}
	ids := make([]string, stacks)
	var launches []loadMessage
	for i := range ids {
		ids[i] = fmt.Sprintf("load5-%04d", i)
		l.stale[ids[i]] = i%10 == 3
		launches = append(launches, loadMessage{ids[i], fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"five"}`, ids[i])})
	}
	started := time.Now()
	l.send(launches)

	deadline := time.Now().Add(5 * time.Minute)
	for round := 0; ; round++ {
		require.True(t, time.Now().Before(deadline), "not converged: %d of %d stacks in RUN",
			s.count("SELECT count(*) FROM stacks WHERE state = 'RUN'"), stacks)
		if l.answer(round, 300) > 0 {
			continue
		}
		if s.count("SELECT count(*) FROM stacks WHERE state = 'RUN'") == stacks && s.queueDepth(s.eventURL) == 0 &&
			s.queueDepth(s.taskURL) == 0 && s.count("SELECT count(*) FROM outbox") == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(started)

	// No lost update: every task settled by the run it had to be, every
	// PING's metadata merged, and nothing else in the metadata.
	rows, _ := s.db.Query(s.ctx, "SELECT id, metadata::text FROM stacks")
	final, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (struct{ id, metadata string }, error) {
		var r struct{ id, metadata string }
		return r, row.Scan(&r.id, &r.metadata)
	})
	require.NoError(t, err)
	require.Len(t, final, stacks)
	for _, r := range final {
		want := map[string]any{}
		for name, run := range l.current[r.id] {
			want[name] = run
		}
		require.Len(t, want, 5, "stack %s", r.id)
		if l.pings[r.id] > 0 {
			want["seq"] = float64(l.pings[r.id])
		}
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.metadata), &got))
		require.Equal(t, want, got, "stack %s", r.id)
	}

	// NEXT exactly once per stack, and one transition per state change.
	require.Equal(t, stacks, s.count("SELECT count(*) FROM history WHERE kind = 'event' AND event = 'NEXT'"))
	require.Equal(t, stacks, s.count(`SELECT count(*) FROM (SELECT stack_id FROM history WHERE kind = 'event' AND event = 'NEXT'
		GROUP BY stack_id HAVING count(*) = 1) x`))
	require.Equal(t, 2*stacks, s.count("SELECT count(*) FROM history WHERE kind = 'transition'"))
	require.Equal(t, stacks, s.count("SELECT count(*) FROM history WHERE kind = 'transition' AND from_state = 'PROVISION' AND to_state = 'RUN'"))
	// Five results settled each stack; every other result was ignored.
	require.Equal(t, 5*stacks, s.count("SELECT count(*) FROM history WHERE kind = 'task-completed'"))
	require.Equal(t, l.results-5*stacks, s.count("SELECT count(*) FROM history WHERE kind = 'ignored'"))
	require.Equal(t, len(l.retried), s.count("SELECT count(*) FROM history WHERE kind = 'event' AND event = $1", message.EventRetryPendingTasks))
	// No result of a stale run settled anything; each was ignored as stale.
	require.Len(t, l.staleRuns, 5*len(l.retried))
	require.Equal(t, 0, s.count("SELECT count(*) FROM history WHERE kind = 'task-completed' AND task_run_id = ANY($1)", l.staleRuns))
	require.Equal(t, len(l.staleRuns), s.count(`SELECT count(DISTINCT task_run_id) FROM history
		WHERE kind = 'ignored' AND reason LIKE 'stale result%' AND task_run_id = ANY($1)`, l.staleRuns))
	require.Equal(t, 0, s.count("SELECT count(*) FROM rejections"))
	require.Equal(t, 0, s.queueDepth(s.eventDLQ))

	// Order: each stack's PINGs were applied in sequence, and the first
	// history row of each of its messages comes in the order it was sent.
	rows, _ = s.db.Query(s.ctx, `SELECT stack_id, (detail->'metadata'->>'seq')::int FROM history
		WHERE kind = 'event' AND event = 'PING' ORDER BY id`)
	seqs := map[string][]int{}
	var stack string
	var seq int
	_, err = pgx.ForEachRow(rows, []any{&stack, &seq}, func() error {
		seqs[stack] = append(seqs[stack], seq)
		return nil
	})
	require.NoError(t, err)
	for _, id := range ids {
		want := make([]int, l.pings[id])
		for i := range want {
			want[i] = i + 1
		}
		require.Equal(t, want, append([]int{}, seqs[id]...), "PINGs of stack %s", id)
	}
	rows, _ = s.db.Query(s.ctx, `SELECT stack_id, message_id FROM history
		GROUP BY stack_id, message_id ORDER BY min(id)`)
	applied := map[string][]string{}
	var messageID string
	_, err = pgx.ForEachRow(rows, []any{&stack, &messageID}, func() error {
		applied[stack] = append(applied[stack], messageID)
		return nil
	})
	require.NoError(t, err)
	events := 0
	for _, id := range ids {
		require.Equal(t, l.sent[id], applied[id], "stack %s: its messages were applied in the order they were sent, each once", id)
		events += len(l.sent[id])
	}
	s.requireOnlyTLSConnections()
	t.Logf("%d stacks, %d events (%d results, %d stale stacks) in %s: %.0f events/s",
		stacks, events, l.results, len(l.retried), took.Round(time.Millisecond), float64(events)/took.Seconds())
}
