// Package test holds stackseam's end-to-end tests: the shipped binaries in
// local mode against real PostgreSQL and the SQS/S3 emulator.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// system is one stackseam installation for one test: its own database,
// queues and state-manager processes.
type system struct {
	t        *testing.T
	ctx      context.Context
	dbURL    string
	db       *pgxpool.Pool
	store    *store.Store
	sqs      *sqs.Client
	eventURL string
	eventDLQ string
	taskURL  string
	taskDLQ  string
	bin      string
	// The production path, unless the test gave a dbURL: the state
	// manager's own database user, whose RDS-format secret the Secrets
	// Manager fake holds, on a TLS-only server it verifies (see README.md,
	// "TLS to the database").
	appDB    *harness.AppDatabase
	secrets  *harness.SecretsFake
	rootCert string
}

// dbSecretID names the database secret in the Secrets Manager fake.
const dbSecretID = "stackseam/database"

type systemOptions struct {
	// dbURL, when set, is given to the state manager as DATABASE_URL.
	// Otherwise it reaches a fresh database on server (default: the shared
	// TLS-only server) through a secret, as in production, and dbURL is the
	// superuser's verify-full URL of that database.
	dbURL  string
	server *harness.DatabaseServer
	// maxReceiveCount of the event queue's redrive policy; defaults to what the construct
	// deploys (deployed.EventQueueMaxReceiveCount).
	maxReceiveCount int
}

func newSystem(t *testing.T, opts systemOptions) *system {
	t.Helper()
	var appDB *harness.AppDatabase
	var secrets *harness.SecretsFake
	var rootCert string
	if opts.dbURL == "" {
		if opts.server == nil {
			opts.server = harness.TLSDatabaseServer(t)
		}
		db := opts.server.AppDatabase(t)
		secrets = harness.NewSecretsFake(t)
		secrets.Put(dbSecretID, db.Secret())
		appDB, rootCert, opts.dbURL = &db, opts.server.RootCertPath(), db.URL
	}
	if opts.maxReceiveCount == 0 {
		opts.maxReceiveCount = deployed.EventQueueMaxReceiveCount
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, opts.dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s := &system{t: t, ctx: ctx, dbURL: opts.dbURL, db: pool, store: store.New(pool), sqs: harness.SQSClient(t),
		appDB: appDB, secrets: secrets, rootCert: rootCert}
	s.eventURL, s.eventDLQ = harness.CreateQueue(t, "events", true, opts.maxReceiveCount)
	s.taskURL, s.taskDLQ = harness.CreateQueue(t, "tasks", false, deployed.TaskQueueMaxReceiveCount)
	s.bin = harness.BuildBinary(t, "./functions/statemanager")
	return s
}

// startStateManager starts one statemanager process in local mode and waits until it is ready.
func (s *system) startStateManager(workers int, extraEnv ...string) *harness.Process {
	s.t.Helper()
	proc := s.launchStateManager(append([]string{"WORKERS=" + strconv.Itoa(workers)}, extraEnv...)...)
	// Ready means migrated: tests may read the tables from here on.
	proc.WaitForOutput(s.t, "state manager ready", 60*time.Second)
	return proc
}

// launchStateManager starts one statemanager process in local mode, on the system's queues,
// database (databaseEnv) and the test machines, with extraEnv's settings winning; it does not wait
// for the process to be ready, for tests of a state manager that must not start or connect.
func (s *system) launchStateManager(extraEnv ...string) *harness.Process {
	s.t.Helper()
	env := append(harness.AWSEnv(s.t),
		"EVENT_QUEUE_URL="+s.eventURL,
		"TASK_QUEUE_URL="+s.taskURL,
		"MACHINES_DIR="+harness.Testdata(s.t, "machines"),
		"POLL_WAIT=1s",
		"RETRY_DELAY=1s",
	)
	env = append(env, s.databaseEnv()...)
	return harness.StartProcess(s.t, s.bin, append(env, extraEnv...))
}

// databaseEnv is how the state manager reaches its database: as deployed
// (DATABASE_SECRET_ID, DATABASE_SSLMODE unset so its default verify-full
// applies, the test CA as DATABASE_SSLROOTCERT), or DATABASE_URL when the
// test gave one.
func (s *system) databaseEnv() []string {
	if s.secrets == nil {
		return []string{"DATABASE_URL=" + s.dbURL}
	}
	return []string{"DATABASE_SECRET_ID=" + dbSecretID, s.secrets.Env(), "DATABASE_SSLROOTCERT=" + s.rootCert}
}

// send publishes raw bodies to the event queue, each with a fresh dedup id,
// so a body sent twice is delivered twice.
func (s *system) send(group string, bodies ...string) {
	s.t.Helper()
	msgs := make([]queue.Outgoing, len(bodies))
	for i, b := range bodies {
		msgs[i] = queue.Outgoing{Body: b, GroupID: group, DedupID: newID()}
	}
	require.NoError(s.t, queue.Send(s.ctx, s.sqs, s.eventURL, msgs))
}

func (s *system) sendEvent(stackID, event string, fields map[string]any) {
	s.t.Helper()
	body := map[string]any{"stackId": stackID, "event": event}
	for k, v := range fields {
		body[k] = v
	}
	raw, err := json.Marshal(body)
	require.NoError(s.t, err)
	s.send(stackID, string(raw))
}

// result publishes what a satisfier would for task.
func (s *system) result(task message.Task, event string, extra map[string]any) string {
	s.t.Helper()
	body := map[string]any{"event": event, "stackId": task.Stack.ID, "taskRunId": task.TaskRunID, "task": task.Task}
	for k, v := range extra {
		body[k] = v
	}
	raw, err := json.Marshal(body)
	require.NoError(s.t, err)
	return string(raw)
}

// receiveTasks takes n task messages off the task queue.
func (s *system) receiveTasks(n int) []message.Task {
	s.t.Helper()
	var out []message.Task
	deadline := time.Now().Add(60 * time.Second)
	for len(out) < n {
		require.True(s.t, time.Now().Before(deadline), "timed out with %d of %d task messages", len(out), n)
		out = append(out, s.pollTasks(1)...)
	}
	require.Len(s.t, out, n, "more task messages than expected")
	return out
}

// pollTasks receives and deletes up to ten task messages in one receive, which waits up to wait
// seconds for the first (0: only those waiting now).
func (s *system) pollTasks(wait int32) []message.Task {
	s.t.Helper()
	resp, err := s.sqs.ReceiveMessage(s.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.taskURL),
		MaxNumberOfMessages: 10, WaitTimeSeconds: wait})
	require.NoError(s.t, err)
	if len(resp.Messages) == 0 {
		return nil
	}
	var out []message.Task
	del := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(s.taskURL)}
	for i, m := range resp.Messages {
		task, err := message.ParseTask([]byte(aws.ToString(m.Body)))
		require.NoError(s.t, err)
		out = append(out, task)
		del.Entries = append(del.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
	}
	_, err = s.sqs.DeleteMessageBatch(s.ctx, del)
	require.NoError(s.t, err)
	return out
}

