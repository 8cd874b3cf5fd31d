package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

type testBundle struct {
	ctx   context.Context
	store *Store
	url   string
	m     *machine.Machine
}

// setup gives each test its own migrated database.
func setup(t testing.TB) *testBundle {
	t.Helper()
	ctx := context.Background()
	url := harness.DatabaseURL(t)
	st, err := Open(ctx, Config{DatabaseURL: url, MaxConns: 10})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx)
	require.NoError(t, err)
	adv := func(s string) []machine.Action { return []machine.Action{{Kind: machine.ActionAdvance, State: s}} }
	m := &machine.Machine{
		Name:   "env",
		Events: []string{"LAUNCH", "TOUCH", "DESTROY"},
		States: map[string]*machine.State{
			"INIT":    {Name: "INIT", On: map[string][]machine.Action{"LAUNCH": adv("BUILD")}},
			"BUILD":   {Name: "BUILD", Tasks: []string{"a", "b"}, On: map[string][]machine.Action{"NEXT": adv("RUN")}},
			"RUN":     {Name: "RUN", On: map[string][]machine.Action{"TOUCH": {{Kind: machine.ActionNoop}}, "DESTROY": adv("GONE")}},
			"GONE":    {Name: "GONE", Terminal: true},
			"UNUSED1": {Name: "UNUSED1"},
		},
		Tasks: map[string]*machine.Task{
			"a": {Name: "a", Executor: "lambda", Config: map[string]any{"name": "fa"}},
			"b": {Name: "b", Executor: "lambda", Config: map[string]any{"name": "fb"}},
		},
	}
	return &testBundle{ctx: ctx, store: st, url: url, m: m}
}

var runCounter sync.Map

func (b *testBundle) apply(t *testing.T, key string, ev message.Event) ApplyResult {
	t.Helper()
	res, err := b.store.Apply(b.ctx, ApplyInput{Key: key, StackID: ev.StackID, MessageID: key, Event: ev},
		func(cur *engine.Stack) (engine.Decision, error) {
			return engine.Apply(engine.Input{Stack: cur, Machine: b.m, Event: ev, Now: time.Now().UTC(),
				NewRunID: func() string {
					n, _ := runCounter.LoadOrStore(ev.StackID, new(int))
					p := n.(*int)
					*p++
					return fmt.Sprintf("%s-run-%d-%d", ev.StackID, *p, time.Now().UnixNano())
				}}), nil
		})
	require.NoError(t, err)
	return res
}

func (b *testBundle) historyKinds(t *testing.T, stackID string) []string {
	t.Helper()
	rows, _ := b.store.Pool().Query(b.ctx, "SELECT kind FROM history WHERE stack_id = $1 ORDER BY id", stackID)
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return kinds
}

func (b *testBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.store.Pool().QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

func TestMigrateConcurrentlyAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := harness.DatabaseURL(t)
	var wg sync.WaitGroup
	results := make([][]int, 6)
	errs := make([]error, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := Open(ctx, Config{DatabaseURL: url})
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			results[i], errs[i] = st.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range results {
		require.NoError(t, errs[i])
		total += len(results[i])
	}
	all, err := Migrations()
	require.NoError(t, err)
	require.Equal(t, len(all), total, "each migration applied by exactly one process")

	st, err := Open(ctx, Config{DatabaseURL: url})
	require.NoError(t, err)
	defer st.Close()
	again, err := st.Migrate(ctx)
	require.NoError(t, err)
	require.Empty(t, again)
}

func TestApplyStoresStackHistoryAndOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.apply(t, "k1", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env",
		Metadata: message.Metadata{"big": json.Number("12345678901234567890"), "flag": true}})
	require.False(t, res.Duplicate)
	require.Equal(t, engine.Applied, res.Decision.Outcome)
	require.Equal(t, []string{DestinationTask, DestinationTask, DestinationNotification}, destinations(res.Outbox))

	var task message.Task
	require.NoError(t, json.Unmarshal([]byte(res.Outbox[0].Body), &task))
	require.Equal(t, "s1", task.Stack.ID)
	require.Equal(t, "BUILD", task.Stack.State)

	got, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, "BUILD", got.State)
	require.Equal(t, json.Number("12345678901234567890"), got.Metadata["big"], "large numbers survive the round trip")
	require.Len(t, got.Tasks, 2)
	require.Equal(t, message.TaskPending, got.Tasks[0].Status)
	require.Equal(t, []string{"created", "event", "transition", "task-dispatched", "task-dispatched"}, b.historyKinds(t, "s1"))

	// Redelivery of the same message: nothing changes, the unsent outbox comes back.
	dup := b.apply(t, "k1", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	require.True(t, dup.Duplicate)
	require.Len(t, dup.Outbox, 3)
	require.Equal(t, res.Outbox, dup.Outbox, "the unsent rows read back (as JSON) are the rows written, field for field")
	require.Len(t, b.historyKinds(t, "s1"), 5)

	ids := []int64{res.Outbox[0].ID, res.Outbox[1].ID, res.Outbox[2].ID}
	require.NoError(t, b.store.DeleteOutbox(b.ctx, ids))
	require.Equal(t, 0, b.count(t, "SELECT count(*) FROM outbox"))

	// Both results: NEXT fires, one transition, then DESTROY removes the stack.
	for i, tk := range got.Tasks {
		b.apply(t, fmt.Sprintf("r%d", i), message.Event{StackID: "s1", Event: message.EventTaskCompleted, TaskRunID: tk.RunID})
	}
	after, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, "RUN", after.State)
	res = b.apply(t, "k2", message.Event{StackID: "s1", Event: "DESTROY"})
	require.True(t, res.Decision.Removed)
	gone, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	require.Nil(t, gone)
	kinds := b.historyKinds(t, "s1")
	require.Equal(t, "removed", kinds[len(kinds)-1], "history outlives the stack")
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM history WHERE stack_id = 's1' AND kind = 'transition'"))
}

func TestRejectionsAreRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "k1", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})

	res := b.apply(t, "k2", message.Event{StackID: "s1", Event: "DESTROY"})
	require.Equal(t, engine.Rejected, res.Decision.Outcome)
	require.Equal(t, 1, b.count(t, "SELECT count(*) FROM rejections WHERE stack_id = 's1' AND reason LIKE '%not allowed in state BUILD%'"))
	require.Contains(t, b.historyKinds(t, "s1"), "rejected")

	// A message that does not even parse, naming an existing stack and none.
	for _, r := range []Rejection{
		{Key: "m1", MessageID: "m1", StackID: "s1", Event: "LAUNCH", Reason: "metadata.x is an object", Body: `{"stackId":"s1"}`},
		{Key: "m2", MessageID: "m2", Reason: "malformed JSON", Body: `{`},
		{Key: "m2", MessageID: "m2", Reason: "malformed JSON", Body: `{`}, // redelivered
	} {
		require.NoError(t, b.store.RecordRejection(b.ctx, r))
	}
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM rejections"))
	require.Equal(t, 2, b.count(t, "SELECT count(*) FROM history WHERE stack_id = 's1' AND kind = 'rejected'"))
}

// TestConcurrentAppliesDoNotLoseUpdates runs many events for one stack at
// once; the stack lock must serialise them.
func TestConcurrentAppliesDoNotLoseUpdates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "launch", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	cur, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	for _, tk := range cur.Tasks {
		b.apply(t, "done-"+tk.RunID, message.Event{StackID: "s1", Event: message.EventTaskCompleted, TaskRunID: tk.RunID})
	}
	const n = 40
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.apply(t, fmt.Sprintf("touch-%d", i), message.Event{StackID: "s1", Event: "TOUCH",
				Metadata: message.Metadata{fmt.Sprintf("k%d", i): "v"}})
		}()
	}
	wg.Wait()
	got, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	require.Len(t, got.Metadata, n, "every concurrent metadata merge survived")
	require.Equal(t, int64(3+n), got.Version)
}

func TestFailedDecisionRollsBackAndFreesTheConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := harness.DatabaseURL(t)
	st, err := Open(ctx, Config{DatabaseURL: url, MaxConns: 1})
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Migrate(ctx)
	require.NoError(t, err)

	boom := errors.New("machine source down")
	_, err = st.Apply(ctx, ApplyInput{Key: "k", StackID: "s"}, func(*engine.Stack) (engine.Decision, error) {
		return engine.Decision{}, boom
	})
	require.ErrorIs(t, err, boom)

	// The only connection must be usable again and outside any transaction.
	var processed int
	require.NoError(t, st.Pool().QueryRow(ctx, "SELECT count(*) FROM processed_events").Scan(&processed))
	require.Equal(t, 0, processed)
	conn, err := st.Pool().Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	require.Equal(t, byte('I'), conn.Conn().PgConn().TxStatus(), "the connection is idle, not in a transaction")
}

func TestStaleOutboxFindsAbandonedRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "k1", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	rows, err := b.store.StaleOutbox(b.ctx, time.Hour, 10)
	require.NoError(t, err)
	require.Empty(t, rows)
	rows, err = b.store.StaleOutbox(b.ctx, -time.Second, 10)
	require.NoError(t, err)
	require.Len(t, rows, 3)
}

func destinations(rows []OutboxMessage) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Destination
	}
	return out
}

func TestEnqueueExpiredSendsOncePerIdleVisit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "k1", message.Event{StackID: "idle", Event: "LAUNCH", Machine: "env"})
	b.apply(t, "k2", message.Event{StackID: "busy", Event: "LAUNCH", Machine: "env"})
	future := time.Now().Add(time.Hour)

	rows, err := b.store.EnqueueExpired(b.ctx, "env", "BUILD", "DESTROY", time.Now().Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, rows, "nothing has been idle for an hour")

	rows, err = b.store.EnqueueExpired(b.ctx, "env", "BUILD", "DESTROY", future, 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"idle", "busy"}, []string{rows[0].StackID, rows[1].StackID})
	var ev message.Event
	require.NoError(t, json.Unmarshal([]byte(rows[0].Body), &ev))
	require.Equal(t, "DESTROY", ev.Event)
	require.NotNil(t, ev.IfVersion)
	require.Equal(t, fmt.Sprintf("ttl-%d", *ev.IfVersion), ev.EventID)
	require.Equal(t, DestinationEvent, rows[0].Destination)

	again, err := b.store.EnqueueExpired(b.ctx, "env", "BUILD", "DESTROY", future, 10)
	require.NoError(t, err)
	require.Empty(t, again, "one idle visit is enqueued once")

	// Activity makes a new visit: it may expire again later.
	st, err := b.store.GetStack(b.ctx, "busy")
	require.NoError(t, err)
	b.apply(t, "k3", message.Event{StackID: "busy", Event: message.EventTaskCompleted, TaskRunID: st.Tasks[0].RunID})
	again, err = b.store.EnqueueExpired(b.ctx, "env", "BUILD", "DESTROY", future, 10)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, "busy", again[0].StackID)
}

func TestStacksRecordTheMachineVersionTheyRanOn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.m.Hash, b.m.Body = "hash-1", []byte("version: 1 # first")
	b.apply(t, "v1", message.Event{StackID: "v", Event: "LAUNCH", Machine: "env"})
	got, err := b.store.GetStack(b.ctx, "v")
	require.NoError(t, err)
	require.Equal(t, "hash-1", got.MachineHash)
	name, body, err := b.store.MachineVersion(b.ctx, "hash-1")
	require.NoError(t, err)
	require.Equal(t, "env", name)
	require.Equal(t, b.m.Body, body)

	// A second version: the stack moves to it, and its body is stored beside the first.
	b.m.Hash, b.m.Body = "hash-2", []byte("version: 1 # second")
	b.apply(t, "v2", message.Event{StackID: "v", Event: message.EventRetryPendingTasks})
	got, err = b.store.GetStack(b.ctx, "v")
	require.NoError(t, err)
	require.Equal(t, "hash-2", got.MachineHash)
	require.Equal(t, 2, b.count(t, "SELECT count(*) FROM machine_versions"))

	_, _, err = b.store.MachineVersion(b.ctx, "missing")
	require.ErrorIs(t, err, ErrNoMachineVersion)

	latest, err := b.store.LatestMachineVersion(b.ctx, "env")
	require.NoError(t, err)
	require.Equal(t, "version: 1 # second", string(latest))
	_, err = b.store.LatestMachineVersion(b.ctx, "other")
	require.ErrorIs(t, err, ErrNoMachineVersion)
	inUse, err := b.store.StackMachines(b.ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"env"}, inUse)
}

// Apply tells the engine how many transitions the stack took in the last minute.
func TestApplyCountsRecentTransitions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, "r1", message.Event{StackID: "rt", Event: "LAUNCH", Machine: "env"}) // INIT -> BUILD
	var seen int
	_, err := b.store.Apply(b.ctx, ApplyInput{Key: "r2", StackID: "rt", MessageID: "r2"}, func(cur *engine.Stack) (engine.Decision, error) {
		seen = cur.RecentTransitions
		return engine.Decision{Outcome: engine.Ignored}, nil
	})
	require.NoError(t, err)
	require.Equal(t, 1, seen)
}
