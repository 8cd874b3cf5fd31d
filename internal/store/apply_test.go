package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
)

// decideWith decides ev on b's machine, then lets change alter the decision.
func (b *testBundle) decideWith(ev message.Event, change func(*engine.Decision)) Decide {
	return func(cur *engine.Stack) (engine.Decision, error) {
		d := engine.Apply(engine.Input{Stack: cur, Machine: b.m, Event: ev, Now: time.Now().UTC(),
			NewRunID: func() string { return fmt.Sprintf("%s-%d", ev.StackID, time.Now().UnixNano()) }})
		if change != nil {
			change(&d)
		}
		return d, nil
	}
}

func pending(key string, ev message.Event, decide Decide) Pending {
	return Pending{In: ApplyInput{Key: key, StackID: ev.StackID, MessageID: key, Event: ev}, Decide: decide}
}

// TestApplyManyCommitsTogetherAndIsolatesEachEvent applies events of nine stacks in one
// transaction: each ends exactly as it would alone — applied, a duplicate, left out because
// another transaction holds its stack, or failed (a decision error, a panic, a value PostgreSQL
// refuses) — and a failure costs no other event anything.
func TestApplyManyCommitsTogetherAndIsolatesEachEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	launch := func(id string) message.Event { return message.Event{StackID: id, Event: "LAUNCH", Machine: "env"} }
	b.apply(t, "launch-s1", launch("s1"))
	b.apply(t, "launch-s6", launch("s6"))
	s1, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	result := message.Event{StackID: "s1", Event: message.EventTaskCompleted, TaskRunID: s1.Tasks[0].RunID}

	// Another transaction holds s5.
	holder, err := b.store.Pool().Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(b.ctx) }()
	_, err = holder.Exec(b.ctx, "SELECT pg_advisory_xact_lock(hashtextextended('s5', 0))")
	require.NoError(t, err)

	boom := errors.New("machine source down")
	evs := []Pending{
		pending("done-s1", result, b.decideWith(result, nil)),
		pending("launch-s8", launch("s8"), b.decideWith(launch("s8"), nil)),
		pending("launch-s3", launch("s3"), b.decideWith(launch("s3"), func(d *engine.Decision) {
			d.Stack.Metadata = message.Metadata{"bad": "a\x00b"} // jsonb refuses \u0000
		})),
		pending("launch-s4", launch("s4"), func(*engine.Stack) (engine.Decision, error) { return engine.Decision{}, boom }),
		pending("launch-s5", launch("s5"), b.decideWith(launch("s5"), nil)),
		pending("launch-s6", launch("s6"), b.decideWith(launch("s6"), nil)), // applied before: a duplicate
		pending("launch-s7", launch("s7"), func(*engine.Stack) (engine.Decision, error) { panic("engine bug") }),
		pending("launch-s2", launch("s2"), b.decideWith(launch("s2"), nil)),
		// Refused too, last in lock order: a second rollback to a savepoint, with nothing after it.
		pending("launch-s9", launch("s9"), b.decideWith(launch("s9"), func(d *engine.Decision) {
			d.Stack.Metadata = message.Metadata{"bad": "\x00"}
		})),
	}
	commits := &commitCounter{}
	cfg, err := pgxpool.ParseConfig(b.url)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = commits
	pool, err := pgxpool.NewWithConfig(b.ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	out := New(pool).ApplyMany(b.ctx, evs)
	require.Len(t, out, len(evs))
	require.Equal(t, int64(1), commits.n.Load(), "one commit for all of them")

	// Applied, in the order given back, each with its own outbox rows.
	for _, i := range []int{0, 1, 7} {
		require.NoError(t, out[i].Err, evs[i].In.StackID)
		require.False(t, out[i].Busy)
		require.Equal(t, engine.Applied, out[i].Decision.Outcome, evs[i].In.StackID)
	}
	require.Equal(t, []string{"task", "task", "notification"}, destinations(out[1].Outbox), "s8's two task messages and its transition")
	require.Equal(t, []string{"task", "task", "notification"}, destinations(out[7].Outbox), "s2's two task messages and its transition")
	for _, r := range append(out[1].Outbox, out[7].Outbox...) {
		require.Contains(t, []string{"s2", "s8"}, r.StackID)
	}
	require.Equal(t, []string{"task", "task", "notification"}, destinations(out[0].Outbox),
		"s1: the rows its LAUNCH left unsent, and nothing new (the result settles one of two tasks)")

	// Failed: nothing of them stored, each with its own reason.
	require.True(t, IsDataError(out[2].Err), "s3: %v", out[2].Err)
	require.True(t, IsDataError(out[8].Err), "s9: %v", out[8].Err)
	require.ErrorIs(t, out[3].Err, boom)
	var p *DecidePanic
	require.ErrorAs(t, out[6].Err, &p)
	require.Equal(t, "engine bug", p.Value)
	require.True(t, out[4].Busy, "s5's lock is held elsewhere: left out, not waited for")
	require.True(t, out[5].Duplicate)
	for _, id := range []string{"s3", "s4", "s5", "s7", "s9"} {
		require.Zero(t, b.count(t, "SELECT count(*) FROM stacks WHERE id = $1", id), id)
		require.Zero(t, b.count(t, "SELECT count(*) FROM processed_events WHERE stack_id = $1", id), id)
		require.Zero(t, b.count(t, "SELECT count(*) FROM history WHERE stack_id = $1", id), id)
	}

	// s8 comes after the refused s3 in lock order and was kept.
	require.Equal(t, 3, b.count(t, "SELECT count(*) FROM processed_events WHERE key IN ('done-s1', 'launch-s2', 'launch-s8')"))
	got, err := b.store.GetStack(b.ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, message.TaskCompleted, got.Tasks[0].Status)

	// The connection went back idle, and s5 applies alone once its lock is free.
	require.NoError(t, holder.Rollback(b.ctx))
	res, err := b.store.Apply(b.ctx, evs[4].In, evs[4].Decide)
	require.NoError(t, err)
	require.Equal(t, engine.Applied, res.Decision.Outcome)
}

