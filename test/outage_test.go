package test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/constructs/deployed"
	"github.com/stackseam/stackseam/internal/metrics"
	"github.com/stackseam/stackseam/test/harness"
)

// Deployed queue settings, scaled down in time with the same ratios: the construct gives the
// event queue a visibility timeout of six times the state manager's timeout (6 × 60 s) and a
// redrive policy of deployed.EventQueueMaxReceiveCount receives, so without a pause an outage longer than
// deployed.EventQueueMaxReceiveCount × 6 min (30 min) would dead-letter events. Here the visibility timeout
// is outageVisibility and the outage lasts more than twice deployed.EventQueueMaxReceiveCount × visibility.
const (
	outageVisibility = 2 * time.Second
	// outageProbeEvery plays the deployed sweep schedule (1 min, a sixth of the visibility
	// timeout): how soon consumption resumes after the database is back.
	outageProbeEvery = outageVisibility / 6
)

// TestDatabaseOutageNeverDeadLetters keeps the database down for more than twice
// maxReceiveCount × visibility timeout while task results keep arriving, with the deployed
// maxReceiveCount. The state manager pauses consumption instead of spending receive counts:
// nothing reaches the dead-letter queue, every stack converges in order once the database is
// back, and the metric the DatabaseUnavailable alarm watches is written throughout.
//
// What this does not prove: the Lambda path pauses the event-source mapping through the Lambda
// API instead of stopping a poller (queue.EventSourceMapping; test/lambda_mode_test.go
// TestStateManagerInLambdaMode shows the pause and the resume through the Lambda API).
func TestDatabaseOutageNeverDeadLetters(t *testing.T) {
	t.Parallel()
	srv := harness.NewDatabaseServer(t, harness.TLSOnly(), harness.Durable())
	s := newSystem(t, systemOptions{server: srv, maxReceiveCount: deployed.EventQueueMaxReceiveCount})
	s.setQueueAttributes(s.eventURL, map[string]string{"VisibilityTimeout": strconv.Itoa(int(outageVisibility / time.Second))})
	// RETRY_DELAY=0s: failed events come back after the queue's visibility timeout, as in Lambda.
	proc := s.startStateManager(2, "DATABASE_PROBE_INTERVAL="+outageProbeEvery.String(),
		"SWEEP_INTERVAL=1s", "OUTBOX_SWEEP_AGE=3s", "RETRY_DELAY=0s")
	outage := time.Duration(deployed.EventQueueMaxReceiveCount) * outageVisibility * 2
	outage += 5 * time.Second

	ids := stackIDs("outage", 12)
	s.launchPairs(ids)
	var downAt, upAt time.Time
	s.driveLifecycles(ids, 3*time.Minute, func(states map[string]string) {
		switch {
		case downAt.IsZero() && len(states) == len(ids):
			// Every stack exists and waits for its tasks: stop the database while the results
			// (answered by driveLifecycles during the outage too) queue up.
			srv.Stop(t)
			downAt = time.Now()
		case !downAt.IsZero() && upAt.IsZero() && time.Since(downAt) > outage:
			require.Zero(t, s.queueDepth(s.eventDLQ), "nothing was dead-lettered during the outage")
			require.Contains(t, proc.Output(), `"`+metrics.DatabaseUnavailable+`"`, "the alarm's metric is written while the database is down")
			require.Contains(t, proc.Output(), "pausing consumption")
			srv.Start(t)
			upAt = time.Now()
		}
	}, 0)
	require.False(t, upAt.IsZero(), "the outage happened")
	t.Logf("database down for %s (maxReceiveCount %d × visibility %s = %s)", upAt.Sub(downAt).Round(time.Second),
		deployed.EventQueueMaxReceiveCount, outageVisibility, time.Duration(deployed.EventQueueMaxReceiveCount)*outageVisibility)
	s.requireConverged(ids)
	require.False(t, proc.Exited(), "the state manager outlives the database")
	require.Contains(t, proc.Output(), "consumption resumed")
	require.Less(t, strings.Count(proc.Output(), `"outcome":"paused"`), 3, "one pause per outage per process")
}