func (s *system) stack(id string) *engine.Stack {
	s.t.Helper()
	st, err := s.store.GetStack(s.ctx, id)
	require.NoError(s.t, err)
	return st
}

func (s *system) waitState(id, state string) *engine.Stack {
	s.t.Helper()
	var last *engine.Stack
	require.Eventually(s.t, func() bool {
		last = s.stack(id)
		return last != nil && last.State == state
	}, 60*time.Second, 50*time.Millisecond, "stack %s never reached %s (last: %+v)", id, state, last)
	return last
}

// waitTask waits until the stack's task name has status, and returns it.
func (s *system) waitTask(stackID, name string, status message.TaskStatus) message.StackTask {
	s.t.Helper()
	var found message.StackTask
	var last *engine.Stack
	require.Eventually(s.t, func() bool {
		last = s.stack(stackID)
		if last == nil {
			return false
		}
		for _, task := range last.Tasks {
			if task.Name == name && task.Status == status {
				found = task
				return true
			}
		}
		return false
	}, 90*time.Second, 100*time.Millisecond, "task %s of %s never became %s (last: %+v)", name, stackID, status, last)
	return found
}

func (s *system) waitRemoved(id string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool { return s.stack(id) == nil }, 60*time.Second, 50*time.Millisecond,
		"stack %s was never removed", id)
}

func (s *system) count(sql string, args ...any) int {
	s.t.Helper()
	var n int
	require.NoError(s.t, s.db.QueryRow(s.ctx, sql, args...).Scan(&n))
	return n
}

