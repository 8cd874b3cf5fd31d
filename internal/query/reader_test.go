package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
	"github.com/stackseam/stackseam/internal/store"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// bundle is a database written as the state manager writes it (rw), and a Reader on a read-only
// store of the same database, as the query function opens it.
type bundle struct {
	ctx    context.Context
	url    string
	rw     *store.Store
	ro     *store.Store
	reader *query.Reader
	m      *machine.Machine
	n      int
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupOn(t, harness.DatabaseURL(t))
}

func setupOn(t *testing.T, url string) *bundle {
	t.Helper()
	ctx := context.Background()
	rw, err := store.Open(ctx, store.Config{DatabaseURL: url})
	require.NoError(t, err)
	t.Cleanup(rw.Close)
	_, err = rw.Migrate(ctx)
	require.NoError(t, err)
	ro, err := store.Open(ctx, store.Config{DatabaseURL: url, ReadOnly: true, MaxConns: 2})
	require.NoError(t, err)
	t.Cleanup(ro.Close)
	adv := func(s string) []machine.Action { return []machine.Action{{Kind: machine.ActionAdvance, State: s}} }
	m := &machine.Machine{
		Name:   "env",
		Events: []string{"LAUNCH", "TOUCH", "DESTROY"},
		States: map[string]*machine.State{
			"INIT":  {Name: "INIT", On: map[string][]machine.Action{"LAUNCH": adv("BUILD")}},
			"BUILD": {Name: "BUILD", Tasks: []string{"a"}, On: map[string][]machine.Action{"NEXT": adv("RUN"), "DESTROY": adv("GONE")}},
			"RUN":   {Name: "RUN", On: map[string][]machine.Action{"TOUCH": {{Kind: machine.ActionNoop}}, "DESTROY": adv("GONE")}},
			"GONE":  {Name: "GONE", Terminal: true},
		},
		Tasks: map[string]*machine.Task{"a": {Name: "a", Executor: "lambda", Config: map[string]any{"name": "fa"}}},
	}
	return &bundle{ctx: ctx, url: url, rw: rw, ro: ro, reader: query.NewReader(ro), m: m}
}

func (b *bundle) apply(t *testing.T, ev message.Event) *engine.Stack {
	t.Helper()
	b.n++
	key := fmt.Sprintf("m%d", b.n)
	res, err := b.rw.Apply(b.ctx, store.ApplyInput{Key: key, StackID: ev.StackID, MessageID: key, Event: ev},
		func(cur *engine.Stack) (engine.Decision, error) {
			return engine.Apply(engine.Input{Stack: cur, Machine: b.m, Event: ev, Now: time.Now().UTC(),
				NewRunID: func() string { b.n++; return fmt.Sprintf("run-%d", b.n) }}), nil
		})
	require.NoError(t, err)
	return res.Decision.Stack
}

// Nothing on the read path can write: every statement that would is refused by PostgreSQL
// (SQLSTATE 25006, read_only_sql_transaction), in an implicit transaction or an explicit one.
func TestReadOnlyConnectionsRefuseEveryWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	for _, sql := range []string{
		`INSERT INTO rejections (at, message_id, stack_id, event, reason, body) VALUES (now(), 'x', 's1', 'E', 'r', '')`,
		`UPDATE stacks SET state = 'RUN'`,
		`DELETE FROM history`,
		`CREATE TABLE intruder (id int)`,
		`SELECT pg_advisory_xact_lock(1), 1; UPDATE stacks SET version = 0`,
	} {
		_, err := b.ro.Pool().Exec(b.ctx, sql)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", sql, err)
		require.Equal(t, "25006", pgErr.Code, sql)
	}
	tx, err := b.ro.Pool().Begin(b.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `DELETE FROM stacks`)
	require.ErrorContains(t, err, "read-only transaction")
	require.NoError(t, tx.Rollback(b.ctx))
	var setting string
	require.NoError(t, b.ro.Pool().QueryRow(b.ctx, `SHOW default_transaction_read_only`).Scan(&setting))
	require.Equal(t, "on", setting)

	st, err := b.reader.Stack(b.ctx, query.StackRequest{ID: "s1"})
	require.NoError(t, err)
	require.Equal(t, "BUILD", st.Stack.State, "reads work, and nothing changed")
}

