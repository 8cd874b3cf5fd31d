package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// minimumTrips is the fewest round trips the design (docs/design.md §"Round trips") allows for
// each kind of event: one to read the stack under its lock, one to write the
// decision and commit (the engine decides in between, in Go), and one more
// to clear the outbox rows once their messages are published — which can
// only happen after the commit.
var minimumTrips = map[string]int64{
	kindLaunch: 3, kindResult: 2, kindResultNext: 2, kindNoop: 2, kindDestroy: 3, kindRemove: 2,
	// A redelivery is found out by the read under the lock; ending that
	// transaction is the second round trip. Only a separate check before
	// the transaction could save it, at the price of one more round trip
	// for every event that is not a duplicate.
	kindDuplicate: 2,
}

// tripKinds is the order of the breakdown.
var tripKinds = []string{kindLaunch, kindResult, kindResultNext, kindNoop, kindDestroy, kindRemove, kindDuplicate}

// roundTrips counts the database round trips of each kind of event, one
// worker, warm connections.
func (b *bench) roundTrips(ctx context.Context) error {
	st, machines, err := b.newStore(ctx, "roundtrips", 2)
	if err != nil {
		return err
	}
	defer st.Close()
	w := newWorker(st, machines, "rt")
	l := w.lane(0)
	// Warm up first: the first use of a statement on a connection prepares
	// it, one round trip more.
	for range 20 {
		if err := l.lifecycle(ctx, true); err != nil {
			return err
		}
	}
	trips := map[string][]int64{}
	w.observe = func(kind string, _ time.Duration, n int64) { trips[kind] = append(trips[kind], n) }
	const lifecycles = 200
	for range lifecycles {
		if err := l.lifecycle(ctx, true); err != nil {
			return err
		}
	}
	var parts []string
	var total, events int64
	met := true
	for _, kind := range tripKinds {
		ns := trips[kind]
		var sum, worst int64
		for _, n := range ns {
			sum += n
			worst = max(worst, n)
		}
		if kind != kindDuplicate {
			total += sum
			events += int64(len(ns))
		}
		met = met && worst <= minimumTrips[kind]
		mean := float64(sum) / float64(len(ns))
		parts = append(parts, fmt.Sprintf("%s %s", kind, trimFloat(mean)))
	}
	// The same lifecycles, ten stacks at a time in batches of one event per stack: the events of
	// a batch share their transaction's round trips.
	batched, err := runFor(ctx, st, machines, "rtb", 1, 2*time.Second, nil, 10)
	if err != nil {
		return err
	}
	var minParts []string
	for _, kind := range tripKinds {
		minParts = append(minParts, fmt.Sprintf("%d", minimumTrips[kind]))
	}
	b.add(row{
		measure: "database round trips per event",
		result: fmt.Sprintf("one event at a time: mean %s over a 6-event lifecycle: %s; in batches of 10 stacks: mean %s",
			trimFloat(float64(total)/float64(events)), strings.Join(parts, ", "),
			trimFloat(float64(batched.trips)/float64(batched.events))),
		reference: fmt.Sprintf("design minimum, same order: %s (read under the lock; write + commit; +1 to clear sent messages), per transaction however many events share it",
			strings.Join(minParts, ", ")),
		target: "the design's minimum",
		met:    verdict(met),
	})
	return nil
}

// trimFloat prints 3 as "3" and 2.3333 as "2.33".
func trimFloat(f float64) string {
	s := fmt.Sprintf("%.2f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
