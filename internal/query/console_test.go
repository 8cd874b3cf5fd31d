package query_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
)

// Summaries count tasks, name the overdue ones, total the whole selection on every page, and
// filter by machine, state and a case-insensitive part of the id.
func TestSummariesCountFilterAndPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 7 {
		b.apply(t, message.Event{StackID: fmt.Sprintf("s%d", i), Event: "LAUNCH", Machine: "env",
			Metadata: message.Metadata{"blob": strings.Repeat("x", 1000)}})
	}
	b.apply(t, message.Event{StackID: "s6", Event: "DESTROY"})
	_, err := b.rw.Pool().Exec(b.ctx, `UPDATE stacks SET tasks = jsonb_set(tasks, '{0,deadline}', to_jsonb(now() - interval '1 minute'))
		WHERE id = 's1'`)
	require.NoError(t, err)

	var ids []string
	req := query.SummariesRequest{Paging: query.Paging{Limit: 3}}
	for pages := 1; ; pages++ {
		page, err := b.reader.Summaries(b.ctx, req)
		require.NoError(t, err)
		require.Equal(t, 6, page.Total, "every page totals the selection (s6 was removed)")
		for _, s := range page.Summaries {
			ids = append(ids, s.ID)
		}
		if page.NextCursor == "" {
			require.Equal(t, 2, pages)
			break
		}
		req.Cursor = page.NextCursor
	}
	require.Equal(t, []string{"s0", "s1", "s2", "s3", "s4", "s5"}, ids)

	page, err := b.reader.Summaries(b.ctx, query.SummariesRequest{Filter: query.Filter{State: "BUILD"}, IDContains: "S1"})
	require.NoError(t, err)
	require.Equal(t, 1, page.Total)
	require.Len(t, page.Summaries, 1)
	s := page.Summaries[0]
	require.Equal(t, "s1", s.ID)
	require.Equal(t, 1, s.Pending)
	require.Equal(t, []string{"a"}, s.Overdue)
	raw, err := json.Marshal(page)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "xxxx", "a summary leaves the metadata in the database")

	past := time.Now().Add(-time.Hour)
	page, err = b.reader.Summaries(b.ctx, query.SummariesRequest{IDContains: "s1", Now: &past})
	require.NoError(t, err)
	require.Empty(t, page.Summaries[0].Overdue, "deadlines are judged at the request's now")

	page, err = b.reader.Summaries(b.ctx, query.SummariesRequest{Filter: query.Filter{Machine: "env", State: "RUN"}})
	require.NoError(t, err)
	require.Zero(t, page.Total)
	require.Empty(t, page.Summaries)
	require.Empty(t, page.NextCursor)

	_, err = b.reader.Summaries(b.ctx, query.SummariesRequest{Paging: query.Paging{Limit: query.MaxSummaryPageSize + 1}})
	require.ErrorContains(t, err, "limit")
	_, err = b.reader.Summaries(b.ctx, query.SummariesRequest{Paging: query.Paging{Cursor: page.NextCursor + "x"}})
	require.ErrorContains(t, err, "cursor")
	stacksCursor, err := b.reader.Stacks(b.ctx, query.StacksRequest{Paging: query.Paging{Limit: 1}})
	require.NoError(t, err)
	_, err = b.reader.Summaries(b.ctx, query.SummariesRequest{Paging: query.Paging{Cursor: stacksCursor.NextCursor}})
	require.ErrorContains(t, err, "not a cursor of a summaries answer")
}

