package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stackseam/stackseam/internal/applier"
	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/store"
)

// benchMachine is the machine of the in-process workload: the shape of a
// typical environment, two parallel tasks up, a no-op event while running,
// one task down.
const benchMachine = `version: 1
events: [LAUNCH, ACCESS, DESTROY]
states:
  INIT: {on: {LAUNCH: [{action: advance, state: PROVISION}]}}
  PROVISION:
    tasks: [infra, dns]
    on: {NEXT: [{action: advance, state: RUN}]}
  RUN:
    on:
      ACCESS: [{action: no-op}]
      DESTROY: [{action: advance, state: TEARDOWN}]
  TEARDOWN:
    tasks: [teardown]
    on: {NEXT: [{action: advance, state: DONE}]}
  DONE: {terminal: true}
tasks:
  infra: {executor: lambda, config: {name: infra}}
  dns: {executor: lambda, config: {name: dns}}
  teardown: {executor: lambda, config: {name: teardown}}
`

// The kinds of event the workload sends, for the round-trip breakdown.
const (
	kindLaunch     = "LAUNCH (2 tasks sent)"
	kindResult     = "result"
	kindResultNext = "result → NEXT"
	kindNoop       = "ACCESS (no-op)"
	kindDestroy    = "DESTROY (1 task sent)"
	kindRemove     = "result → removed"
	kindDuplicate  = "duplicate"
)

// roundTrips counts client→server round trips on every connection of a pool
// built by openStore: each time a connection starts writing after it last
// read (or for the first time), the client has sent something it will wait
// for. A pipelined batch is one round trip; so is a simple query.
var roundTrips atomic.Int64

type countingConn struct {
	net.Conn
	writing atomic.Bool
}

func (c *countingConn) Write(b []byte) (int, error) {
	if !c.writing.Swap(true) {
		roundTrips.Add(1)
	}
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.writing.Store(false)
	return c.Conn.Read(b)
}

// openStore opens a store on url whose connections count round trips, and
// applies the migrations.
func openStore(ctx context.Context, url string, maxConns int32) (*store.Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = maxConns
	dialer := &net.Dialer{KeepAlive: 5 * time.Minute}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	st := store.New(pool)
	if _, err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// newStore makes a new database named after label and returns a store on it (see openStore) with
// the catalog of the bench machine. The caller closes the store.
func (b *bench) newStore(ctx context.Context, label string, maxConns int32) (*store.Store, *catalog.Catalog, error) {
	_, url, err := b.database(label)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, url, maxConns)
	if err != nil {
		return nil, nil, err
	}
	machines, err := benchMachines(b.work)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, machines, nil
}

// benchMachines writes benchMachine into a new folder under work and returns the catalog of it.
func benchMachines(work string) (*catalog.Catalog, error) {
	dir, err := os.MkdirTemp(work, "machines-")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "bench.yml"), []byte(benchMachine), 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("error writing the bench machine: %w", err)
	}
	return catalog.NewDir(dir, catalog.Options{}), nil
}

// worker drives whole stack lifecycles through applier.Handle, in process.
// Task messages go to memory instead of SQS, so what is measured is the state
// manager's own work: parsing, the engine and PostgreSQL. Each of its lanes
// runs one stack at a time; with more than one lane the lanes' events go
// through queue.InOrderByGroup in batches of one event per stack, as the state
// manager receives a batch of a FIFO queue's groups.
type worker struct {
	app     *applier.Applier
	name    string
	deliver func(context.Context, queue.Message) error
	mu      sync.Mutex
	sent    map[string][]store.OutboxMessage // by stack
	// stored, when set, names an already stored stack (in RUN) to which each
	// lifecycle also sends an ACCESS.
	stored func() string
	// observe is told every event's kind, time and round trips (the
	// latter only meaningful with one worker and one lane).
	observe func(kind string, took time.Duration, trips int64)
}

func newWorker(st *store.Store, machines *catalog.Catalog, name string) *worker {
	w := &worker{name: name, sent: map[string][]store.OutboxMessage{}}
	w.app = &applier.Applier{Store: st, Machines: machines,
		Outlets: map[string]applier.Outlet{store.DestinationTask: func(_ context.Context, rows []store.OutboxMessage) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			for _, r := range rows {
				w.sent[r.StackID] = append(w.sent[r.StackID], r)
			}
			return nil
		}},
		Logger: discardLogger()}
	w.deliver = w.app.Handle
	return w
}

// batched makes the worker deliver the events of its lanes in batches, through the batch
// handler the state manager runs (queue.InOrderByGroup with parallelism = lanes).
func (w *worker) batched(lanes int) *batcher {
	b := &batcher{h: queue.InOrderByGroup(w.app.Handle, lanes), live: lanes}
	w.deliver = b.handle
	return b
}

// batcher hands the messages of a worker's lanes to a batch handler as one batch once every lane
// still running has sent one.
type batcher struct {
	h      queue.BatchHandler
	mu     sync.Mutex
	live   int
	queued []*queuedMessage
}

type queuedMessage struct {
	m   queue.Message
	err chan error
}

func (b *batcher) handle(ctx context.Context, m queue.Message) error {
	q := &queuedMessage{m: m, err: make(chan error, 1)}
	b.mu.Lock()
	b.queued = append(b.queued, q)
	batch := b.take()
	b.mu.Unlock()
	b.run(ctx, batch)
	return <-q.err
}

// leave says a lane has stopped sending.
func (b *batcher) leave(ctx context.Context) {
	b.mu.Lock()
	b.live--
	batch := b.take()
	b.mu.Unlock()
	b.run(ctx, batch)
}

func (b *batcher) take() []*queuedMessage {
	if len(b.queued) == 0 || len(b.queued) < b.live {
		return nil
	}
	batch := b.queued
	b.queued = nil
	return batch
}

