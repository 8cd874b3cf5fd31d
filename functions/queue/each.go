package queue

import (
	"context"
	"sync"
)

// Each builds a BatchHandler from a per-message handler that handles every message on its own,
// whatever its GroupID: a failure of one message never holds back or fails another. Messages are
// handled concurrently, at most parallelism at once (<=0 means 1), started in batch order. A panic
// in handle is recovered and counts as a failure of that message (logged), never crashes the
// process. Once ctx is done, messages not yet started are reported failed without being handled.
//
// It suits work that promises no order, such as task runs: one long Terraform run must not keep
// the rest of its batch waiting, and its failure must not send the others round again.
func Each(handle func(ctx context.Context, m Message) error, parallelism int) BatchHandler {
	if parallelism <= 0 {
		parallelism = 1
	}
	return func(ctx context.Context, batch []Message) []string {
		failed := make([]bool, len(batch))
		work := make(chan int)
		var wg sync.WaitGroup
		for range min(parallelism, len(batch)) {
			wg.Go(func() {
				for i := range work {
					// A unit of one message: handleInOrder brings the panic recovery, the
					// done-context check and the failure log that InOrderByGroup has.
					failed[i] = len(handleInOrder(ctx, handle, batch[i:i+1])) > 0
				}
			})
		}
		for i := range batch {
			work <- i
		}
		close(work)
		wg.Wait()

		var out []string
		reported := make(map[string]bool)
		for i, m := range batch {
			if failed[i] && !reported[m.ID] {
				out = append(out, m.ID)
				reported[m.ID] = true // a duplicate ID is reported once
			}
		}
		return out
	}
}
