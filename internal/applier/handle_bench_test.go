package applier

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
)

// BenchmarkHandle runs whole stack lifecycles (LAUNCH with two tasks, their two results — the
// second fires NEXT —, DESTROY, which removes the stack) through Handle against a real PostgreSQL and reports the state manager's own
// cost per event: CPU time of this process (cpu-ns/event: the state manager's work, not the
// database's), allocations (allocs/event, B/event) and wall time (ns/event). With -cpuprofile
// the profile holds only this process's CPU, not the database's.
//
//	go test -run '^$' -bench Handle -benchtime 2000x -cpuprofile cpu.prof ./internal/applier
//
// "one-at-a-time" hands events to Handle one after another, "batches-of-10" hands ten stacks'
// events at a time to the batch handler the state manager runs (queue.InOrderByGroup); the
// "-json-log" variant writes the state manager's JSON log lines (to io.Discard) instead of none.
func BenchmarkHandle(b *testing.B) {
	for _, c := range []struct {
		lanes int
		log   bool
	}{{1, false}, {10, false}, {10, true}} {
		lanes := c.lanes
		name := "one-at-a-time"
		if lanes > 1 {
			name = fmt.Sprintf("batches-of-%d", lanes)
		}
		if c.log {
			// The state manager's JSON log lines, written nowhere: what logging costs.
			name += "-json-log"
		}
		b.Run(name, func(b *testing.B) {
			bu := setup(b)
			bu.app.Logger = slog.New(slog.DiscardHandler)
			if c.log {
				bu.app.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
			}
			handler := queue.InOrderByGroup(bu.app.Handle, lanes)
			ctx := b.Context()
			seq := 0
			// deliver hands one event of each stack to the state manager and returns the task
			// messages each stack's event sent.
			deliver := func(ids []string, bodies func(id string) []string) {
				var batch []queue.Message
				for _, id := range ids {
					for _, body := range bodies(id) {
						seq++
						batch = append(batch, queue.Message{ID: fmt.Sprintf("m%d", seq), GroupID: id, Body: body})
					}
				}
				if lanes == 1 {
					for _, m := range batch {
						if err := bu.app.Handle(ctx, m); err != nil {
							b.Fatal(err)
						}
					}
				} else if failed := handler(ctx, batch); len(failed) > 0 {
					b.Fatalf("failed: %v", failed)
				}
			}
			results := func(from int) func(id string) []string {
				byStack := map[string][]string{}
				for _, r := range bu.tasks.sent[from:] {
					var task message.Task
					if err := json.Unmarshal([]byte(r.Body), &task); err != nil {
						b.Fatal(err)
					}
					byStack[r.StackID] = append(byStack[r.StackID],
						fmt.Sprintf(`{"stackId":%q,"event":"TASK_COMPLETED","taskRunId":%q}`, r.StackID, task.TaskRunID))
				}
				return func(id string) []string { return byStack[id] }
			}
			const perLifecycle = 4
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			cpuBefore := cpuTime(b)
			b.ResetTimer()
			events := 0
			for n := 0; events < b.N; n++ {
				ids := make([]string, lanes)
				for i := range ids {
					ids[i] = fmt.Sprintf("b%d-%d", n, i)
				}
				from := len(bu.tasks.sent)
				deliver(ids, func(id string) []string {
					return []string{fmt.Sprintf(`{"stackId":%q,"event":"LAUNCH","machine":"pair","metadata":{"branch":"main"}}`, id)}
				})
				// Both results of a stack come in one batch, in order, as SQS delivers a group.
				deliver(ids, results(from))
				deliver(ids, func(id string) []string { return []string{fmt.Sprintf(`{"stackId":%q,"event":"DESTROY"}`, id)} })
				events += perLifecycle * lanes
			}
			b.StopTimer()
			cpu := cpuTime(b) - cpuBefore
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(events), "cpu-ns/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(events), "allocs/event")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(events), "B/event")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used: the state manager's own work,
// not the database's, which runs in other processes.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
