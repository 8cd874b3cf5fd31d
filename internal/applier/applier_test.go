package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// outlet records what it is given and answers with fail (nil: everything sent).
type outlet struct {
	mu   sync.Mutex
	sent []store.OutboxMessage
	fail func(rows []store.OutboxMessage) error
}

func (o *outlet) send(_ context.Context, rows []store.OutboxMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var err error
	if o.fail != nil {
		err = o.fail(rows)
	}
	var failed map[int]bool
	var se *queue.SendError
	if errors.As(err, &se) {
		failed = map[int]bool{}
		for _, f := range se.Failures {
			failed[f.Index] = true
		}
	} else if err != nil {
		return err
	}
	for i, r := range rows {
		if !failed[i] {
			o.sent = append(o.sent, r)
		}
	}
	return err
}

type bundle struct {
	app    *Applier
	store  *store.Store
	tasks  *outlet
	events *outlet
}

func setup(t testing.TB) *bundle {
	t.Helper()
	st, err := store.Open(t.Context(), store.Config{DatabaseURL: harness.DatabaseURL(t)})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(t.Context())
	require.NoError(t, err)
	dir := t.TempDir()
	pair := []byte(harness.Lifecycle{
		Up: []string{"infra", "dns"}, Terminal: "GONE",
		Tasks: `
  infra: {executor: lambda, config: {name: infra-fn}}
  dns: {executor: lambda, config: {name: dns-fn}}
`,
	}.YAML())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pair.yml"), pair, 0o644))
	// pair2, the same machine under another name (for tests that make one machine unavailable).
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pair2.yml"), pair, 0o644))
	b := &bundle{store: st, tasks: &outlet{}, events: &outlet{}}
	b.app = &Applier{Store: st, Machines: catalog.NewDir(dir, catalog.Options{}),
		Outlets: map[string]Outlet{store.DestinationTask: b.tasks.send, store.DestinationEvent: b.events.send}}
	return b
}

var messageIDs sync.Map

func (b *bundle) handle(t *testing.T, group, body string, attrs map[string]string) error {
	t.Helper()
	n, _ := messageIDs.LoadOrStore(t.Name(), new(int))
	id := n.(*int)
	*id++
	return b.app.Handle(t.Context(), queue.Message{ID: fmt.Sprintf("%s-%d", t.Name(), *id), Body: body, GroupID: group, Attributes: attrs})
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.store.Pool().QueryRow(t.Context(), sql, args...).Scan(&n))
	return n
}

func TestHandleAppliesAndPublishes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.handle(t, "s1", `{"stackId":"s1","event":"LAUNCH","machine":"pair"}`, nil))
	require.Len(t, b.tasks.sent, 2, "both tasks are published")
	require.Zero(t, b.count(t, "SELECT count(*) FROM outbox"), "and deleted from the outbox")
	st, err := b.store.GetStack(t.Context(), "s1")
	require.NoError(t, err)
	require.Equal(t, "PROVISION", st.State)
}

func TestHandleRejectsWithoutRetrying(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct{ group, body, reason string }{
		{"s2", `{"stackId":"s2","event":"LAUNCH","machine":"none"}`, "none"},
		{"other", `{"stackId":"s2","event":"LAUNCH","machine":"pair"}`, `message group "other" is not the stack id "s2"`},
		{"s2", `{"stackId":"s2","event":"LAUNCH","machine":"pair","metadata":{"x":"\u0000"}}`, "NUL"},
	} {
		require.NoError(t, b.handle(t, tc.group, tc.body, nil), "a rejection is done, not retried")
		require.Equal(t, 1, b.count(t, "SELECT count(*) FROM rejections WHERE strpos(reason, $1) > 0", tc.reason), tc.reason)
	}
	require.Empty(t, b.tasks.sent)
}

func TestHandleAcceptsOnlySignedResultsWhenAKeyIsSet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, err := signing.NewKey(strings.Repeat("s", 32))
	require.NoError(t, err)
	b.app.ResultKey = signing.Fixed(key)
	require.NoError(t, b.handle(t, "s3", `{"stackId":"s3","event":"LAUNCH","machine":"pair"}`, nil))
	var task message.Task
	require.NoError(t, json.Unmarshal([]byte(b.tasks.sent[0].Body), &task))
	result := fmt.Sprintf(`{"event":"TASK_COMPLETED","stackId":"s3","taskRunId":%q,"task":{"name":%q,"executor":"lambda","config":{}}}`,
		task.TaskRunID, task.Task.Name)

	require.NoError(t, b.handle(t, "s3", result, nil))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM rejections WHERE strpos(reason, 'is not signed') > 0"))
	require.NoError(t, b.handle(t, "s3", result, map[string]string{signing.Attribute: key.Sign(result)}))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM history WHERE stack_id = 's3' AND kind = 'task-completed'"))

	// The state manager's own eventIds (time-to-live) are reserved: a publisher cannot claim one.
	claim := `{"stackId":"s3","event":"DESTROY","eventId":"ttl-9"}`
	require.NoError(t, b.handle(t, "s3", claim, nil))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM rejections WHERE strpos(reason, 'reserved for the state manager''s own events') > 0"))
	require.Zero(t, b.count(t, "SELECT count(*) FROM processed_events WHERE key = 'event:s3:ttl-9'"), "the key stays free for the real event")
	signed := `{"stackId":"s3","event":"DESTROY","eventId":"ttl-10"}`
	require.NoError(t, b.handle(t, "s3", signed, map[string]string{signing.Attribute: key.Sign(signed)}))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM processed_events WHERE key = 'event:s3:ttl-10'"), "signed, it is the state manager's own")
}

// flush deletes exactly the rows that went out; a row the outlet refuses for good is parked (its
// task failed by a TASK_ERROR written in its place); a row that failed for a transient reason
// stays for the retry.
func TestFlushDeletesWhatWasSentAndParksWhatNeverWillBe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tasks.fail = func(rows []store.OutboxMessage) error {
		return &queue.SendError{Failures: []queue.SendFailure{
			{Index: 0, Err: errors.New("the message is too large"), Permanent: true},
			{Index: 1, Err: errors.New("throttled")},
		}}
	}
	err := b.handle(t, "s4", `{"stackId":"s4","event":"LAUNCH","machine":"pair"}`, nil)
	require.NoError(t, err, "the event is applied; a message not sent yet waits in the outbox")
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM parked_outbox WHERE stack_id = 's4'"))
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM outbox WHERE stack_id = 's4' AND destination = 'task'"),
		"the throttled task message stays for the retry")
	require.Len(t, b.events.sent, 1, "the parked task's TASK_ERROR went to the event queue")
	var res message.Event
	require.NoError(t, json.Unmarshal([]byte(b.events.sent[0].Body), &res))
	require.Equal(t, message.EventTaskError, res.Event)
	require.Contains(t, res.Description, "the task did not run: the task message can never be sent: the message is too large")

	// The sweep (or the stack's next event) sends what is left, once.
	b.tasks.fail = nil
	require.NoError(t, b.app.flush(t.Context(), mustStale(t, b)))
	require.Len(t, b.tasks.sent, 1)
	require.Zero(t, b.count(t, "SELECT count(*) FROM outbox"))
}

func mustStale(t *testing.T, b *bundle) []store.OutboxMessage {
	t.Helper()
	rows, err := b.store.StaleOutbox(t.Context(), 0, 100)
	require.NoError(t, err)
	return rows
}