// historyCount counts the stack's history records of kind ("task-completed", "removed", …).
func (s *system) historyCount(stackID, kind string) int {
	s.t.Helper()
	return s.count("SELECT count(*) FROM history WHERE stack_id = $1 AND kind = $2", stackID, kind)
}

// transitions returns a stack's transitions in order, as "FROM->TO".
func (s *system) transitions(id string) []string {
	s.t.Helper()
	rows, _ := s.db.Query(s.ctx, `SELECT from_state || '->' || to_state FROM history
		WHERE stack_id = $1 AND kind = 'transition' ORDER BY id`, id)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(s.t, err)
	return out
}

// queueDepth is visible plus in-flight messages.
func (s *system) queueDepth(url string) int {
	s.t.Helper()
	out, err := s.sqs.GetQueueAttributes(s.ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	require.NoError(s.t, err)
	total := 0
	for _, v := range out.Attributes {
		n, _ := strconv.Atoi(v)
		total += n
	}
	return total
}

func (s *system) waitDrained() {
	s.t.Helper()
	require.Eventually(s.t, func() bool { return s.queueDepth(s.eventURL) == 0 }, 60*time.Second, 100*time.Millisecond,
		"the event queue never drained")
}

// setQueueAttributes sets attributes of the queue url.
func (s *system) setQueueAttributes(url string, attrs map[string]string) {
	s.t.Helper()
	_, err := s.sqs.SetQueueAttributes(s.ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs})
	require.NoError(s.t, err)
}

