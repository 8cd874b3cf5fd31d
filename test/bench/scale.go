package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/stackseam/stackseam/internal/store"
)

// populate stores n stacks of the bench machine, idle in RUN, with the
// history and processed event keys their lives so far left behind (9 history
// rows and 6 keys each, as a LAUNCH and two results write), in a few
// statements.
func populate(ctx context.Context, st *store.Store, n int) error {
	for _, sql := range []string{
		`INSERT INTO stacks (id, machine, state, previous_state, metadata, tasks, version, created_at, state_entered_at, last_activity_at, updated_at)
		 SELECT 'stored-' || g, 'bench', 'RUN', 'PROVISION',
		        jsonb_build_object('branch', 'feature/' || g, 'infra', 'vpc-' || md5(g::text), 'dns', 'dns-' || g),
		        '[]', 4, now(), now(), now(), now()
		 FROM generate_series(1, $1) g`,
		`INSERT INTO history (stack_id, machine, at, kind, event, from_state, to_state, task, task_run_id, duration_ms, message_id)
		 SELECT 'stored-' || g, 'bench', now(), k.kind, k.event, k.from_state, k.to_state, k.task,
		        CASE WHEN k.task <> '' THEN md5(g || k.task) ELSE '' END, 10, md5(g || '-' || k.m)
		 FROM generate_series(1, $1) g,
		      (VALUES (1, 'created', 'LAUNCH', '', 'INIT', ''), (1, 'event', 'LAUNCH', 'INIT', '', ''),
		              (1, 'transition', 'LAUNCH', 'INIT', 'PROVISION', ''), (1, 'task-dispatched', '', 'PROVISION', '', 'infra'),
		              (1, 'task-dispatched', '', 'PROVISION', '', 'dns'), (2, 'task-completed', 'TASK_COMPLETED', 'PROVISION', '', 'infra'),
		              (3, 'task-completed', 'TASK_COMPLETED', 'PROVISION', '', 'dns'), (3, 'event', 'NEXT', 'PROVISION', '', ''),
		              (3, 'transition', 'NEXT', 'PROVISION', 'RUN', '')) AS k(m, kind, event, from_state, to_state, task)`,
		`INSERT INTO processed_events (key, stack_id, processed_at)
		 SELECT 'sqs:' || md5(g || '-' || k), 'stored-' || g, now() FROM generate_series(1, $1) g, generate_series(1, 6) k`,
	} {
		if _, err := st.Pool().Exec(ctx, sql, n); err != nil {
			return fmt.Errorf("error storing %d stacks: %w", n, err)
		}
	}
	_, err := st.Pool().Exec(ctx, "VACUUM ANALYZE")
	return err
}

// scale compares the time of one event on a database holding 100 stacks
// with one holding many, in alternating rounds of the same workload (one
// worker; each lifecycle also sends an ACCESS to a random stored stack).
func (b *bench) scale(ctx context.Context) error {
	machines, err := benchMachines(b.work)
	if err != nil {
		return err
	}
	sizes := []int{100, b.o.stored}
	stores := make([]*store.Store, len(sizes))
	for i, n := range sizes {
		_, url, err := b.database(fmt.Sprintf("stored_%d", n))
		if err != nil {
			return err
		}
		if stores[i], err = openStore(ctx, url, 4); err != nil {
			return err
		}
		defer stores[i].Close()
		started := time.Now()
		if err := populate(ctx, stores[i], n); err != nil {
			return err
		}
		progress("  stored %d stacks in %s", n, time.Since(started).Round(time.Millisecond))
		if _, err := runFor(ctx, stores[i], machines, "warm", 1, time.Second, storedIDs(n), 1); err != nil {
			return err
		}
	}
	means := make([][]float64, len(sizes))
	p50s := make([][]float64, len(sizes))
	for round := range b.o.rounds {
		for j := range sizes {
			i := (round + j) % len(sizes) // alternate which goes first
			r, err := runFor(ctx, stores[i], machines, fmt.Sprintf("s%d", round), 1, time.Duration(b.o.seconds)*time.Second/2, storedIDs(sizes[i]), 1)
			if err != nil {
				return err
			}
			means[i] = append(means[i], float64(r.mean.Microseconds())/1000)
			p50s[i] = append(p50s[i], float64(r.p50.Microseconds())/1000)
			progress("  %d stacks stored, round %d: %d events, mean %s, p50 %s", sizes[i], round+1, r.events, ms(r.mean), ms(r.p50))
		}
	}
	small, large := median(means[0]), median(means[1])
	ratio := large / small
	b.add(row{
		measure: fmt.Sprintf("time of one event with %s stacks stored (mean; p50)", thousands(float64(sizes[1]))),
		result:  fmt.Sprintf("%.3f ms; %.3f ms → %.2f×", large, median(p50s[1]), ratio),
		reference: fmt.Sprintf("with %d stacks stored: %.3f ms; %.3f ms",
			sizes[0], small, median(p50s[0])),
		target: "≤ 1.2×",
		met:    verdict(ratio <= 1.2),
	})
	return nil
}

// storedIDs picks random stored stacks of a database holding n.
func storedIDs(n int) func() string {
	return func() string { return fmt.Sprintf("stored-%d", 1+rand.IntN(n)) }
}
