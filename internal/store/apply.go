package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stackseam/stackseam/internal/engine"
)

// Decide is called by Apply with the locked stack (nil if it does not exist)
// and returns the decision to commit. An error aborts the transaction.
type Decide func(current *engine.Stack) (engine.Decision, error)

// Apply runs one event for one stack in one transaction:
//
//	round trip 1: BEGIN; lock the stack id; read the stack, whether the key was
//	              processed, and the stack's unsent outbox
//	decide (no I/O in the engine)
//	round trip 2: record the key, write the stack, history, rejection and
//	              outbox rows; COMMIT
//
// The lock is a transaction-scoped advisory lock on the stack id, so it also
// covers stacks that do not exist yet. Apply waits for it; ApplyMany, which
// commits the events of several stacks together, does not.
func (s *Store) Apply(ctx context.Context, in ApplyInput, decide Decide) (res ApplyResult, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, s.noteErr(fmt.Errorf("error connecting to the database: %w", err))
	}
	defer conn.Release()
	inTx := false
	defer func() {
		if err != nil && inTx {
			rollback(conn)
		}
	}()

	e := &loaded{in: in}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	e.queue(b, false)
	inTx = true
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return res, s.noteErr(fmt.Errorf("error loading stack %s: %w", in.StackID, err))
	}
	if e.processed {
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			return res, s.noteErr(fmt.Errorf("error ending transaction for stack %s: %w", in.StackID, err))
		}
		inTx = false
		return ApplyResult{Duplicate: true, Outbox: e.pending}, nil
	}

	d, err := decide(e.current)
	if err != nil {
		return res, err
	}
	w, err := s.writes(e, d, time.Now().UTC())
	if err != nil {
		return res, err
	}
	b = &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(w.stmts)+2)}
	if w.version != nil {
		queueVersions(b, []*machineVersion{w.version}, nil)
	}
	queueStatements(b, w.stmts, nil)
	b.Queue("COMMIT")
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return res, s.noteErr(fmt.Errorf("error saving stack %s: %w", in.StackID, err))
	}
	inTx = false
	if w.version != nil {
		s.versions.Store(w.version.hash, true)
	}
	return ApplyResult{Decision: d, Outbox: append(e.pending, w.inserted...)}, nil
}

// Pending is one event given to ApplyMany.
type Pending struct {
	In     ApplyInput
	Decide Decide
}

// Applied is what ApplyMany did with one event: applied (or found a duplicate) and committed,
// failed (Err), or not tried because its stack is locked (Busy).
type Applied struct {
	ApplyResult
	// Err says why nothing of the event was committed: its decision failed (Decide's error,
	// or a *DecidePanic), PostgreSQL refused its writes, or the transaction as a whole failed.
	Err error
	// Busy is set when another transaction held the stack's lock: nothing was done, and the
	// event is to be applied alone (Apply, which waits for the lock).
	Busy bool
}

// DecidePanic is the error of an event whose Decide panicked inside ApplyMany; the caller
// re-panics with it in its own goroutine, so a panic costs only its own event.
type DecidePanic struct {
	Value any
	Stack []byte
}

func (p *DecidePanic) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// MaxApplyMany is the most events ApplyMany takes: each holds a savepoint (a subtransaction),
// and a transaction with more than 64 of them makes every snapshot of the server slower.
const MaxApplyMany = 32