func (b *batcher) run(ctx context.Context, batch []*queuedMessage) {
	if len(batch) == 0 {
		return
	}
	msgs := make([]queue.Message, len(batch))
	for i, q := range batch {
		msgs[i] = q.m
	}
	failed := map[string]bool{}
	for _, id := range b.h(ctx, msgs) {
		failed[id] = true
	}
	for _, q := range batch {
		if failed[q.m.ID] {
			q.err <- fmt.Errorf("message %s failed in its batch", q.m.ID)
		} else {
			q.err <- nil
		}
	}
}

func (w *worker) handle(ctx context.Context, kind, id, group, body string) error {
	trips := roundTrips.Load()
	start := time.Now()
	err := w.deliver(ctx, queue.Message{ID: id, Body: body, GroupID: group})
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	if w.observe != nil {
		w.observe(kind, took, roundTrips.Load()-trips)
	}
	return nil
}

// takeSent returns the task messages sent for stack id since the last call.
func (w *worker) takeSent(id string) []store.OutboxMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	sent := w.sent[id]
	delete(w.sent, id)
	return sent
}

// lane runs one stack's lifecycle after another on a worker.
type lane struct {
	w      *worker
	name   string
	stacks int
}

func (w *worker) lane(i int) *lane { return &lane{w: w, name: fmt.Sprintf("%s-l%d", w.name, i)} }

// lifecycle runs one stack from LAUNCH to removal: 6 events, plus a
// duplicate delivery and an ACCESS to a stored stack when asked.
func (l *lane) lifecycle(ctx context.Context, duplicate bool) error {
	w := l.w
	l.stacks++
	id := fmt.Sprintf("%s-%d", l.name, l.stacks)
	n := 0
	step := func(kind, body string) error {
		n++
		return w.handle(ctx, kind, fmt.Sprintf("%s-%d", id, n), id, body)
	}
	results := func(last string) error {
		sent := w.takeSent(id)
		for i, m := range sent {
			var task message.Task
			if err := json.Unmarshal([]byte(m.Body), &task); err != nil {
				return err
			}
			kind := kindResult
			if i == len(sent)-1 {
				kind = last
			}
			if err := step(kind, fmt.Sprintf(`{"stackId":%q,"event":"TASK_COMPLETED","taskRunId":%q}`, id, task.TaskRunID)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := step(kindLaunch, fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"bench","metadata":{"branch":"b%d"}}`, id, l.stacks)); err != nil {
		return err
	}
	if err := results(kindResultNext); err != nil {
		return err
	}
	access := fmt.Sprintf(`{"stackId":%q,"event":"ACCESS","metadata":{"user":"u"}}`, id)
	if err := step(kindNoop, access); err != nil {
		return err
	}
	if duplicate {
		// The same SQS message once more, as a redelivery would bring it.
		if err := w.handle(ctx, kindDuplicate, fmt.Sprintf("%s-%d", id, n), id, access); err != nil {
			return err
		}
	}
	if w.stored != nil {
		other := w.stored()
		// An event of another stack, delivered in this lane: its own group.
		n++
		if err := w.handle(ctx, kindNoop, fmt.Sprintf("%s-%d", id, n), other,
			fmt.Sprintf(`{"stackId":%q,"event":"ACCESS","metadata":{"user":"u%d"}}`, other, l.stacks)); err != nil {
			return err
		}
	}
	if err := step(kindDestroy, fmt.Sprintf(`{"stackId":%q,"event":"DESTROY"}`, id)); err != nil {
		return err
	}
	return results(kindRemove)
}

// throughput is what runFor measured.
type throughput struct {
	events   int
	elapsed  time.Duration
	p50, p99 time.Duration
	mean     time.Duration
	// trips counts the database round trips of the whole run, on every connection.
	trips int64
}

func (r throughput) perSecond() float64 { return float64(r.events) / r.elapsed.Seconds() }

// runFor runs lifecycles on workers concurrent workers for about d and
// reports events per second and the time of one event. With batch > 1 each
// worker runs batch stacks at once and hands their events to the state
// manager in batches of one event per stack (as a receive of batch messages
// of a FIFO queue brings them); otherwise one event at a time.
func runFor(ctx context.Context, st *store.Store, machines *catalog.Catalog, name string, workers int, d time.Duration,
	stored func() string, batch int) (throughput, error) {
	lanes := max(batch, 1)
	var mu sync.Mutex
	var all []time.Duration
	var errs []error
	var wg sync.WaitGroup
	trips := roundTrips.Load()
	start := time.Now()
	deadline := start.Add(d)
	for i := range workers {
		w := newWorker(st, machines, fmt.Sprintf("%s-w%d", name, i))
		w.stored = stored
		w.observe = func(_ string, took time.Duration, _ int64) {
			mu.Lock()
			all = append(all, took)
			mu.Unlock()
		}
		var b *batcher
		if lanes > 1 {
			b = w.batched(lanes)
		}
		for j := range lanes {
			l := w.lane(j)
			wg.Go(func() {
				var err error
				for time.Now().Before(deadline) && err == nil {
					err = l.lifecycle(ctx, false)
				}
				if b != nil {
					b.leave(ctx)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(errs) > 0 {
		return throughput{}, errs[0]
	}
	r := summarize(all, elapsed)
	r.trips = roundTrips.Load() - trips
	return r, nil
}

func summarize(all []time.Duration, elapsed time.Duration) throughput {
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	r := throughput{events: len(all), elapsed: elapsed}
	if len(all) > 0 {
		r.p50, r.p99, r.mean = all[len(all)/2], all[len(all)*99/100], sum/time.Duration(len(all))
	}
	return r
}
