// Package store keeps stacks, their history, the task outbox and the keys of
// processed events in PostgreSQL (pgx/v5). Apply is the one write path: it
// locks a stack, lets the caller decide, and commits the decision and the task
// messages it causes together.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
)

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// onAuthFailure is called when the server refuses our credentials, so a
	// rotated secret is read again on the next connection.
	onAuthFailure func()
	// versions holds the machine versions (hashes) this process has seen
	// stored in machine_versions.
	versions sync.Map
	// schema is the PostgreSQL schema of the tables (schema.go); "" is DefaultSchema.
	schema string
}

// New returns a store on an existing pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Pool returns the underlying pool (for the CLI's read queries and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Outbox destinations: where a row's message goes.
const (
	// DestinationTask is the task queue.
	DestinationTask = "task"
	// DestinationEvent is the event queue (time-to-live events).
	DestinationEvent = "event"
	// DestinationNotification is the notification topic.
	DestinationNotification = "notification"
	// DestinationFence is the stack's fence object (internal/fence): the run ids of its
	// current tasks, written before the task messages of the same decision are sent.
	DestinationFence = "fence"
)

// OutboxMessage is one message waiting to be sent.
type OutboxMessage struct {
	ID           int64
	StackID      string
	Destination  string
	Body         string
	DelaySeconds int
	CreatedAt    time.Time
}

const outboxColumns = `id, stack_id, destination, body, delay_seconds, created_at`

// ApplyResult is what Apply did.
type ApplyResult struct {
	// Decision is the engine's decision; empty when Duplicate.
	Decision engine.Decision
	// Duplicate is set when the event key was already processed: nothing was
	// changed, and Outbox holds whatever the first processing left unsent.
	Duplicate bool
	// Outbox holds every unsent task message of the stack, the new ones and
	// any left over by an earlier crash, to publish now.
	Outbox []OutboxMessage
}

// ApplyInput names the event being applied.
type ApplyInput struct {
	// Key identifies the event for idempotency (eventId or SQS message id).
	Key string
	// StackID is the stack to lock.
	StackID string
	// MessageID is the queue message id, kept in history for tracing.
	MessageID string
	// Event is the parsed event (for rejection records).
	Event message.Event
	// Fence asks for a DestinationFence row, ahead of the decision's task messages, whenever an
	// applied decision changes which runs are current: it dispatches tasks, leaves a state or
	// removes the stack.
	Fence bool
}

// StackMachines returns the names of the machines live stacks run on, sorted.
func (s *Store) StackMachines(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s, "listing the machines of live stacks", pgx.RowTo[string], `SELECT DISTINCT machine FROM stacks ORDER BY machine`)
}

// LatestMachineVersion returns the body of the version of machine name a
// stack was most recently pinned to first, wrapping ErrNoMachineVersion when
// none is stored.
func (s *Store) LatestMachineVersion(ctx context.Context, name string) ([]byte, error) {
	var body []byte
	err := s.pool.QueryRow(ctx, `SELECT body FROM machine_versions WHERE name = $1 ORDER BY stored_at DESC, hash LIMIT 1`, name).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("error loading the latest version of machine %s: %w", name, ErrNoMachineVersion)
	}
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error loading the latest version of machine %s: %w", name, err))
	}
	return body, nil
}

// storedVersion reports whether this process has seen machine version hash
// committed to machine_versions, so Apply sends a body once per process.
func (s *Store) storedVersion(hash string) bool {
	_, ok := s.versions.Load(hash)
	return ok
}

// ErrNoMachineVersion is wrapped by MachineVersion when no body is stored
// under the hash.
var ErrNoMachineVersion = errors.New("machine version not stored")

// MachineVersion returns the name and file body of the machine version
// stored under hash (see Apply). It reads outside any transaction.
func (s *Store) MachineVersion(ctx context.Context, hash string) (name string, body []byte, err error) {
	err = s.pool.QueryRow(ctx, `SELECT name, body FROM machine_versions WHERE hash = $1`, hash).Scan(&name, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, fmt.Errorf("error loading machine version %s: %w", hash, ErrNoMachineVersion)
	}
	if err != nil {
		return "", nil, s.noteErr(fmt.Errorf("error loading machine version %s: %w", hash, err))
	}
	return name, body, nil
}