func TestStacksArePagedAndFiltered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 7 {
		b.apply(t, message.Event{StackID: fmt.Sprintf("s%d", i), Event: "LAUNCH", Machine: "env",
			Metadata: message.Metadata{"n": json.Number(fmt.Sprint(i))}})
	}
	var ids []string
	cursor := ""
	pages := 0
	for {
		page, err := b.reader.Stacks(b.ctx, query.StacksRequest{Paging: query.Paging{Limit: 3, Cursor: cursor}})
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(page.Stacks), 3)
		for _, s := range page.Stacks {
			ids = append(ids, s.ID)
			require.Equal(t, "BUILD", s.State)
			require.Len(t, s.Tasks, 1)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	require.Equal(t, []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6"}, ids)
	require.Equal(t, 3, pages)

	b.apply(t, message.Event{StackID: "s3", Event: "DESTROY"})
	gone, err := b.reader.Stacks(b.ctx, query.StacksRequest{Filter: query.Filter{State: "BUILD"}})
	require.NoError(t, err)
	require.Len(t, gone.Stacks, 6, "s3 was removed")
	none, err := b.reader.Stacks(b.ctx, query.StacksRequest{Filter: query.Filter{Machine: "other"}})
	require.NoError(t, err)
	require.Empty(t, none.Stacks)
	require.Empty(t, none.NextCursor)

	var refused *query.Error
	_, err = b.reader.Stacks(b.ctx, query.StacksRequest{Paging: query.Paging{Limit: query.MaxPageSize + 1}})
	require.ErrorAs(t, err, &refused)
	require.Equal(t, query.ErrInvalidRequest, refused.Code)
	_, err = b.reader.Stacks(b.ctx, query.StacksRequest{Filter: query.Filter{State: strings.Repeat("x", 300)}})
	require.ErrorAs(t, err, &refused)
	hist, err := b.reader.History(b.ctx, query.HistoryRequest{StackID: "s1"})
	require.NoError(t, err)
	_, err = b.reader.Stacks(b.ctx, query.StacksRequest{Paging: query.Paging{Cursor: hist.Cursor}})
	require.ErrorAs(t, err, &refused, "a history cursor is not a stacks cursor")
	_, err = b.reader.Stacks(b.ctx, query.StacksRequest{Paging: query.Paging{Cursor: "not base64!"}})
	require.ErrorAs(t, err, &refused)
}

// A timeline read a page at a time is the timeline read at once, each rejection once (a
// rejection of an existing stack is in both tables), and following it with the last cursor
// returns exactly what happened since.
func TestHistoryPagesAndFollows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, message.Event{StackID: "h", Event: "LAUNCH"}) // no machine: rejected, the stack does not exist
	s := b.apply(t, message.Event{StackID: "h", Event: "LAUNCH", Machine: "env", Metadata: message.Metadata{"owner": "ann"}})
	b.apply(t, message.Event{StackID: "h", Event: "TOUCH"}) // not allowed in BUILD: in history and in rejections
	b.apply(t, message.Event{StackID: "h", Event: message.EventTaskCompleted, TaskRunID: s.Tasks[0].RunID})
	b.apply(t, message.Event{StackID: "h", Event: "TOUCH"})

	all, err := b.reader.History(b.ctx, query.HistoryRequest{StackID: "h"})
	require.NoError(t, err)
	require.False(t, all.More)
	require.Equal(t, engine.KindRejected, all.Entries[0].Kind)
	require.True(t, all.Entries[0].StackAbsent)
	rejected := 0
	for _, e := range all.Entries {
		if e.Kind == engine.KindRejected {
			rejected++
		}
	}
	require.Equal(t, 2, rejected, "each rejection once")
	require.Greater(t, len(all.Entries), 6)

	var paged []query.Entry
	cursor := ""
	for {
		page, err := b.reader.History(b.ctx, query.HistoryRequest{StackID: "h", Paging: query.Paging{Limit: 2, Cursor: cursor}})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Entries), 2)
		paged = append(paged, page.Entries...)
		cursor = page.Cursor
		if !page.More {
			break
		}
	}
	require.Equal(t, all.Entries, paged)

	// Following: nothing new, then exactly the new entries.
	idle, err := b.reader.History(b.ctx, query.HistoryRequest{StackID: "h", Paging: query.Paging{Cursor: cursor}})
	require.NoError(t, err)
	require.Empty(t, idle.Entries)
	require.Equal(t, cursor, idle.Cursor)
	b.apply(t, message.Event{StackID: "h", Event: "DESTROY"})
	more, err := b.reader.History(b.ctx, query.HistoryRequest{StackID: "h", Paging: query.Paging{Cursor: cursor}})
	require.NoError(t, err)
	var kinds []string
	for _, e := range more.Entries {
		kinds = append(kinds, e.Kind)
	}
	require.Equal(t, []string{engine.KindEvent, engine.KindTransition, engine.KindRemoved}, kinds)

	res, err := b.reader.Stack(b.ctx, query.StackRequest{ID: "h"})
	require.NoError(t, err)
	require.Nil(t, res.Stack)
	require.NotNil(t, res.RemovedAt)
	require.Equal(t, 2, res.Rejected)
	never, err := b.reader.Stack(b.ctx, query.StackRequest{ID: "never"})
	require.NoError(t, err)
	require.Equal(t, &query.StackResult{}, never)
}

