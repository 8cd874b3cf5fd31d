package applier

import (
	"context"
	"time"
)

// The default retentions (README.md, "Running the state manager").
const (
	// DefaultProcessedEventsRetention keeps the key of an applied event for 30 days. A key must
	// outlive every redelivery of its message: a message lives up to 14 days in the event queue
	// (SQS's maximum, which the construct sets), and one that failed can spend up to 14 more in the
	// dead-letter queue (a FIFO queue's message starts its retention again there) before it is
	// redriven. 30 days covers both with a margin, so a redelivered or redriven message, or an
	// event sent again with the same eventId, is still recognised as a duplicate.
	DefaultProcessedEventsRetention = 30 * 24 * time.Hour
	// MinProcessedEventsRetention is the shortest retention of processed event keys the state
	// manager accepts: the event queue's 14-day retention.
	MinProcessedEventsRetention = 14 * 24 * time.Hour
	// DefaultRejectionsRetention keeps rejected messages for 90 days: long enough to look into a
	// misbehaving publisher; a rejection of an existing stack also stays in its history, which is
	// never pruned.
	DefaultRejectionsRetention = 90 * 24 * time.Hour
)

// Retention says how long the sweep keeps rows that serve only for a while. History is kept.
type Retention struct {
	// ProcessedEvents is how long the key of an applied event is kept. Defaults to
	// DefaultProcessedEventsRetention; negative keeps the keys forever.
	ProcessedEvents time.Duration
	// Rejections is how long a rejected message is kept. Defaults to DefaultRejectionsRetention;
	// negative keeps them forever.
	Rejections time.Duration
}

// pruneBatch and pruneBatches bound one sweep's pruning: each batch is one short DELETE, and a
// sweep stops after pruneBatches full batches (50,000 rows a table), leaving the rest to the next
// sweep, so a backlog never makes one sweep long or holds many locks.
const (
	pruneBatch   = 5000
	pruneBatches = 10
)

// prune deletes processed event keys and rejections past their retention, in bounded batches.
func (a *Applier) prune(ctx context.Context, now time.Time) (events, rejections int, err error) {
	keep := func(d, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	tables := []struct {
		keep  time.Duration
		prune func(context.Context, time.Time, int) (int, error)
		count *int
	}{
		{keep(a.Retention.ProcessedEvents, DefaultProcessedEventsRetention), a.Store.PruneProcessedEvents, &events},
		{keep(a.Retention.Rejections, DefaultRejectionsRetention), a.Store.PruneRejections, &rejections},
	}
	for _, t := range tables {
		if t.keep < 0 {
			continue
		}
		for range pruneBatches {
			n, err := t.prune(ctx, now.Add(-t.keep), pruneBatch)
			*t.count += n
			if err != nil {
				return events, rejections, err
			}
			if n < pruneBatch {
				break
			}
		}
	}
	return events, rejections, nil
}