// recentTransitions counts a stack's transitions ($4) since $2 among its last $3 history rows: a scan
// bounded by the stack's own index, however long its history. A stack at the limit has at least
// engine.MaxTransitionsPerMinute transition rows in the last minute, and so among the rows it
// wrote last unless events and results wrote three times as many other rows meanwhile.
const recentTransitions = `SELECT count(*) FROM (SELECT kind, at FROM history WHERE stack_id = $1 ORDER BY id DESC LIMIT $3) h
	WHERE kind = $4 AND at > $2`

// recentHistoryScan is how many of a stack's latest history rows recentTransitions reads.
const recentHistoryScan = 4 * engine.MaxTransitionsPerMinute

// rollback ends a failed transaction; if even that fails the connection is
// closed so the pool never hands out a connection inside a transaction.
func rollback(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = conn.Conn().Close(ctx)
	}
}

// DeleteOutbox removes messages that are now on the queue.
//
// Its commit does not wait for the WAL flush (synchronous_commit off, for this transaction only):
// what a database crash could lose of it is only the deletion, and rows not deleted are sent
// again (by the stack's next event or the sweep), which at-least-once delivery allows — exactly
// what a process crash between sending and deleting already does. A durable server so spends one
// flush per applied event, not two for the events that send messages. It is one round trip and one
// prepared statement (deleteOutbox).
func (s *Store) DeleteOutbox(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, deleteOutbox, ids); err != nil {
		return s.noteErr(fmt.Errorf("error deleting %d sent outbox rows: %w", len(ids), err))
	}
	return nil
}

// deleteOutbox deletes outbox rows by id, in a transaction of its own that commits without
// waiting for the WAL flush. A statement sent alone runs in an implicit transaction that commits
// when it ends; set_config(…, true) sets synchronous_commit for that transaction only, and the
// commit reads it before the transaction's settings are undone, so the session's later
// transactions are durable again. The DELETE, a data-modifying WITH query, runs whether or not the
// main query reads it. One prepared statement rather than BEGIN; SET LOCAL …; DELETE …; COMMIT,
// which PostgreSQL parsed and planned again for every event that sent messages.
const deleteOutbox = `WITH deleted AS (DELETE FROM outbox WHERE id = ANY($1))
	SELECT set_config('synchronous_commit', 'off', true)`

// Parked is an outbox row that can never be sent.
type Parked struct {
	ID     int64  // the outbox row
	Reason string // why it can never be sent
	// Result, when set, is an event body (a TASK_ERROR for the task the row would have started)
	// written to the outbox in the same statement, so the stack does not wait for a task that
	// will never run.
	Result string
}

// ParkOutbox moves outbox rows that can never be sent to parked_outbox with their reasons, notes
// it in their stacks' history and writes their Result events to the outbox, in one statement: a
// parked row is never re-sent, and its result is not lost. It returns the result rows to send.
func (s *Store) ParkOutbox(ctx context.Context, parked []Parked) ([]OutboxMessage, error) {
	if len(parked) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(parked))
	reasons := make([]string, len(parked))
	results := make([]string, len(parked))
	for i, p := range parked {
		ids[i], reasons[i], results[i] = p.ID, storableText(p.Reason, 4096), p.Result
	}
	return queryAll(ctx, s, fmt.Sprintf("parking %d outbox rows", len(ids)), pgx.RowToStructByPos[OutboxMessage], `WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS r(id, reason, result)),
		moved AS (DELETE FROM outbox o USING r WHERE o.id = r.id
			RETURNING o.id, o.stack_id, o.destination, o.body, o.delay_seconds, o.created_at, r.reason, r.result),
		parked AS (INSERT INTO parked_outbox (id, stack_id, destination, body, delay_seconds, created_at, parked_at, reason)
			SELECT id, stack_id, destination, body, delay_seconds, created_at, $4, reason FROM moved
			ON CONFLICT (id) DO NOTHING RETURNING id, stack_id, destination, reason),
		noted AS (INSERT INTO history (stack_id, machine, at, kind, reason, detail)
			SELECT s.id, s.machine, $4, $5, p.reason, jsonb_build_object('outboxId', p.id, 'destination', p.destination)
			FROM parked p JOIN stacks s ON s.id = p.stack_id)
		INSERT INTO outbox (stack_id, destination, body, delay_seconds, created_at)
		SELECT m.stack_id, $6, m.result, 0, $4 FROM moved m WHERE m.result <> ''
		RETURNING `+outboxColumns, ids, reasons, results, time.Now().UTC(), engine.KindParked, DestinationEvent)
}