// ApplyMany applies the events of different stacks in one transaction and one commit:
//
//	round trip 1: BEGIN; for each event, in stack-id order: try to lock its stack,
//	              read it, its key and its unsent outbox
//	decide each locked event (no I/O)
//	round trip 2: the new machine versions; for each event a SAVEPOINT and its
//	              writes; COMMIT
//
// It is Apply for many events, with the same reads, decisions and writes, and three things
// more, so that events share a commit without sharing their fate:
//
//   - The locks are taken with pg_try_advisory_xact_lock: an event whose stack another
//     transaction holds is left out (Busy) rather than waited for, so the transaction never
//     waits for an advisory lock, no lock wait on one stack holds up the others, and no
//     deadlock can form on those locks.
//   - Each event's writes follow a savepoint of their own: when PostgreSQL refuses one event's
//     values, the transaction rolls back to that savepoint, that event gets the error, and the
//     writes of the events after it are sent again (two more round trips: the rollback, then
//     the writes); the events before it are kept. A failure of the transaction itself (connection lost, shutdown, a
//     serialization failure) fails every event, as it would have failed each alone.
//   - New machine versions are written first, in one statement, in hash order: two such
//     transactions that store the same versions wait for each other in one order only.
//
// The events must name different stacks (at most one event per stack: a stack's events are
// decided one after another, each seeing the last). The outcomes come back in the order given.
func (s *Store) ApplyMany(ctx context.Context, evs []Pending) []Applied {
	out := make([]Applied, len(evs))
	failAll := func(err error) []Applied {
		for i := range out {
			if out[i].Err == nil && !out[i].Busy {
				out[i] = Applied{Err: err}
			}
		}
		return out
	}
	if len(evs) > MaxApplyMany {
		return failAll(fmt.Errorf("error applying %d events together: at most %d are allowed", len(evs), MaxApplyMany))
	}
	seen := make(map[string]bool, len(evs))
	for _, ev := range evs {
		if seen[ev.In.StackID] {
			return failAll(fmt.Errorf("error applying %d events together: stack %s is named twice", len(evs), ev.In.StackID))
		}
		seen[ev.In.StackID] = true
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return failAll(s.noteErr(fmt.Errorf("error connecting to the database: %w", err)))
	}
	defer conn.Release()

	// Stack-id order: not needed against deadlocks (no lock is waited for), but it makes the
	// transaction's work the same whatever order the events came in.
	order := make([]int, len(evs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(evs[a].In.StackID, evs[b].In.StackID) })
	events := make([]*loaded, len(evs))
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, i := range order {
		events[i] = &loaded{in: evs[i].In}
		events[i].queue(b, true)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		rollback(conn)
		return failAll(s.noteErr(fmt.Errorf("error loading %d stacks: %w", len(evs), err)))
	}

	now := time.Now().UTC()
	var writing []int // events with writes, in stack-id order
	ws := make([]*writes, len(evs))
	for _, i := range order {
		e := events[i]
		switch {
		case !e.locked:
			out[i].Busy = true
		case e.processed:
			out[i].ApplyResult = ApplyResult{Duplicate: true, Outbox: e.pending}
		default:
			d, err := decideRecovering(evs[i].Decide, e.current)
			if err == nil {
				ws[i], err = s.writes(e, d, now)
			}
			if err != nil {
				out[i].Err = err
				continue
			}
			out[i].Decision = d
			writing = append(writing, i)
		}
	}

	var versions []*machineVersion
	for _, i := range writing {
		if v := ws[i].version; v != nil && !slices.ContainsFunc(versions, func(o *machineVersion) bool { return o.hash == v.hash }) {
			versions = append(versions, v)
		}
	}
	slices.SortFunc(versions, func(a, b *machineVersion) int { return cmp.Compare(a.hash, b.hash) })
	// Each pass sends the writes of the events from start on, after rolling back to the
	// savepoint of the event that failed the pass before.
	savepoints := len(writing) > 1
	start, rollbackTo := 0, -1
	for {
		b := &pgx.Batch{}
		var done int
		owner := []int{} // for each statement queued, its event's place in writing, or -1
		mark := func(n, k int) {
			for range n {
				owner = append(owner, k)
			}
		}
		if rollbackTo >= 0 {
			// A round trip of its own: pgx prepares a batch's statements it has not cached (and it
			// forgets those of a batch that failed) before running any, and PostgreSQL refuses to
			// prepare them in the aborted transaction this statement ends.
			if _, err := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT e"+strconv.Itoa(rollbackTo)); err != nil {
				rollback(conn)
				return failAll(s.noteErr(fmt.Errorf("error saving %d stacks: %w", len(evs), err)))
			}
		} else if len(versions) > 0 {
			queueVersions(b, versions, &done)
			mark(1, -1)
		}
		for k := start; k < len(writing); k++ {
			if savepoints {
				queueStatements(b, []statement{{sql: "SAVEPOINT e" + strconv.Itoa(k)}}, &done)
				mark(1, -1)
			}
			stmts := ws[writing[k]].stmts
			queueStatements(b, stmts, &done)
			mark(len(stmts), k)
		}
		queueStatements(b, []statement{{sql: "COMMIT"}}, &done)
		mark(1, -1)
		err := conn.SendBatch(ctx, b).Close()
		if err == nil {
			break
		}
		// done counts the statements that succeeded, so the one at done failed.
		if done < len(owner) && owner[done] >= 0 && eventsFault(err) {
			k := owner[done]
			i := writing[k]
			out[i] = Applied{Err: fmt.Errorf("error saving stack %s: %w", evs[i].In.StackID, err)}
			if savepoints {
				start, rollbackTo = k+1, k
				continue
			}
			// The only event with writes: nothing else is lost with them.
			rollback(conn)
			return out
		}
		rollback(conn)
		return failAll(s.noteErr(fmt.Errorf("error saving %d stacks: %w", len(evs), err)))
	}
	for _, v := range versions {
		s.versions.Store(v.hash, true)
	}
	for _, i := range writing {
		if out[i].Err == nil {
			out[i].Outbox = append(events[i].pending, ws[i].inserted...)
		}
	}
	return out
}