// A page stops before its answer would pass MaxResponseBytes, and says more follow.
func TestAnswersStayWithinTheirByteBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 8 {
		b.apply(t, message.Event{StackID: fmt.Sprintf("big-%d", i), Event: "LAUNCH", Machine: "env"})
	}
	// Larger than any stack's metadata can grow (message.MaxStackMetadataBytes), so the bound
	// holds with room to spare.
	_, err := b.rw.Pool().Exec(b.ctx, `UPDATE stacks SET metadata = jsonb_build_object('blob', repeat('x', 200 * 1024))`)
	require.NoError(t, err)
	resp, err := b.reader.Handle(b.ctx, []byte(`{"stacks": {"limit": 500}}`))
	require.NoError(t, err)
	raw, err := json.Marshal(resp)
	require.NoError(t, err)
	require.Less(t, len(raw), query.MaxResponseBytes)
	require.Len(t, resp.Stacks.Stacks, 5, "five 200 KiB stacks fit in 1 MiB, six do not")
	require.NotEmpty(t, resp.Stacks.NextCursor)
	next, err := b.reader.Stacks(b.ctx, query.StacksRequest{Paging: query.Paging{Cursor: resp.Stacks.NextCursor}})
	require.NoError(t, err)
	require.Len(t, next.Stacks, 3)
	require.Equal(t, "big-5", next.Stacks[0].ID)
}

// refused handles payload and returns the answer, which must refuse it as an invalid request
// with a message containing want.
func (b *bundle) refused(t *testing.T, payload, want string) *query.Response {
	t.Helper()
	resp, err := b.reader.Handle(b.ctx, []byte(payload))
	require.NoError(t, err, payload)
	require.NotNil(t, resp.Error, payload)
	require.Equal(t, query.ErrInvalidRequest, resp.Error.Code, payload)
	require.Contains(t, resp.Error.Message, want, payload)
	return resp
}

// Requests are read strictly: one question, known fields, bounded size.
func TestRequestsAreParsedStrictly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, message.Event{StackID: "s", Event: "LAUNCH", Machine: "env"})
	for payload, want := range map[string]string{
		`{"stacks": {"state": "BUILD", "database": "other"}}`: "unknown field",
		`{"stacks": {}, "stack": {"id": "s"}}`:                "exactly one",
		`{}`:                                                  "exactly one",
		`{"stack": {"id": "s"}} {"stack": {"id": "t"}}`:       "data after",
		`{"stack": {"id": "s"}}x`:                             "not a query",
		`{"stack": {"id": "../etc"}}`:                         "not a valid stack id",
		`{"history": {"stackId": "s", "limit": 100000}}`:      "limit",
		`[1]`: "not a query",
		`{"stacks": {"machine": "` + strings.Repeat("m", query.MaxRequestBytes) + `"}}`: "bytes; at most",
	} {
		resp := b.refused(t, payload, want)
		require.Nil(t, resp.Stacks)
	}
	resp, err := b.reader.Handle(b.ctx, []byte(`{"stack": {"id": "s"}}`))
	require.NoError(t, err)
	require.Nil(t, resp.Error)
	require.Equal(t, "s", resp.Stack.Stack.ID)
}

// One deployment's query function reads only the database in its own secret: the request has no
// field that names another (refused above), and a reader on one database never sees another's
// stacks on the same server.
func TestAReaderSeesOnlyItsOwnDatabase(t *testing.T) {
	t.Parallel()
	a, other := setup(t), setup(t)
	a.apply(t, message.Event{StackID: "mine", Event: "LAUNCH", Machine: "env"})
	other.apply(t, message.Event{StackID: "theirs", Event: "LAUNCH", Machine: "env"})
	page, err := a.reader.Stacks(a.ctx, query.StacksRequest{})
	require.NoError(t, err)
	require.Len(t, page.Stacks, 1)
	require.Equal(t, "mine", page.Stacks[0].ID)
	res, err := a.reader.Stack(a.ctx, query.StackRequest{ID: "theirs"})
	require.NoError(t, err)
	require.Nil(t, res.Stack)
	hist, err := a.reader.History(a.ctx, query.HistoryRequest{StackID: "theirs"})
	require.NoError(t, err)
	require.Empty(t, hist.Entries)
}

func TestMachinesListsLiveAndStoredMachines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	b.apply(t, message.Event{StackID: "s2", Event: "LAUNCH", Machine: "env"})
	_, err := b.rw.Pool().Exec(b.ctx, `INSERT INTO machine_versions (hash, name, body, stored_at) VALUES
		('h1', 'old', 'name: old', now() - interval '1 hour'), ('h2', 'old', 'name: old # v2', now())`)
	require.NoError(t, err)
	page, err := b.reader.Machines(b.ctx, query.MachinesRequest{})
	require.NoError(t, err)
	require.Len(t, page.Machines, 2)
	require.Equal(t, "env", page.Machines[0].Name)
	require.Equal(t, 2, page.Machines[0].LiveStacks)
	require.Equal(t, "old", page.Machines[1].Name)
	require.Equal(t, "h2", page.Machines[1].LatestVersion)
	one, err := b.reader.Machines(b.ctx, query.MachinesRequest{Name: "old"})
	require.NoError(t, err)
	require.Len(t, one.Machines, 1)
	require.Equal(t, "name: old # v2", one.Body)
}