// StaleOutbox returns unsent messages older than age, for the sweep that
// publishes what a crashed process left behind. Rows being written by a live
// transaction are not visible, so only abandoned ones come back.
func (s *Store) StaleOutbox(ctx context.Context, age time.Duration, limit int) ([]OutboxMessage, error) {
	return queryAll(ctx, s, "reading stale outbox rows", pgx.RowToStructByPos[OutboxMessage], `SELECT `+outboxColumns+` FROM outbox
		WHERE created_at < $1 ORDER BY id LIMIT $2`, time.Now().Add(-age), limit)
}

// Rejection is a message that could not be applied at all.
type Rejection struct {
	Key       string
	MessageID string
	StackID   string
	Event     string
	Reason    string
	// Body is the message as received (truncated to 4 KiB when stored).
	Body string
}

// RecordRejection stores a rejected message in one statement: the key is
// marked processed (so a redelivery is not recorded twice), the rejection is
// kept, and a history row is added when the named stack exists.
func (s *Store) RecordRejection(ctx context.Context, r Rejection) error {
	// What a rejection stores came from the message, which may be anything: every text is made
	// storable first, or a rejection that PostgreSQL refuses would be retried forever.
	body := storableText(r.Body, 4096)
	r.StackID, r.Event = storableText(r.StackID, 256), storableText(r.Event, 256)
	r.Reason, r.MessageID = storableText(r.Reason, 4096), storableText(r.MessageID, 256)
	_, err := s.pool.Exec(ctx, `WITH k AS (
			INSERT INTO processed_events (key, stack_id, processed_at) VALUES ($1, $3, $7)
			ON CONFLICT (key) DO NOTHING RETURNING key),
		r AS (INSERT INTO rejections (at, message_id, stack_id, event, reason, body)
			SELECT $7, $2, $3, $4, $5, $6 FROM k)
		INSERT INTO history (stack_id, machine, at, kind, event, from_state, reason, message_id)
		SELECT s.id, s.machine, $7, 'rejected', $4, s.state, $5, $2 FROM k, stacks s WHERE s.id = $3`,
		r.Key, r.MessageID, r.StackID, r.Event, r.Reason, body, time.Now().UTC())
	if err != nil {
		return s.noteErr(fmt.Errorf("error recording rejection of message %s: %w", r.MessageID, err))
	}
	return nil
}

// storableText returns s as PostgreSQL text can hold it, at most max bytes: invalid UTF-8 and NUL
// characters become U+FFFD, and a cut falls on a character boundary.
func storableText(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	return message.CutUTF8(s, max)
}

// IsDataError reports whether PostgreSQL refused a value itself (SQLSTATE class 22, data
// exception, or 54, program limit exceeded): storing the same message again fails the same way,
// so it is rejected rather than retried.
func IsDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54"))
}

// GetStack returns one stack, or nil when it does not exist.
func (s *Store) GetStack(ctx context.Context, id string) (*engine.Stack, error) {
	rows, _ := s.pool.Query(ctx, selectStack, id)
	stacks, err := pgx.CollectRows(rows, scanStack)
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error loading stack %s: %w", id, err))
	}
	if len(stacks) == 0 {
		return nil, nil
	}
	return stacks[0], nil
}

