package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// topic creates an SNS topic and returns its ARN.
func (s *system) topic() string {
	s.t.Helper()
	client := sns.NewFromConfig(harness.AWSConfig(s.t))
	topic, err := client.CreateTopic(s.ctx, &sns.CreateTopicInput{Name: aws.String("notes-" + strings.ReplaceAll(newID(), "-", ""))})
	require.NoError(s.t, err)
	return aws.ToString(topic.TopicArn)
}

// subscribe subscribes a new queue to topicARN, with an optional filter
// policy on message attributes, and returns the queue URL.
func (s *system) subscribe(topicARN, filterPolicy string) string {
	s.t.Helper()
	queueURL, _ := harness.CreateQueue(s.t, "subscriber", false, 10)
	attrs, err := s.sqs.GetQueueAttributes(s.ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(s.t, err)
	sub := &sns.SubscribeInput{TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}
	if filterPolicy != "" {
		sub.Attributes = map[string]string{"FilterPolicy": filterPolicy}
	}
	_, err = sns.NewFromConfig(harness.AWSConfig(s.t)).Subscribe(s.ctx, sub)
	require.NoError(s.t, err)
	return queueURL
}

// notifications reads what SNS delivered to a subscriber queue, unwrapping
// the SNS envelope and checking the message attributes match the body.
func (s *system) notifications(queueURL string, n int) []message.Notification {
	s.t.Helper()
	var out []message.Notification
	for _, body := range s.drainQueue(queueURL, n) {
		var env struct {
			Message           string
			MessageAttributes map[string]struct{ Type, Value string }
		}
		require.NoError(s.t, json.Unmarshal([]byte(body), &env))
		var note message.Notification
		require.NoError(s.t, json.Unmarshal([]byte(env.Message), &note))
		require.Equal(s.t, note.StackID, env.MessageAttributes["stackId"].Value)
		require.Equal(s.t, note.Kind, env.MessageAttributes["kind"].Value)
		require.Equal(s.t, note.State, env.MessageAttributes["state"].Value)
		require.Equal(s.t, note.Machine, env.MessageAttributes["machine"].Value)
		out = append(out, note)
	}
	return out
}

// TestNotificationsFanOutThroughSNS: transitions, a task failure and the
// removal reach an SNS subscriber with filterable attributes.
func TestNotificationsFanOutThroughSNS(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	topic := s.topic()
	all := s.subscribe(topic, "")
	failuresOnly := s.subscribe(topic, `{"kind":["task-failed"]}`)
	proc := s.startStateManager(1, "NOTIFICATION_TOPIC_ARN="+topic)

	s.sendEvent("note-1", "LAUNCH", map[string]any{"machine": "pair"})
	tasks := tasksByName(s.receiveTasks(2))
	s.send("note-1",
		s.result(tasks["infra"], message.EventTaskError, map[string]any{"description": "quota exceeded"}),
		s.result(tasks["dns"], message.EventTaskCompleted, nil),
		`{"stackId":"note-1","event":"RETRY_FAILED_TASKS"}`)
	retried := s.receiveTasks(1)[0]
	s.send("note-1", s.result(retried, message.EventTaskCompleted, nil))
	s.waitState("note-1", "RUN")
	s.sendEvent("note-1", "DESTROY", nil)
	s.send("note-1", s.result(s.receiveTasks(1)[0], message.EventTaskCompleted, nil))
	s.waitRemoved("note-1")

	var got []string
	for _, n := range s.notifications(all, 6) {
		got = append(got, n.Kind+":"+n.State)
	}
	require.Equal(t, []string{"transition:PROVISION", "task-failed:PROVISION", "transition:RUN",
		"transition:TEARDOWN", "transition:DESTROYED", "removed:DESTROYED"}, got)

	failures := s.notifications(failuresOnly, 1)
	require.Equal(t, "infra", failures[0].Task)
	require.Equal(t, "quota exceeded", failures[0].Description)
	require.Equal(t, 0, s.queueDepth(failuresOnly), "the filter policy kept every other kind away")
	require.Equal(t, 0, s.count("SELECT count(*) FROM outbox"), "notifications left the outbox")

	requireMetrics(t, proc.Output())
}

// requireMetrics checks the state manager's EMF lines: events by outcome and
// type, transitions, task results by executor, and outbox lag.
func requireMetrics(t *testing.T, output string) {
	t.Helper()
	requireEMFMetrics(t, output, "statemanager", []string{"Outcome", "Event", "Executor", "Result", "Destination"},
		"Events Outcome=applied Event=LAUNCH",
		"Events Outcome=applied Event=TASK_ERROR",
		"Transitions",
		"TaskResults Executor=lambda Result=failed",
		"TaskDuration Executor=lambda Result=completed",
		"OutboxLag Destination=task",
		"OutboxLag Destination=notification",
	)
}

// requireEMFMetrics checks that function wrote, among its output's EMF lines, each metric of
// want, named "Metric Dim=value ..." with the dimensions of dims the record has, in that order.
// Every EMF line must be stackseam's, of function, and hold the value of each metric it declares.
func requireEMFMetrics(t *testing.T, output, function string, dims []string, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(output, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["_aws"] == nil {
			continue
		}
		cw := rec["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
		require.Equal(t, "stackseam", cw["Namespace"])
		require.Equal(t, function, rec["Function"])
		for _, m := range cw["Metrics"].([]any) {
			name := m.(map[string]any)["Name"].(string)
			require.Contains(t, rec, name, "an EMF record holds the value of each metric it declares")
			key := name
			for _, dim := range dims {
				if v, ok := rec[dim]; ok {
					key += " " + dim + "=" + v.(string)
				}
			}
			seen[key] = true
		}
	}
	for _, w := range want {
		require.True(t, seen[w], "no %s metric %q among %v", function, w, seen)
	}
}

// TestIdleStackIsDestroyedAfterItsTTL: a stack left idle in a state with a
// ttl receives the ttl's event from the sweep; history says where it came from.
func TestIdleStackIsDestroyedAfterItsTTL(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	s.startStateManager(1, "SWEEP_INTERVAL=300ms")

	s.sendEvent("ttl-1", "LAUNCH", map[string]any{"machine": "ttl"})
	s.waitState("ttl-1", "RUN")
	s.waitRemoved("ttl-1")
	require.Equal(t, []string{"INIT->RUN", "RUN->GONE"}, s.transitions("ttl-1"))
	var idle float64
	require.NoError(t, s.db.QueryRow(s.ctx, `SELECT extract(epoch FROM t.at - r.at) FROM history r, history t
		WHERE r.stack_id = 'ttl-1' AND t.stack_id = 'ttl-1' AND r.to_state = 'RUN' AND t.to_state = 'GONE'`).Scan(&idle))
	require.GreaterOrEqual(t, idle, 2.0, "the stack stayed idle for at least its ttl")
	require.Equal(t, 1, s.count(`SELECT count(*) FROM processed_events WHERE key LIKE 'event:ttl-1:ttl-%'`),
		"the DESTROY came from the ttl sweep, once")
}

// TestSweepPrunesProcessedEventsAndRejections runs the state manager binary with its retention
// settings: the sweep deletes processed event keys and rejections past their retention, keeps
// recent ones, and keeps the history.
func TestSweepPrunesProcessedEventsAndRejections(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	s.startStateManager(1, "SWEEP_INTERVAL=1s", "PROCESSED_EVENTS_RETENTION=480h", "REJECTIONS_RETENTION=240h")

	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := s.db.Exec(s.ctx, sql, args...)
		require.NoError(t, err)
	}
	now := time.Now()
	exec(`INSERT INTO processed_events (key, stack_id, processed_at) VALUES
		('event:s:old', 's', $1), ('event:s:recent', 's', $2)`, now.Add(-21*24*time.Hour), now.Add(-19*24*time.Hour))
	exec(`INSERT INTO rejections (at, message_id, reason) VALUES ($1, 'old', 'malformed JSON'), ($2, 'recent', 'malformed JSON')`,
		now.Add(-11*24*time.Hour), now.Add(-9*24*time.Hour))
	exec(`INSERT INTO history (stack_id, at, kind, event) VALUES ('s', $1, 'rejected', 'X')`, now.Add(-400*24*time.Hour))

	require.Eventually(t, func() bool {
		return s.count("SELECT count(*) FROM processed_events WHERE key = 'event:s:old'")+
			s.count("SELECT count(*) FROM rejections WHERE message_id = 'old'") == 0
	}, 30*time.Second, 100*time.Millisecond, "the sweep prunes past the configured retention")
	require.Equal(t, 1, s.count("SELECT count(*) FROM processed_events WHERE key = 'event:s:recent'"))
	require.Equal(t, 1, s.count("SELECT count(*) FROM rejections WHERE message_id = 'recent'"))
	require.Equal(t, 1, s.count("SELECT count(*) FROM history WHERE stack_id = 's'"), "history is kept")
}

// TestTooShortEventKeyRetentionIsRefused: a retention shorter than the event queue's would let a
// redelivered message be applied twice; the state manager refuses to start with it.
func TestTooShortEventKeyRetentionIsRefused(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	proc := s.launchStateManager("PROCESSED_EVENTS_RETENTION=24h")
	require.Error(t, proc.Wait(), "the state manager does not start")
	require.Contains(t, proc.Output(), "PROCESSED_EVENTS_RETENTION=24h0m0s is shorter than the event queue's retention")
}
