package applier

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
)

// TestSweepPrunesPastRetentionInBoundedBatches: the sweep deletes processed event keys and
// rejections older than their retention — a backlog over several sweeps, each bounded — keeps the
// recent ones and the history, and a negative retention keeps everything.
func TestSweepPrunesPastRetentionInBoundedBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	now := time.Now().UTC()
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := b.store.Pool().Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	// 60,002 old keys (more than one sweep prunes), 3 recent ones; 7 old rejections, 2 recent.
	exec(`INSERT INTO processed_events (key, stack_id, processed_at)
		SELECT 'old-' || g, 's', $1::timestamptz - g * interval '1 second' FROM generate_series(1, 60002) g`, now.Add(-31*24*time.Hour))
	exec(`INSERT INTO processed_events (key, stack_id, processed_at)
		SELECT 'new-' || g, 's', $1 FROM generate_series(1, 3) g`, now.Add(-29*24*time.Hour))
	for i := range 9 {
		at := now.Add(-91 * 24 * time.Hour)
		if i >= 7 {
			at = now.Add(-time.Hour)
		}
		exec(`INSERT INTO rejections (at, message_id, reason) VALUES ($1, $2, 'malformed JSON')`, at, fmt.Sprint("m", i))
	}
	exec(`INSERT INTO history (stack_id, at, kind, event, machine) VALUES ('s', $1, 'rejected', 'X', 'm')`, now.Add(-400*24*time.Hour))

	app := &Applier{Store: b.store, Machines: catalog.NewDir(t.TempDir(), catalog.Options{}),
		Now: func() time.Time { return now }}

	kept := *app
	kept.Retention = Retention{ProcessedEvents: -1, Rejections: -1}
	res, err := kept.Sweep(ctx, time.Minute)
	require.NoError(t, err)
	require.Zero(t, res.PrunedEvents+res.PrunedRejections, "a negative retention keeps everything")

	res, err = app.Sweep(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 50000, res.PrunedEvents, "one sweep prunes at most 10 batches of 5,000")
	require.Equal(t, 7, res.PrunedRejections)
	res, err = app.Sweep(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 10002, res.PrunedEvents, "the next sweep goes on with the backlog")
	require.Zero(t, res.PrunedRejections)

	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM processed_events`), "keys within 30 days stay")
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM rejections`), "rejections within 90 days stay")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM history`), "history is kept")

	short := *app
	short.Retention = Retention{ProcessedEvents: 28 * 24 * time.Hour}
	res, err = short.Sweep(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 3, res.PrunedEvents, "a configured retention replaces the default")
}