// redrivePolicy is a redrive policy to the dead-letter queue dlqURL with
// maxReceiveCount.
func (s *system) redrivePolicy(dlqURL string, maxReceiveCount int) string {
	s.t.Helper()
	out, err := s.sqs.GetQueueAttributes(s.ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(dlqURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	require.NoError(s.t, err)
	raw, err := json.Marshal(map[string]string{"deadLetterTargetArn": out.Attributes[string(types.QueueAttributeNameQueueArn)],
		"maxReceiveCount": strconv.Itoa(maxReceiveCount)})
	require.NoError(s.t, err)
	return string(raw)
}

// drainQueue receives and deletes n messages from url and returns their
// bodies.
func (s *system) drainQueue(url string, n int) []string {
	s.t.Helper()
	var bodies []string
	deadline := time.Now().Add(30 * time.Second)
	for len(bodies) < n {
		require.True(s.t, time.Now().Before(deadline), "got %d of %d messages from %s", len(bodies), n, url)
		resp, err := s.sqs.ReceiveMessage(s.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		require.NoError(s.t, err)
		for _, m := range resp.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			_, err := s.sqs.DeleteMessage(s.ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			require.NoError(s.t, err)
		}
	}
	require.Len(s.t, bodies, n)
	return bodies
}

// redrive moves n messages from the dead-letter queue dlqURL back to url, as an operator's
// redrive does.
func (s *system) redrive(dlqURL, url string, n int) {
	s.t.Helper()
	var msgs []queue.Outgoing
	for _, body := range s.drainQueue(dlqURL, n) {
		msgs = append(msgs, queue.Outgoing{Body: body})
	}
	require.NoError(s.t, queue.Send(s.ctx, s.sqs, url, msgs))
}

func tasksByName(tasks []message.Task) map[string]message.Task {
	out := map[string]message.Task{}
	for _, t := range tasks {
		out[t.Task.Name] = t
	}
	return out
}

// writeMachine writes the machine file name.yml, holding text, into dir (a MACHINES_DIR), and
// returns its path.
func writeMachine(t testing.TB, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name+".yml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

// testdataMachine returns the text of the test machine name (test/testdata/machines/name.yml).
func testdataMachine(t testing.TB, name string) string {
	t.Helper()
	text, err := os.ReadFile(harness.Testdata(t, "machines", name+".yml"))
	require.NoError(t, err)
	return string(text)
}

// machinesDir returns a new MACHINES_DIR holding one machine file, name.yml.
func machinesDir(t testing.TB, name, text string) string {
	t.Helper()
	dir := t.TempDir()
	writeMachine(t, dir, name, text)
	return dir
}

var idMu sync.Mutex
var idN int

func newID() string {
	idMu.Lock()
	defer idMu.Unlock()
	idN++
	return fmt.Sprintf("%d-%d", time.Now().UnixNano(), idN)
}

// TestLifecycleWithDuplicateAndStaleResults is scenario (a): two parallel
// tasks, a duplicated and a stale result, then teardown and removal.
func TestLifecycleWithDuplicateAndStaleResults(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	s.startStateManager(1)

	s.sendEvent("feature-1", "LAUNCH", map[string]any{"machine": "pair", "metadata": map[string]any{"branch": "feature/1"}})
	tasks := tasksByName(s.receiveTasks(2))
	infra, dns := tasks["infra"], tasks["dns"]
	require.NotEmpty(t, infra.TaskRunID)
	require.NotEmpty(t, dns.TaskRunID)
	require.NotEqual(t, infra.TaskRunID, dns.TaskRunID)
	require.Equal(t, "PROVISION", infra.Stack.State)
	require.Equal(t, "feature/1", infra.Stack.Metadata["branch"])
	require.Equal(t, "lambda", infra.Task.Executor)
	require.Equal(t, "infra-fn", infra.Task.Config["name"])

	stale := infra
	stale.TaskRunID = "run-from-an-earlier-visit"
	s.send("feature-1",
		s.result(infra, message.EventTaskCompleted, map[string]any{"outputs": map[string]any{"vpc": "vpc-1"}}),
		s.result(stale, message.EventTaskCompleted, nil),
		s.result(infra, message.EventTaskCompleted, nil), // delivered twice
		s.result(dns, message.EventTaskCompleted, nil),
	)
	st := s.waitState("feature-1", "RUN")
	require.Equal(t, "vpc-1", st.Metadata["vpc"])
	s.waitDrained()
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN"}, s.transitions("feature-1"))
	require.Equal(t, 2, s.historyCount("feature-1", "ignored"))
	require.Equal(t, 1, s.count("SELECT count(*) FROM history WHERE stack_id = 'feature-1' AND kind = 'ignored' AND reason LIKE 'stale result%'"))

	s.sendEvent("feature-1", "DESTROY", nil)
	teardown := s.receiveTasks(1)[0]
	require.Equal(t, "teardown", teardown.Task.Name)
	require.Equal(t, "TEARDOWN", s.stack("feature-1").State)
	s.send("feature-1", s.result(teardown, message.EventTaskCompleted, nil))
	s.waitRemoved("feature-1")

	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, s.transitions("feature-1"))
	require.Equal(t, 1, s.historyCount("feature-1", "removed"))
	require.Equal(t, 0, s.count("SELECT count(*) FROM outbox"))
	require.Equal(t, 0, s.queueDepth(s.eventDLQ))
	s.requireOnlyTLSConnections()
}

// TestBadEventsAreRejectedNotRetried is scenario (c).
func TestBadEventsAreRejectedNotRetried(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{maxReceiveCount: 3})
	s.startStateManager(2)

	s.sendEvent("c-ok", "LAUNCH", map[string]any{"machine": "pair"})
	s.receiveTasks(2)
	s.waitState("c-ok", "PROVISION")

	s.send("c-bad", `{"stackId": "c-bad", "event": `)
	s.send("anon", `{"event":"LAUNCH","machine":"pair"}`)
	s.sendEvent("c-unknown", "LAUNCH", map[string]any{"machine": "no-such-machine"})
	s.sendEvent("c-broken", "LAUNCH", map[string]any{"machine": "broken"})
	s.sendEvent("c-new", "LAUNCH", nil)
	s.sendEvent("c-ok", "DESTROY", nil)
	s.sendEvent("c-ok", "ACCESS", map[string]any{"metadata": map[string]any{"nested": map[string]any{"a": 1}}})
	s.sendEvent("c-ok", "NEXT", nil)
	s.sendEvent("c-ok", "LAUNCH", map[string]any{"machine": "other"})

	require.Eventually(t, func() bool { return s.count("SELECT count(*) FROM rejections") == 9 }, 60*time.Second, 100*time.Millisecond)
	s.waitDrained()
	require.Equal(t, 0, s.queueDepth(s.eventDLQ), "rejected events are acknowledged, not retried into the DLQ")

	reasons := map[string]string{}
	rows, _ := s.db.Query(s.ctx, "SELECT stack_id || ':' || event, reason FROM rejections ORDER BY id")
	for rows.Next() {
		var k, r string
		require.NoError(t, rows.Scan(&k, &r))
		reasons[k] = r
	}
	require.NoError(t, rows.Err())
	require.Contains(t, reasons[":"], "malformed JSON", "a body that does not parse names no stack")
	require.Contains(t, reasons[":LAUNCH"], "stackId is required")
	require.Contains(t, reasons["c-unknown:LAUNCH"], `machine "no-such-machine" cannot be used`)
	require.Contains(t, reasons["c-broken:LAUNCH"], "broken.yml:6:", "validation errors name file and line")
	require.Contains(t, reasons["c-new:LAUNCH"], "names no machine")
	require.Contains(t, reasons["c-ok:DESTROY"], "not allowed in state PROVISION")
	require.Contains(t, reasons["c-ok:ACCESS"], "metadata must be flat")
	require.Contains(t, reasons["c-ok:NEXT"], "cannot be published")
	require.Contains(t, reasons["c-ok:LAUNCH"], `runs machine "pair"`)

	require.Equal(t, 4, s.historyCount("c-ok", "rejected"),
		"rejections of an existing stack are in its history")
	require.Equal(t, "PROVISION", s.stack("c-ok").State)
	for _, id := range []string{"c-bad", "c-unknown", "c-broken", "c-new"} {
		require.Nil(t, s.stack(id), "a rejected first event creates no stack")
	}
}

// TestHostileEventsAreRejectedNotRetried: values that encoding/json accepts but PostgreSQL or SQS
// would refuse on every attempt are rejected at the door with a reason, so none is retried into
// the dead-letter queue and no stack is held up by one.
func TestHostileEventsAreRejectedNotRetried(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{maxReceiveCount: 3})
	s.startStateManager(1)

	// A malformed body longer than the 4 KiB a rejection keeps, whose 4,096th byte falls inside
	// a two-byte character.
	cut := `{"stackId":"h-cut","event":"X` + strings.Repeat("é", 3000)
	require.False(t, utf8.RuneStart(cut[4096]), "the cut falls inside a character")
	s.send("h-cut", cut)
	s.send("h-nul", `{"stackId":"h-nul","event":"LAUNCH","machine":"pair","metadata":{"x":"a\u0000b"}}`)
	s.send("h-long", `{"stackId":"`+strings.Repeat("a", 4000)+`","event":"LAUNCH"}`)
	s.send("h-eventid", `{"stackId":"h-eventid","event":"LAUNCH","machine":"pair","eventId":"`+strings.Repeat("e", 4000)+`"}`)
	s.send("h-huge", `{"stackId":"h-huge","event":"LAUNCH","machine":"pair","metadata":{"x":1e131071,"y":1e131071}}`)
	s.send("h-inf", `{"stackId":"h-inf","event":"LAUNCH","machine":"pair","metadata":{"n":1e1000000}}`)
	s.send("h-dup", `{"stackId":"h-dup","event":"LAUNCH","machine":"pair","StackID":"h-other"}`)
	s.send("not-h-group", `{"stackId":"h-group","event":"LAUNCH","machine":"pair"}`)
	s.sendEvent("h-fine", "LAUNCH", map[string]any{"machine": "pair"})

	require.Eventually(t, func() bool { return s.count("SELECT count(*) FROM rejections") == 8 }, 60*time.Second, 100*time.Millisecond)
	s.waitState("h-fine", "PROVISION")
	s.waitDrained()
	require.Equal(t, 0, s.queueDepth(s.eventDLQ), "nothing is retried into the DLQ")
	for reason, n := range map[string]int{
		"malformed JSON":                                                1,
		"stackId is 4000 characters":                                    1, // the 4,000-character stack id
		"contains a NUL character":                                      1,
		"eventId is 4000 characters":                                    1,
		"number 1e131071 is out of range":                               1,
		"number 1e1000000 is out of range":                              1,
		`unknown field "StackID"`:                                       1,
		`the message group "not-h-group" is not the stack id "h-group"`: 1,
	} {
		require.Equal(t, n, s.count("SELECT count(*) FROM rejections WHERE strpos(reason, $1) > 0", reason), reason)
	}
	require.Equal(t, 0, s.count("SELECT count(*) FROM stacks WHERE id LIKE 'h-%' AND id <> 'h-fine'"), "no hostile event made a stack")
}

// TestDatabaseOutageRetriesAndConverges is scenario (d): the database goes
// away while events flow; they fail, are retried, and apply once it is back.
func TestDatabaseOutageRetriesAndConverges(t *testing.T) {
	t.Parallel()
	srv := harness.NewDatabaseServer(t, harness.TLSOnly(), harness.Durable())
	s := newSystem(t, systemOptions{server: srv}) // the deployed maxReceiveCount: an outage spends no receives
	proc := s.startStateManager(2, "LOG_LEVEL=DEBUG")

	const n = 10
	for i := 0; i < n; i++ {
		s.sendEvent(fmt.Sprintf("a-%d", i), "LAUNCH", map[string]any{"machine": "pair"})
	}
	first := s.receiveTasks(2 * n)

	srv.Stop(t)
	var bodies = map[string][]string{}
	for _, task := range first {
		bodies[task.Stack.ID] = append(bodies[task.Stack.ID], s.result(task, message.EventTaskCompleted, nil))
	}
	for id, b := range bodies {
		s.send(id, b...)
	}
	for i := 0; i < n; i++ {
		s.sendEvent(fmt.Sprintf("b-%d", i), "LAUNCH", map[string]any{"machine": "pair"})
	}
	// Let the state manager fail against the missing database for a while.
	time.Sleep(3 * time.Second)
	srv.Start(t)

	// Task messages are delivered at least once: an outage between publishing
	// and clearing the outbox sends some twice. Answer everything until each
	// b stack's two tasks have been seen.
	seen := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < 2*n {
		require.True(t, time.Now().Before(deadline), "saw %d of %d b tasks", len(seen), 2*n)
		for _, task := range s.pollTasks(1) {
			if strings.HasPrefix(task.Stack.ID, "b-") {
				seen[task.Stack.ID+"/"+task.Task.Name] = true
			}
			s.send(task.Stack.ID, s.result(task, message.EventTaskCompleted, nil))
		}
	}
	for i := 0; i < n; i++ {
		for _, prefix := range []string{"a", "b"} {
			id := fmt.Sprintf("%s-%d", prefix, i)
			s.waitState(id, "RUN")
			require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN"}, s.transitions(id))
		}
	}
	s.waitDrained()
	require.Equal(t, 0, s.queueDepth(s.eventDLQ))
	require.Equal(t, 0, s.count("SELECT count(*) FROM rejections"))
	requireStackLogLines(t, proc.Output())
}

// requireStackLogLines checks the logging contract: every JSON log line that
// concerns a stack names the stack, the event and the outcome.
func requireStackLogLines(t *testing.T, output string) {
	t.Helper()
	checked, retries := 0, 0
	for _, line := range strings.Split(output, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		_, hasStack := rec["stackId"]
		_, hasMessageID := rec["messageId"]
		if !hasStack && !hasMessageID {
			continue
		}
		checked++
		if rec["outcome"] == "retry" {
			retries++
		}
		for _, key := range []string{"stackId", "event", "outcome"} {
			require.Contains(t, rec, key, "log line about a stack lacks %s: %s", key, line)
		}
	}
	require.Positive(t, checked, "no log lines about stacks were seen")
	require.Positive(t, retries, "the outage produced no retry lines")
}

// TestConcurrentWorkersManyStacks is scenario (b): 200 stacks, 8 workers in
// two processes, results shuffled with 10% duplicated.
func TestConcurrentWorkersManyStacks(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	s.startStateManager(4)
	s.startStateManager(4)

	const stacks = 200
	ids := make([]string, stacks)
	var launches []queue.Outgoing
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%03d", i)
		body := fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"pair","metadata":{"n":%d}}`, ids[i], i)
		launches = append(launches, queue.Outgoing{Body: body, GroupID: ids[i], DedupID: newID()})
	}
	require.NoError(t, queue.Send(s.ctx, s.sqs, s.eventURL, launches))

	dups := s.satisfyShuffled(2*stacks, 0.10, func(task message.Task) map[string]any {
		return map[string]any{"outputs": map[string]any{task.Task.Name + "_out": task.Stack.ID}}
	})
	for _, id := range ids {
		st := s.waitState(id, "RUN")
		require.Equal(t, id, st.Metadata["infra_out"], "no output lost")
		require.Equal(t, id, st.Metadata["dns_out"], "no output lost")
	}

	var destroys []queue.Outgoing
	for _, id := range ids {
		destroys = append(destroys, queue.Outgoing{Body: fmt.Sprintf(`{"stackId":%q,"event":"DESTROY"}`, id), GroupID: id, DedupID: newID()})
	}
	require.NoError(t, queue.Send(s.ctx, s.sqs, s.eventURL, destroys))
	dups += s.satisfyShuffled(stacks, 0.10, nil)
	for _, id := range ids {
		s.waitRemoved(id)
	}
	s.waitDrained()

	want := []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}
	for _, id := range ids {
		require.Equal(t, want, s.transitions(id), "stack %s", id)
	}
	require.Equal(t, 2*stacks, s.count("SELECT count(*) FROM history WHERE kind = 'event' AND event = 'NEXT'"),
		"NEXT fired exactly once per state visit")
	require.Equal(t, dups, s.count("SELECT count(*) FROM history WHERE kind = 'ignored'"), "each duplicate ignored once")
	require.Equal(t, 0, s.count("SELECT count(*) FROM stacks"))
	require.Equal(t, 0, s.count("SELECT count(*) FROM outbox"))
	require.Equal(t, 0, s.count("SELECT count(*) FROM rejections"))
	t.Logf("%d stacks, %d duplicated results", stacks, dups)
}

// satisfyShuffled plays the satisfier for n task messages: results go back in
// shuffled batches, a share of them twice. It returns how many were doubled.
func (s *system) satisfyShuffled(n int, dupShare float64, outputs func(message.Task) map[string]any) int {
	s.t.Helper()
	got, dups := 0, 0
	deadline := time.Now().Add(120 * time.Second)
	for got < n {
		require.True(s.t, time.Now().Before(deadline), "timed out after %d of %d tasks", got, n)
		var batch []message.Task
		for len(batch) < 30 {
			more := s.pollTasks(1)
			if len(more) == 0 {
				break
			}
			batch = append(batch, more...)
		}
		got += len(batch)
		var out []queue.Outgoing
		for i, j := range shuffled(len(batch), got) {
			task := batch[j]
			var extra map[string]any
			if outputs != nil {
				extra = outputs(task)
			}
			body := s.result(task, message.EventTaskCompleted, extra)
			out = append(out, queue.Outgoing{Body: body, GroupID: task.Stack.ID, DedupID: newID()})
			if float64((got*7+i*13)%100) < dupShare*100 {
				out = append(out, queue.Outgoing{Body: body, GroupID: task.Stack.ID, DedupID: newID()})
				dups++
			}
		}
		require.NoError(s.t, queue.Send(s.ctx, s.sqs, s.eventURL, out))
	}
	return dups
}

// shuffled returns a deterministic permutation of 0..n-1 for a seed.
func shuffled(n, seed int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	x := uint64(seed)*2654435761 + 1
	for i := n - 1; i > 0; i-- {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// TestUnsendableTaskMessageIsParkedAndFailsItsTask: a task whose message SQS would refuse (its
// config makes it larger than a queue message) is parked with the reason instead of being retried
// or re-sent by every sweep, and its run is settled as TASK_ERROR so the stack does not wait for a
// task that will never run. The other task of the same state is dispatched normally.
func TestUnsendableTaskMessageIsParkedAndFailsItsTask(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{maxReceiveCount: 3})
	big := harness.Lifecycle{Up: []string{"huge", "small"}, Tasks: fmt.Sprintf(`
  huge: {executor: lambda, config: {name: huge-fn, args: {blob: %q}}}
  small: {executor: lambda, config: {name: small-fn}}
`, strings.Repeat("x", queue.MaxMessageBytes))}.YAML()
	proc := s.startStateManager(1, "MACHINES_DIR="+machinesDir(t, "big", big), "SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=1s")

	s.sendEvent("parked-1", "LAUNCH", map[string]any{"machine": "big"})
	tasks := s.receiveTasks(1)
	require.Equal(t, "small", tasks[0].Task.Name, "the task that fits is sent")
	require.Eventually(t, func() bool {
		return s.count("SELECT count(*) FROM history WHERE stack_id = 'parked-1' AND kind = 'task-failed' AND task = 'huge'") == 1
	}, 30*time.Second, 100*time.Millisecond, "the parked task's run is settled as failed")
	require.Equal(t, 1, s.count("SELECT count(*) FROM parked_outbox WHERE stack_id = 'parked-1' AND reason LIKE '%SQS accepts at most 262144%'"))
	require.Equal(t, 1, s.historyCount("parked-1", "parked"))
	require.Equal(t, 1, s.count("SELECT count(*) FROM history WHERE stack_id = 'parked-1' AND kind = 'task-failed' AND reason LIKE 'the task did not run: the task message can never be sent%'"))
	require.Contains(t, proc.Output(), `"`+metrics.OutboxParked+`"`)
	// Sweeps come and go: nothing is re-sent, nothing is left.
	time.Sleep(3 * time.Second)
	require.Equal(t, 0, s.count("SELECT count(*) FROM outbox"))
	require.Empty(t, s.pollTasks(1), "the parked message is never sent")
	require.Equal(t, "PROVISION", s.stack("parked-1").State, "the stack waits on its failed task, as a failed task makes it")
}

// TestForgedResultsAreRejected: with a result signing key, a TASK_COMPLETED carrying a current run
// id settles nothing unless the satisfier's key signed it. A publisher (who can send events but
// cannot read the key) cannot end a destroy early or inject outputs; the forgery is recorded.
func TestForgedResultsAreRejected(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	key := strings.Repeat("k", 40)
	s.startStateManager(1, "RESULT_SIGNING_KEY="+key)
	s.sendEvent("forged-1", "LAUNCH", map[string]any{"machine": "pair"})
	tasks := tasksByName(s.receiveTasks(2))
	infra := tasks["infra"]

	sendResult := func(body string, attrs map[string]string) {
		require.NoError(t, queue.Send(s.ctx, s.sqs, s.eventURL, []queue.Outgoing{{Body: body, GroupID: "forged-1", DedupID: newID(), Attributes: attrs}}))
	}
	body := s.result(infra, message.EventTaskCompleted, map[string]any{"outputs": map[string]any{"admin": "attacker"}})
	own, err := signing.NewKey(key)
	require.NoError(t, err)
	other, err := signing.NewKey(strings.Repeat("o", 40))
	require.NoError(t, err)
	sendResult(body, nil)
	sendResult(body, map[string]string{signing.Attribute: other.Sign(body)})
	sendResult(body, map[string]string{signing.Attribute: own.Sign(body + " ")})
	require.Eventually(t, func() bool { return s.count("SELECT count(*) FROM rejections WHERE stack_id = 'forged-1'") == 3 },
		30*time.Second, 100*time.Millisecond)
	require.Equal(t, 3, s.count("SELECT count(*) FROM history WHERE stack_id = 'forged-1' AND kind = 'rejected' AND reason LIKE '%is not signed by this deployment''s satisfier%'"))
	st := s.stack("forged-1")
	require.Equal(t, message.TaskPending, tasksOf(st)["infra"].Status, "no forgery settled the task")
	require.NotContains(t, st.Metadata, "admin")

	// A result in CloudSeam's shape, naming the task without a run id, needs the signature just
	// the same: it could settle the pending run as well.
	byName := `{"event":"TASK_COMPLETED","stackId":"forged-1","task":{"name":"infra"},"outputs":{"admin":"attacker"}}`
	sendResult(byName, nil)
	require.Eventually(t, func() bool { return s.count("SELECT count(*) FROM rejections WHERE stack_id = 'forged-1'") == 4 },
		30*time.Second, 100*time.Millisecond)
	require.Equal(t, 1, s.count("SELECT count(*) FROM history WHERE stack_id = 'forged-1' AND kind = 'rejected' AND reason LIKE '%for task infra is not signed%'"))
	require.Equal(t, message.TaskPending, tasksOf(s.stack("forged-1"))["infra"].Status)

	// The satisfier's own signature settles it.
	sendResult(body, map[string]string{signing.Attribute: own.Sign(body)})
	s.waitTask("forged-1", "infra", message.TaskCompleted)

	// A signed by-name result (an operator holding the key, `stackseam complete`) settles the
	// other task's pending run, and the history says it was settled by name.
	seed := `{"event":"TASK_COMPLETED","stackId":"forged-1","task":{"name":"dns"}}`
	sendResult(seed, map[string]string{signing.Attribute: own.Sign(seed)})
	require.Eventually(t, func() bool {
		return s.count("SELECT count(*) FROM history WHERE stack_id = 'forged-1' AND kind = 'task-completed' AND task = 'dns' AND (detail->>'byTaskName')::boolean") == 1
	}, 30*time.Second, 100*time.Millisecond)
}

func tasksOf(st *engine.Stack) map[string]message.StackTask {
	out := map[string]message.StackTask{}
	for _, t := range st.Tasks {
		out[t.Name] = t
	}
	return out
}
