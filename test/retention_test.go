package test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSweepPrunesProcessedEventsAndRejections runs the state manager binary with its retention
// settings: the sweep deletes processed event keys and rejections past their retention, keeps
// recent ones, and keeps the history.
func TestSweepPrunesProcessedEventsAndRejections(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	s.startStateManager(1, "SWEEP_INTERVAL=1s", "PROCESSED_EVENTS_RETENTION=480h", "REJECTIONS_RETENTION=240h")

	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := s.db.Exec(s.ctx, sql, args...)
		require.NoError(t, err)
	}
	now := time.Now()
	exec(`INSERT INTO processed_events (key, stack_id, processed_at) VALUES
		('event:s:old', 's', $1), ('event:s:recent', 's', $2)`, now.Add(-21*24*time.Hour), now.Add(-19*24*time.Hour))
	exec(`INSERT INTO rejections (at, message_id, reason) VALUES ($1, 'old', 'malformed JSON'), ($2, 'recent', 'malformed JSON')`,
		now.Add(-11*24*time.Hour), now.Add(-9*24*time.Hour))
	exec(`INSERT INTO history (stack_id, at, kind, event) VALUES ('s', $1, 'rejected', 'X')`, now.Add(-400*24*time.Hour))

	require.Eventually(t, func() bool {
		return s.count("SELECT count(*) FROM processed_events WHERE key = 'event:s:old'")+
			s.count("SELECT count(*) FROM rejections WHERE message_id = 'old'") == 0
	}, 30*time.Second, 100*time.Millisecond, "the sweep prunes past the configured retention")
	require.Equal(t, 1, s.count("SELECT count(*) FROM processed_events WHERE key = 'event:s:recent'"))
	require.Equal(t, 1, s.count("SELECT count(*) FROM rejections WHERE message_id = 'recent'"))
	require.Equal(t, 1, s.count("SELECT count(*) FROM history WHERE stack_id = 's'"), "history is kept")
}

// TestTooShortEventKeyRetentionIsRefused: a retention shorter than the event queue's would let a
// redelivered message be applied twice; the state manager refuses to start with it.
func TestTooShortEventKeyRetentionIsRefused(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	proc := s.launchStateManager("PROCESSED_EVENTS_RETENTION=24h")
	require.Error(t, proc.Wait(), "the state manager does not start")
	require.Contains(t, proc.Output(), "PROCESSED_EVENTS_RETENTION=24h0m0s is shorter than the event queue's retention")
}