// Troubles are the runs the state manager settled itself (live stacks only), rejected messages
// counted per stack since a time, and parked messages; paged one at a time, nothing is lost or
// repeated.
func TestTroublesListSettledRejectedAndParked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.apply(t, message.Event{StackID: "a", Event: "LAUNCH", Machine: "env"})
	b.apply(t, message.Event{StackID: "b", Event: "LAUNCH", Machine: "env"})
	_, err := b.rw.Pool().Exec(b.ctx, `
		INSERT INTO history (stack_id, machine, at, kind, task, task_run_id, reason, detail) VALUES
			('a', 'env', now() - interval '1 hour', 'task-failed', 'a', 'r1', 'deadline passed', '{"settledBy": "deadline"}'),
			('a', 'env', now() - interval '30 minutes', 'task-failed', 'a', 'r2', 'dead letter', '{"settledBy": "dead-letter"}'),
			('a', 'env', now() - interval '2 days', 'task-failed', 'a', 'r0', 'too old', '{"settledBy": "deadline"}'),
			('a', 'env', now(), 'task-failed', 'a', 'r3', 'the task said so', NULL),
			('gone', 'env', now(), 'task-failed', 'a', 'r9', 'not live', '{"settledBy": "deadline"}');
		INSERT INTO rejections (at, stack_id, event, reason) VALUES
			(now() - interval '3 minutes', 'b', 'E', 'first'), (now() - interval '2 minutes', 'b', 'E', 'second'),
			(now() - interval '3 days', 'b', 'E', 'too old'), (now(), 'nobody', 'E', 'no such stack'), (now(), '', 'E', 'no id');
		INSERT INTO parked_outbox (id, stack_id, destination, body, created_at, parked_at, reason) VALUES
			(1, 'b', 'q', '{}', now(), now() - interval '5 days', 'too big'), (2, 'b', 'q', '{}', now(), now(), 'still too big')`)
	require.NoError(t, err)

	all, err := b.reader.Troubles(b.ctx, query.TroublesRequest{})
	require.NoError(t, err)
	require.Empty(t, all.NextCursor)
	var got []string
	for _, tr := range all.Troubles {
		got = append(got, fmt.Sprintf("%s %s %s %s %d %s", tr.StackID, tr.Kind, tr.RunID, tr.SettledBy, tr.Count, tr.Reason))
		require.False(t, tr.At.IsZero())
	}
	require.Equal(t, []string{
		"a settled r1 deadline 0 deadline passed",
		"a settled r2 dead-letter 0 dead letter",
		"b parked   2 still too big",
		"b rejected   2 second",
		"nobody rejected   1 no such stack",
	}, got)

	var paged []query.Trouble
	req := query.TroublesRequest{Paging: query.Paging{Limit: 1}}
	for {
		page, err := b.reader.Troubles(b.ctx, req)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Troubles), 1)
		paged = append(paged, page.Troubles...)
		if page.NextCursor == "" {
			break
		}
		req.Cursor = page.NextCursor
	}
	require.Equal(t, all.Troubles, paged)

	one, err := b.reader.Troubles(b.ctx, query.TroublesRequest{StackID: "b"})
	require.NoError(t, err)
	require.Len(t, one.Troubles, 2)
	since := time.Now().Add(-4 * 24 * time.Hour)
	older, err := b.reader.Troubles(b.ctx, query.TroublesRequest{StackID: "b", Since: &since})
	require.NoError(t, err)
	require.Equal(t, 3, older.Troubles[1].Count, "the rejection of three days ago is in a longer window")

	_, err = b.reader.Troubles(b.ctx, query.TroublesRequest{StackID: "../x"})
	require.ErrorContains(t, err, "not a valid stack id")
}