// eventsFault reports whether a statement's error is about the event's own values (PostgreSQL
// refused them) rather than the transaction or the connection, so rolling back to the event's
// savepoint leaves the others intact.
func eventsFault(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && !IsTransient(err)
}

// decideRecovering calls decide, turning a panic into a *DecidePanic.
func decideRecovering(decide Decide, current *engine.Stack) (d engine.Decision, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &DecidePanic{Value: r, Stack: debug.Stack()}
		}
	}()
	return decide(current)
}

// loaded is one event inside an apply transaction: what it names, and what was read under its
// stack's lock.
type loaded struct {
	in        ApplyInput
	locked    bool
	current   *engine.Stack
	processed bool
	pending   []OutboxMessage
	// storedMetadata is current's metadata as stored (JSON).
	storedMetadata []byte
}

// queue queues the statements that lock the event's stack and read what the decision needs.
// Each result is read by the callback queued with its statement, so the code never depends on
// where a statement stands in the batch. With try, the lock is only tried (pg_try_advisory_xact_lock)
// and locked says whether it was taken; the reads run either way and are ignored when it was not.
func (e *loaded) queue(b *pgx.Batch, try bool) {
	id := any(e.in.StackID) // boxed once, not once per statement
	if try {
		b.Queue("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", id).
			QueryRow(func(row pgx.Row) error { return row.Scan(&e.locked) })
	} else {
		b.Queue("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", id).
			Exec(func(pgconn.CommandTag) error { e.locked = true; return nil })
	}
	b.Queue(selectForEvent, id, time.Now().UTC().Add(-time.Minute), recentHistoryScan, engine.KindTransition, e.in.Key).
		Query(func(rows pgx.Rows) error {
			defer rows.Close()
			if !rows.Next() {
				if err := rows.Err(); err != nil {
					return err
				}
				return errors.New("the stack's read returned no row")
			}
			var pending []byte
			if rows.RawValues()[0] == nil {
				// No such stack: its columns are null; only the key and the outbox are read.
				dest := make([]any, stackColumnCount+3)
				dest[stackColumnCount+1], dest[stackColumnCount+2] = &e.processed, &pending
				if err := rows.Scan(dest...); err != nil {
					return err
				}
			} else {
				var recent int
				s, raw, err := scanStackAnd(rows, &recent, &e.processed, &pending)
				if err != nil {
					return err
				}
				e.current, e.storedMetadata = s, raw
				e.current.RecentTransitions = recent
			}
			if pending != nil {
				var err error
				if e.pending, err = decodeOutbox(pending); err != nil {
					return fmt.Errorf("error decoding the unsent outbox of stack %s: %w", e.in.StackID, err)
				}
			}
			rows.Close()
			return rows.Err()
		})
}

// selectForEvent reads, in one statement, what deciding an event takes: the stack ($1; its
// columns are null when it does not exist) with its recent transitions (recentTransitions' $2 to
// $4), whether the event's key ($5) was processed, and the stack's unsent outbox rows, oldest
// first, as a JSON array (null when there are none: the common case, since sent rows are deleted).
// One statement rather than three: each statement costs PostgreSQL a portal, a snapshot and a
// plan of its own. It runs after the statement that takes the stack's lock, so its snapshot sees
// everything committed before the lock was granted.
const selectForEvent = `SELECT ` + stackColumns + `, (` + recentTransitions + `),
	EXISTS (SELECT 1 FROM processed_events WHERE key = $5),
	(SELECT json_agg(o ORDER BY o.id) FROM (SELECT ` + outboxColumns + ` FROM outbox WHERE stack_id = $1) o)
	FROM (SELECT) one LEFT JOIN stacks ON id = $1`