// TestApplyManyRefusesTwoEventsOfOneStack: a stack's events are decided one after another, each
// seeing the last, so one transaction takes at most one of them.
func TestApplyManyRefusesTwoEventsOfOneStack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"}
	out := b.store.ApplyMany(b.ctx, []Pending{pending("a", ev, b.decideWith(ev, nil)), pending("b", ev, b.decideWith(ev, nil))})
	require.Error(t, out[0].Err)
	require.Error(t, out[1].Err)
	require.Zero(t, b.count(t, "SELECT count(*) FROM stacks"))
}

// commitCounter counts the COMMITs that succeeded on a pool's connections.
type commitCounter struct{ n atomic.Int64 }

func (c *commitCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (c *commitCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *commitCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *commitCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if d.SQL == "COMMIT" && d.Err == nil {
		c.n.Add(1)
	}
}
func (c *commitCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestDeleteOutboxLeavesTheSessionDurable: the outbox delete commits without waiting for the WAL
// flush, for its own transaction only; the connection's next transactions are durable again.
func TestDeleteOutboxLeavesTheSessionDurable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The session starts durable whatever the test server's default (a runtime parameter).
	sep := "?"
	if strings.Contains(b.url, "?") {
		sep = "&"
	}
	st, err := Open(b.ctx, Config{DatabaseURL: b.url + sep + "synchronous_commit=on", MaxConns: 1})
	require.NoError(t, err)
	defer st.Close()
	res := b.apply(t, "launch", message.Event{StackID: "s1", Event: "LAUNCH", Machine: "env"})
	require.NotEmpty(t, res.Outbox)
	ids := make([]int64, len(res.Outbox))
	for i, r := range res.Outbox {
		ids[i] = r.ID
	}
	require.NoError(t, st.DeleteOutbox(b.ctx, ids))
	require.Zero(t, b.count(t, "SELECT count(*) FROM outbox"))
	var setting string
	require.NoError(t, st.Pool().QueryRow(b.ctx, "SHOW synchronous_commit").Scan(&setting))
	require.Equal(t, "on", setting, "the same (only) connection, after the delete")
}