// noteErr tells the credential source when the server refused our password,
// so the next connection reads the (possibly rotated) secret again.
func (s *Store) noteErr(err error) error {
	if s.onAuthFailure != nil && IsAuthFailure(err) {
		s.onAuthFailure()
	}
	return err
}

// queryAll runs q and collects every row with scan: the one way the store's
// list reads query, so each failure — of the query or of a row — is noted
// (a refused password) and wrapped with what was being read.
func queryAll[T any](ctx context.Context, s *Store, what string, scan pgx.RowToFunc[T], q string, args ...any) ([]T, error) {
	rows, _ := s.pool.Query(ctx, q, args...)
	list, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error %s: %w", what, err))
	}
	return list, nil
}

// IsAuthFailure reports whether err is PostgreSQL refusing the credentials.
func IsAuthFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}

const stackColumns = `id, machine, state, previous_state, metadata, tasks, version, created_at, state_entered_at, last_activity_at, machine_hash`

// stackColumnCount is how many columns stackColumns names.
const stackColumnCount = 11

const selectStack = `SELECT ` + stackColumns + ` FROM stacks WHERE id = $1`

const insertStack = `INSERT INTO stacks (` + stackColumns + `, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

const updateStack = `UPDATE stacks SET machine = $2, state = $3, previous_state = $4, metadata = $5, tasks = $6,
	version = $7, created_at = $8, state_entered_at = $9, last_activity_at = $10, machine_hash = $11, updated_at = $12 WHERE id = $1`

const insertHistory = `INSERT INTO history (stack_id, machine, at, kind, event, from_state, to_state, task, task_run_id,
	duration_ms, reason, detail, message_id)
	SELECT stack_id, machine, at, kind, event, from_state, to_state, task, task_run_id, duration_ms, reason, detail, message_id
	FROM jsonb_to_recordset($1::jsonb) AS x(ord integer, stack_id text, machine text, at timestamptz, kind text, event text,
		from_state text, to_state text, task text, task_run_id text, duration_ms bigint, reason text, detail jsonb,
		message_id text)
	ORDER BY ord`

const insertOutbox = `INSERT INTO outbox (stack_id, destination, body, delay_seconds, created_at)
	SELECT stack_id, destination, body, delay_seconds, created_at
	FROM jsonb_to_recordset($1::jsonb) AS x(stack_id text, destination text, body text, delay_seconds integer, created_at timestamptz)
	RETURNING ` + outboxColumns

func scanStack(row pgx.CollectableRow) (*engine.Stack, error) {
	s, _, err := scanStackAnd(row)
	return s, err
}

// scanStackAnd scans a stack row followed by the columns extra points to. It also returns the
// metadata as stored (JSON), which an update that leaves the metadata as it was writes back
// instead of encoding it again.
func scanStackAnd(row pgx.CollectableRow, extra ...any) (_ *engine.Stack, rawMetadata []byte, _ error) {
	var s engine.Stack
	var metadata, tasks []byte
	err := row.Scan(append([]any{&s.ID, &s.Machine, &s.State, &s.PreviousState, &metadata, &tasks, &s.Version,
		&s.CreatedAt, &s.StateEnteredAt, &s.LastActivityAt, &s.MachineHash}, extra...)...)
	if err != nil {
		return nil, nil, err
	}
	if s.Metadata, err = decodeMetadata(metadata); err != nil {
		return nil, nil, fmt.Errorf("error decoding metadata of stack %s: %w", s.ID, err)
	}
	if s.Tasks, err = decodeTasks(tasks); err != nil {
		return nil, nil, fmt.Errorf("error decoding tasks of stack %s: %w", s.ID, err)
	}
	return &s, metadata, nil
}

// stackArgs are the arguments of insertStack and updateStack for s. storedMetadata, when not nil,
// is s's metadata as already stored (the decision left it as it was): it is written back as it
// is, which PostgreSQL stores as the same jsonb value, rather than encoded again.
func stackArgs(s *engine.Stack, now time.Time, storedMetadata []byte) ([]any, error) {
	md := storedMetadata
	if md == nil {
		var err error
		if md, err = json.Marshal(s.Metadata); err != nil {
			return nil, fmt.Errorf("error encoding metadata of stack %s: %w", s.ID, err)
		}
	}
	tasks, err := tasksJSON(s.Tasks)
	if err != nil {
		return nil, fmt.Errorf("error encoding tasks of stack %s: %w", s.ID, err)
	}
	// As []byte: pgx sends a jsonb argument's bytes as they are (a string would be copied first).
	return []any{s.ID, s.Machine, s.State, s.PreviousState, md, tasks, s.Version,
		s.CreatedAt, s.StateEnteredAt, s.LastActivityAt, s.MachineHash, now}, nil
}

type historyRow struct {
	Ord        int            `json:"ord"`
	StackID    string         `json:"stack_id"`
	Machine    string         `json:"machine"`
	At         time.Time      `json:"at"`
	Kind       string         `json:"kind"`
	Event      string         `json:"event"`
	FromState  string         `json:"from_state"`
	ToState    string         `json:"to_state"`
	Task       string         `json:"task"`
	TaskRunID  string         `json:"task_run_id"`
	DurationMS *int64         `json:"duration_ms"`
	Reason     string         `json:"reason"`
	Detail     map[string]any `json:"detail,omitempty"`
	MessageID  string         `json:"message_id"`
}

// historyJSON encodes the rows for one INSERT … jsonb_to_recordset, so any
// number of history rows costs one statement.
func historyJSON(stackID, machineName, messageID string, entries []engine.HistoryEntry) ([]byte, error) {
	rows := make([]historyRow, len(entries))
	for i, e := range entries {
		rows[i] = historyRow{Ord: i, StackID: stackID, Machine: machineName, At: e.At.UTC(), Kind: e.Kind, Event: e.Event,
			FromState: e.FromState, ToState: e.ToState, Task: e.Task, TaskRunID: e.TaskRunID, Reason: e.Reason,
			Detail: e.Detail, MessageID: messageID}
		if e.Duration > 0 || e.Kind == engine.KindTransition || e.Kind == engine.KindTaskDone || e.Kind == engine.KindTaskFailed {
			ms := e.Duration.Milliseconds()
			rows[i].DurationMS = &ms
		}
	}
	out, err := historyRowsJSON(rows)
	if err != nil {
		return nil, fmt.Errorf("error encoding history of stack %s: %w", stackID, err)
	}
	return out, nil
}

// fenceChanged reports whether the decision changes the set of the stack's pending runs (a
// dispatch, a settled run, a state left, the stack removed), and so its fence: a run that is no
// longer pending, settled or abandoned, must never start again (a redriven message).
func fenceChanged(current *engine.Stack, d engine.Decision) bool {
	if d.Outcome != engine.Applied {
		return false
	}
	if d.Removed {
		return true
	}
	return !slices.Equal(pendingRuns(current), pendingRuns(d.Stack))
}

// pendingRuns are the run ids of a stack's tasks that are dispatched and not settled.
func pendingRuns(s *engine.Stack) []string {
	runs := []string{}
	if s == nil {
		return runs
	}
	for _, t := range s.Tasks {
		if t.Status == message.TaskPending && t.RunID != "" {
			runs = append(runs, t.RunID)
		}
	}
	return runs
}

// fenceBody is the body of a DestinationFence row: the run ids of the stack's pending tasks
// after the decision. The generation is the row's id, known only once it is written.
func fenceBody(d engine.Decision) (string, error) {
	runs := []string{}
	if d.Stack != nil && !d.Removed {
		runs = pendingRuns(d.Stack)
	}
	// {"runs":[…]}, as json.Marshal(map[string][]string{"runs": runs}) has it, written by hand
	// like the rows that carry it (jsonrows.go).
	b := append(make([]byte, 0, 12+36*len(runs)), `{"runs":[`...)
	for i, r := range runs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, r)
	}
	return string(append(b, "]}"...)), nil
}

func outboxJSON(stackID string, d engine.Decision, fence bool, now time.Time) ([]byte, error) {
	type row = outboxRow
	rows := make([]row, 0, 1+len(d.Dispatch)+len(d.Notifications))
	if fence {
		// First: the fence must be written before the task messages can be received.
		body, err := fenceBody(d)
		if err != nil {
			return nil, fmt.Errorf("error encoding the fence of stack %s: %w", stackID, err)
		}
		rows = append(rows, row{StackID: stackID, Destination: DestinationFence, Body: body, CreatedAt: now})
	}
	for _, t := range d.Dispatch {
		body, err := json.Marshal(t.Task)
		if err != nil {
			return nil, fmt.Errorf("error encoding task message for stack %s: %w", stackID, err)
		}
		rows = append(rows, row{StackID: stackID, Destination: DestinationTask, Body: string(body),
			DelaySeconds: int(t.Delay / time.Second), CreatedAt: now})
	}
	for _, n := range d.Notifications {
		body, err := json.Marshal(n)
		if err != nil {
			return nil, fmt.Errorf("error encoding notification for stack %s: %w", stackID, err)
		}
		rows = append(rows, row{StackID: stackID, Destination: DestinationNotification, Body: string(body), CreatedAt: now})
	}
	return outboxRowsJSON(rows)
}

// SystemEventIDPrefix starts the eventIds of the events the state manager sends itself
// (time-to-live events: ttl-<version>). With a result signing key, an event whose eventId has it is
// accepted only with the key's signature, so a publisher cannot claim such a key first.
const SystemEventIDPrefix = "ttl-"

// EnqueueBroadcast writes event to the outbox for every stack of machineName in one of states (a
// broadcast, such as a nightly drift check of every running stack), each with eventID — the
// same for every stack of one firing, so a repeated firing is applied once per stack — and the
// stack's version as ifVersion, so a stack that moves on before it is applied ignores it. It
// returns the rows, to be sent.
func (s *Store) EnqueueBroadcast(ctx context.Context, machineName string, states []string, event, eventID string) ([]OutboxMessage, error) {
	return queryAll(ctx, s, fmt.Sprintf("enqueueing %s to the stacks of %s in %v", event, machineName, states), pgx.RowToStructByPos[OutboxMessage], `INSERT INTO outbox (stack_id, destination, body, delay_seconds, created_at)
		SELECT id, 'event', json_build_object('stackId', id, 'event', $3::text,
			'eventId', $4::text, 'ifVersion', version)::text, 0, now()
		FROM stacks WHERE machine = $1 AND state = ANY($2)
		RETURNING `+outboxColumns, machineName, states, event, eventID)
}

// EnqueueExpired finds stacks of machine that have been idle in state since
// before idleSince and writes, in one statement, an event-queue message per
// stack to the outbox: event, conditional on the stack's current version so
// that any activity in between cancels it. Each idle visit is enqueued once.
func (s *Store) EnqueueExpired(ctx context.Context, machineName, state, event string, idleSince time.Time, limit int) ([]OutboxMessage, error) {
	return queryAll(ctx, s, fmt.Sprintf("enqueueing expired stacks of %s in %s", machineName, state), pgx.RowToStructByPos[OutboxMessage], `WITH due AS (
			UPDATE stacks SET ttl_sent_version = version
			WHERE id IN (SELECT id FROM stacks
				WHERE machine = $1 AND state = $2 AND last_activity_at < $3
				AND ttl_sent_version IS DISTINCT FROM version
				ORDER BY last_activity_at LIMIT $5 FOR UPDATE SKIP LOCKED)
			RETURNING id, version)
		INSERT INTO outbox (stack_id, destination, body, delay_seconds, created_at)
		SELECT id, 'event', json_build_object('stackId', id, 'event', $4::text,
			'eventId', $6::text || version, 'ifVersion', version)::text, 0, now()
		FROM due
		RETURNING `+outboxColumns, machineName, state, idleSince, event, limit, SystemEventIDPrefix)
}