// decodeOutbox decodes selectForEvent's JSON array of outbox rows.
func decodeOutbox(raw []byte) ([]OutboxMessage, error) {
	var rows []struct {
		ID           int64     `json:"id"`
		StackID      string    `json:"stack_id"`
		Destination  string    `json:"destination"`
		Body         string    `json:"body"`
		DelaySeconds int       `json:"delay_seconds"`
		CreatedAt    time.Time `json:"created_at"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		return nil, err
	}
	out := make([]OutboxMessage, len(rows))
	for i, r := range rows {
		// In the local zone, as pgx decodes a timestamptz column.
		out[i] = OutboxMessage{ID: r.ID, StackID: r.StackID, Destination: r.Destination, Body: r.Body,
			DelaySeconds: r.DelaySeconds, CreatedAt: r.CreatedAt.Local()}
	}
	return out, nil
}

// statement is one statement of a transaction, kept as text and arguments so that it can be
// sent again after a rollback to its event's savepoint.
type statement struct {
	sql  string
	args []any
	// rows, when set, reads the statement's rows; otherwise the statement is an Exec.
	rows func(pgx.Rows) error
}

// machineVersion is a machine version a decision pins its stack to for the first time.
type machineVersion struct {
	hash, name string
	body       []byte
	at         time.Time
}

// writes is what committing one decision takes.
type writes struct {
	stmts []statement
	// version is the machine version to store with the decision, if any.
	version *machineVersion
	// inserted receives the outbox rows the decision wrote, once its statements ran.
	inserted []OutboxMessage
}

// writes builds the statement that commits decision d for event e: record the key, insert,
// update or delete the stack row, a rejection row, the history rows and the outbox rows — one
// statement (joinWrites), so PostgreSQL parses, binds and runs one statement for them, not five.
func (s *Store) writes(e *loaded, d engine.Decision, now time.Time) (*writes, error) {
	in, current := e.in, e.current
	w := &writes{}
	var j joined
	id, at := any(in.StackID), any(now) // boxed once, not once per part
	j.add(partProcessed, in.Key, id, at)
	if d.Outcome == engine.Applied {
		switch {
		case d.Removed && !d.Created:
			j.add(partDeleteStack, id)
		case d.Removed:
			// Created and removed by the same event: nothing to store.
		default:
			var stored []byte
			if current != nil && sameMetadata(current.Metadata, d.Stack.Metadata) {
				stored = e.storedMetadata
			}
			args, err := stackArgs(d.Stack, now, stored)
			if err != nil {
				return nil, err
			}
			if d.Created {
				j.add(partInsertStack, args...)
			} else {
				j.add(partUpdateStack, args...)
			}
		}
	}
	if d.Outcome == engine.Applied && d.Stack != nil && !d.Removed && d.Machine != nil && d.Machine.Hash != "" &&
		(current == nil || current.MachineHash != d.Machine.Hash) && !s.storedVersion(d.Machine.Hash) {
		// First time this stack runs on this version: keep its body, so the stack can run on it
		// again whatever becomes of the file.
		w.version = &machineVersion{hash: d.Machine.Hash, name: d.Machine.Name, body: d.Machine.Body, at: now}
	}
	if d.Outcome == engine.Rejected {
		j.add(partRejection, at, in.MessageID, id, in.Event.Event, d.Reason)
	}
	machineName := in.Event.Machine
	if current != nil {
		machineName = current.Machine
	}
	if len(d.History) > 0 {
		rows, err := historyJSON(in.StackID, machineName, in.MessageID, d.History)
		if err != nil {
			return nil, err
		}
		j.add(partHistory, rows)
	}
	st := statement{}
	fence := in.Fence && fenceChanged(current, d)
	if d.Outcome == engine.Applied && (fence || len(d.Dispatch)+len(d.Notifications) > 0) {
		newRows, err := outboxJSON(in.StackID, d, fence, now)
		if err != nil {
			return nil, err
		}
		j.add(partOutbox, newRows)
		st.rows = func(rows pgx.Rows) (err error) {
			w.inserted, err = pgx.CollectRows(rows, pgx.RowToStructByPos[OutboxMessage])
			return err
		}
	}
	st.sql, st.args = j.statement()
	w.stmts = []statement{st}
	return w, nil
}

// The parts an event's writes are made of, as bits of one joined statement (joinWrites). The
// outbox part, when present, is always last: its RETURNING gives the rows' ids.
const (
	partProcessed = 1 << iota
	partInsertStack
	partUpdateStack
	partDeleteStack
	partRejection
	partHistory
	partOutbox
	partCount = iota
)

// partSQL is each part's statement; its parameters start at $1.
var partSQL = [partCount]string{
	`INSERT INTO processed_events (key, stack_id, processed_at) VALUES ($1, $2, $3)`,
	insertStack,
	updateStack,
	`DELETE FROM stacks WHERE id = $1`,
	`INSERT INTO rejections (at, message_id, stack_id, event, reason) VALUES ($1, $2, $3, $4, $5)`,
	insertHistory,
	insertOutbox,
}

// joined collects the parts of one event's writes and their arguments, in part order.
type joined struct {
	parts uint
	args  []any
}

// add appends part (one of the part constants, added in their order) with its arguments.
func (j *joined) add(part uint, args ...any) {
	j.parts |= part
	if j.args == nil {
		j.args = make([]any, 0, 18) // the most an applied event takes: key 3, stack 12, history 1, outbox 1
	}
	j.args = append(j.args, args...)
}

// statement is the joined statement and its arguments.
func (j *joined) statement() (string, []any) {
	if p := joinedSQL[j.parts].Load(); p != nil {
		return *p, j.args
	}
	sql := joinWrites(j.parts)
	joinedSQL[j.parts].Store(&sql)
	return sql, j.args
}

// joinedSQL caches joinWrites' text for each combination of parts.
var joinedSQL [1 << partCount]atomic.Pointer[string]

// joinWrites joins the statements of parts into one: every part but the last becomes a
// data-modifying WITH query, the last is the main statement, and each part's parameters are
// numbered after the previous part's. PostgreSQL runs every data-modifying WITH query exactly
// once, whether or not the main statement reads it, and all parts see the same snapshot; none
// reads a table another writes (the key, the stack, rejections, history and outbox each go to
// their own table, and no trigger or foreign key links them), so the effect is that of the
// statements run one after another, and any part failing fails them all, as it failed the
// transaction before.
func joinWrites(parts uint) string {
	var sqls []string
	for i := range partCount {
		if parts&(1<<i) != 0 {
			sqls = append(sqls, partSQL[i])
		}
	}
	var b strings.Builder
	shift := 0
	for k, sql := range sqls {
		last := k == len(sqls)-1
		switch {
		case last && k == 0:
		case last:
			b.WriteString(") ")
		case k == 0:
			b.WriteString("WITH w0 AS (")
		default:
			fmt.Fprintf(&b, "), w%d AS (", k)
		}
		n := 0
		b.WriteString(renumber(sql, shift, &n))
		shift += n
	}
	return b.String()
}

// renumber returns sql with its parameters $1… numbered from $(shift+1), and sets *n to the
// highest parameter number sql uses.
func renumber(sql string, shift int, n *int) string {
	var b strings.Builder
	for i := 0; i < len(sql); i++ {
		if sql[i] != '$' {
			b.WriteByte(sql[i])
			continue
		}
		j := i + 1
		for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			j++
		}
		p, err := strconv.Atoi(sql[i+1 : j])
		if err != nil {
			panic(fmt.Sprintf("store: a part's statement has a $ that is not a parameter: %s", sql))
		}
		*n = max(*n, p)
		b.WriteString("$" + strconv.Itoa(p+shift))
		i = j - 1
	}
	return b.String()
}

// queueStatements queues stmts on b; done, when set, counts those that succeeded, so after an
// error it names the statement that failed.
func queueStatements(b *pgx.Batch, stmts []statement, done *int) {
	for _, st := range stmts {
		q := b.Queue(st.sql, st.args...)
		switch {
		case st.rows == nil && done == nil:
		case st.rows == nil:
			q.Exec(func(pgconn.CommandTag) error { *done++; return nil })
		default:
			q.Query(func(rows pgx.Rows) error {
				if err := st.rows(rows); err != nil {
					return err
				}
				if done != nil {
					*done++
				}
				return nil
			})
		}
	}
}

// queueVersions queues one statement storing the machine versions, in hash order (vs is
// sorted). ON CONFLICT: another transaction may have stored one.
func queueVersions(b *pgx.Batch, vs []*machineVersion, done *int) {
	hashes, names, bodies, ats := make([]string, len(vs)), make([]string, len(vs)), make([][]byte, len(vs)), make([]time.Time, len(vs))
	for i, v := range vs {
		hashes[i], names[i], bodies[i], ats[i] = v.hash, v.name, v.body, v.at
	}
	queueStatements(b, []statement{{sql: `INSERT INTO machine_versions (hash, name, body, stored_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[]) ORDER BY 1
		ON CONFLICT (hash) DO NOTHING`, args: []any{hashes, names, bodies, ats}}}, done)
}