func TestStateCountsMachineVersionsAndTheChangeMark(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mark := func() string {
		t.Helper()
		m, err := b.reader.ChangeMark(b.ctx, query.ChangeMarkRequest{})
		require.NoError(t, err)
		return m.Mark
	}
	empty := mark()
	b.apply(t, message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	b.apply(t, message.Event{StackID: "s2", Event: "LAUNCH", Machine: "env"})
	b.apply(t, message.Event{StackID: "s3", Event: "LAUNCH", Machine: "env"})
	b.apply(t, message.Event{StackID: "s3", Event: "DESTROY"})
	counts, err := b.reader.StateCounts(b.ctx, query.StateCountsRequest{})
	require.NoError(t, err)
	require.Equal(t, []query.StateCount{{Machine: "env", State: "BUILD", Stacks: 2}}, counts.Counts, "s3 was removed")
	require.False(t, counts.Cut)

	applied := mark()
	require.NotEqual(t, empty, applied)
	require.Equal(t, applied, mark(), "nothing happened, nothing changed")
	_, err = b.rw.Pool().Exec(b.ctx, `INSERT INTO rejections (at, stack_id, event, reason) VALUES (now(), 'nobody', 'E', 'no such stack')`)
	require.NoError(t, err)
	require.NotEqual(t, applied, mark(), "a rejection of a stack that does not exist changes the mark too")

	_, err = b.rw.Pool().Exec(b.ctx, `INSERT INTO machine_versions (hash, name, body, stored_at) VALUES ('h1', 'old', 'name: old', now())`)
	require.NoError(t, err)
	v, err := b.reader.MachineVersion(b.ctx, query.MachineVersionRequest{Hash: "h1"})
	require.NoError(t, err)
	require.Equal(t, &query.MachineVersionResult{Name: "old", Body: "name: old"}, v)
	v, err = b.reader.MachineVersion(b.ctx, query.MachineVersionRequest{Hash: "h2"})
	require.NoError(t, err)
	require.Equal(t, &query.MachineVersionResult{}, v)
	_, err = b.reader.MachineVersion(b.ctx, query.MachineVersionRequest{})
	require.ErrorContains(t, err, "hash")

	st, err := b.reader.Stack(b.ctx, query.StackRequest{ID: "s1"})
	require.NoError(t, err)
	require.Equal(t, b.m.Hash, st.Stack.MachineHash, "a stack names the machine version it ran on")
}

// Each new question stays within MaxResponseBytes: summaries and troubles page on, counts say
// they were cut, and a machine version too big for an answer is a failure, not a cut file.
func TestConsoleQuestionsStayWithinTheirByteBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Eight stacks with 100 overdue tasks of 2,000-byte names each: 200 KB a summary.
	_, err := b.rw.Pool().Exec(b.ctx, `
		INSERT INTO stacks (id, machine, state, tasks, version, created_at, state_entered_at, last_activity_at, updated_at)
		SELECT 'big-' || i, 'env', 'BUILD',
			(SELECT jsonb_agg(jsonb_build_object('name', repeat('t', 1990) || j, 'status', 'pending', 'runId', 'r' || j,
				'attempt', 1, 'deadline', now() - interval '1 hour')) FROM generate_series(1, 100) AS j),
			1, now(), now(), now(), now()
		FROM generate_series(0, 7) AS i;
		INSERT INTO rejections (at, stack_id, event, reason)
		SELECT now(), 'rejected-' || lpad(i::text, 4, '0'), 'E', repeat('r', 10000) FROM generate_series(1, 400) AS i;
		INSERT INTO stacks (id, machine, state, version, created_at, state_entered_at, last_activity_at, updated_at)
		SELECT 'many-' || i, repeat('m', 250) || i, 'S', 1, now(), now(), now(), now() FROM generate_series(1, 5000) AS i;
		INSERT INTO machine_versions (hash, name, body, stored_at) VALUES ('huge', 'huge', convert_to(repeat('#', 1100000), 'UTF8'), now())`)
	require.NoError(t, err)
	size := func(resp *query.Response) int {
		raw, err := json.Marshal(resp)
		require.NoError(t, err)
		return len(raw)
	}

	resp, err := b.reader.Handle(b.ctx, []byte(`{"summaries": {"machine": "env", "limit": 2000}}`))
	require.NoError(t, err)
	require.Less(t, size(resp), query.MaxResponseBytes)
	require.Len(t, resp.Summaries.Summaries, 5, "five 200 KB summaries fit in 1 MiB, six do not")
	require.Equal(t, 8, resp.Summaries.Total)
	next, err := b.reader.Summaries(b.ctx, query.SummariesRequest{Filter: query.Filter{Machine: "env"}, Paging: query.Paging{Cursor: resp.Summaries.NextCursor}})
	require.NoError(t, err)
	require.Len(t, next.Summaries, 3)
	require.Equal(t, "big-5", next.Summaries[0].ID)

	seen := map[string]bool{}
	req := []byte(`{"troubles": {"limit": 2000}}`)
	for pages := 0; ; pages++ {
		resp, err := b.reader.Handle(b.ctx, req)
		require.NoError(t, err)
		require.Nil(t, resp.Error)
		require.Less(t, size(resp), query.MaxResponseBytes)
		for _, tr := range resp.Troubles.Troubles {
			require.False(t, seen[tr.StackID], tr.StackID)
			seen[tr.StackID] = true
			require.Len(t, tr.Reason, 4096, "a reason is cut")
		}
		if resp.Troubles.NextCursor == "" {
			require.Greater(t, pages, 0, "400 troubles of 4 KB do not fit in one answer")
			break
		}
		req = []byte(`{"troubles": {"limit": 2000, "cursor": "` + resp.Troubles.NextCursor + `"}}`)
	}
	require.Len(t, seen, 400)

	resp, err = b.reader.Handle(b.ctx, []byte(`{"stateCounts": {}}`))
	require.NoError(t, err)
	require.Less(t, size(resp), query.MaxResponseBytes)
	require.True(t, resp.StateCounts.Cut)
	require.Greater(t, len(resp.StateCounts.Counts), 1000)

	_, err = b.reader.Handle(b.ctx, []byte(`{"machineVersion": {"hash": "huge"}}`))
	require.ErrorContains(t, err, "more than an answer may hold")
}

// The new questions are read as strictly as the others.
func TestConsoleQuestionsAreParsedStrictly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for payload, want := range map[string]string{
		`{"summaries": {"idContains": "x", "sql": "1"}}`:                                   "unknown field",
		`{"summaries": {}, "troubles": {}}`:                                                "exactly one",
		`{"changeMark": {"since": 1}}`:                                                     "unknown field",
		`{"stateCounts": {}, "changeMark": {}}`:                                            "exactly one",
		`{"troubles": {"stackId": "a b"}}`:                                                 "not a valid stack id",
		`{"troubles": {"limit": -1}}`:                                                      "limit",
		`{"summaries": {"idContains": "` + strings.Repeat("i", 300) + `"}}`:                "idContains",
		`{"machineVersion": {"hash": "` + strings.Repeat("h", 300) + `"}}`:                 "hash",
		`{"machineVersion": {"hash": "h", "name": "n"}}`:                                   "unknown field",
		`{"troubles": {"cursor": "` + strings.Repeat("c", 2000) + `"}}`:                    "cursor",
		`{"summaries": {"now": "yesterday"}}`:                                              "not a query",
		`{"summaries": {"machine": "` + strings.Repeat("m", query.MaxRequestBytes) + `"}}`: "bytes; at most",
	} {
		b.refused(t, payload, want)
	}
	resp, err := b.reader.Handle(b.ctx, []byte(`{"changeMark": {}}`))
	require.NoError(t, err)
	require.Nil(t, resp.Error)
	require.Equal(t, "0.0", resp.ChangeMark.Mark)
}
