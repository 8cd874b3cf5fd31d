package applier

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/machine"
	"github.com/stackseam/stackseam/functions/message"
	"github.com/stackseam/stackseam/functions/queue"
	"github.com/stackseam/stackseam/functions/store"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// benchMachine has the shape of a typical environment: two parallel tasks up,
// a no-op event while running, one task down.
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

// benchWorker drives whole stack lifecycles (6 events each) through Handle.
// Task messages are kept in memory instead of going to SQS, so the figures
// are the state manager's own work: parsing, the engine, PostgreSQL.
type benchWorker struct {
	app     *Applier
	id      int
	stacks  int
	sent    []store.OutboxMessage
	latency []time.Duration
	// budget is shared by all workers: events left to handle in this run.
	budget *atomic.Int64
}

func (w *benchWorker) handle(ctx context.Context, body string) error {
	start := time.Now()
	err := w.app.Handle(ctx, queue.Message{ID: fmt.Sprintf("w%d-%d-%d", w.id, w.stacks, len(w.latency)), Body: body})
	w.latency = append(w.latency, time.Since(start))
	return err
}

// errBudgetSpent ends a lifecycle when the run has handled b.N events.
var errBudgetSpent = fmt.Errorf("budget spent")

// lifecycle runs one stack from LAUNCH to removal, stopping early when the
// shared budget is spent.
func (w *benchWorker) lifecycle(ctx context.Context) error {
	w.stacks++
	id := fmt.Sprintf("bench-%d-%d", w.id, w.stacks)
	step := func(body string) error {
		if w.budget.Add(-1) < 0 {
			return errBudgetSpent
		}
		return w.handle(ctx, body)
	}
	results := func() error {
		sent := w.sent
		w.sent = nil
		for _, m := range sent {
			var task message.Task
			if err := json.Unmarshal([]byte(m.Body), &task); err != nil {
				return err
			}
			if err := step(fmt.Sprintf(`{"stackId":%q,"event":"TASK_COMPLETED","taskRunId":%q}`, id, task.TaskRunID)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, body := range []string{
		fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"bench","metadata":{"branch":"b%d"}}`, id, w.stacks),
		"results",
		fmt.Sprintf(`{"stackId":%q,"event":"ACCESS","metadata":{"user":"u"}}`, id),
		fmt.Sprintf(`{"stackId":%q,"event":"DESTROY"}`, id),
		"results",
	} {
		var err error
		if body == "results" {
			err = results()
		} else {
			err = step(body)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkEvents measures events per second and the median time of one
// event with 1 and 8 concurrent workers against local PostgreSQL.
func BenchmarkEvents(b *testing.B) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			require.NoError(b, os.WriteFile(filepath.Join(dir, "bench.yml"), []byte(benchMachine), 0o644))
			st, err := store.Open(ctx, store.Config{DatabaseURL: harness.DatabaseURL(b), MaxConns: int32(workers + 2)})
			require.NoError(b, err)
			defer st.Close()
			_, err = st.Migrate(ctx)
			require.NoError(b, err)
			catalog := machine.NewDirCatalog(dir, machine.CatalogOptions{})

			ws := make([]*benchWorker, workers)
			var remaining atomic.Int64
			remaining.Store(int64(b.N))
			for i := range ws {
				w := &benchWorker{id: i, budget: &remaining}
				w.app = &Applier{Store: st, Machines: catalog,
					Outlets: map[string]Outlet{store.DestinationTask: func(_ context.Context, rows []store.OutboxMessage) error {
						w.sent = append(w.sent, rows...)
						return nil
					}},
					Logger: discardLogger()}
				ws[i] = w
			}
			var wg sync.WaitGroup
			errs := make([]error, workers)
			b.ResetTimer()
			start := time.Now()
			for i, w := range ws {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if err := w.lifecycle(ctx); err != nil {
							if err != errBudgetSpent {
								errs[i] = err
							}
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for i, w := range ws {
				require.NoError(b, errs[i])
				all = append(all, w.latency...)
			}
			require.Equal(b, b.N, len(all), "events handled")
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
