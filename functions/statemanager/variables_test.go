package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/applier"
)

// The function reads its environment through its declared list (internal/settings), so the
// construct's test can check the template against that list; this proves the list has nothing the
// function does not read, and the panic on an undeclared name proves the converse.
func TestReadsExactlyTheDeclaredVariables(t *testing.T) {
	t.Setenv("EVENT_QUEUE_URL", "http://127.0.0.1:1/000000000000/events.fifo")
	t.Setenv("TASK_QUEUE_URL", "http://127.0.0.1:1/000000000000/tasks")
	t.Setenv("MACHINES_DIR", t.TempDir())
	_ = vars.LogLevel() // main reads LOG_LEVEL before the rest, for its logger
	_, err := readSettings()
	require.NoError(t, err)
	require.ElementsMatch(t, vars.Names(), vars.Read())
}

func TestRetentionSettings(t *testing.T) {
	r, err := readRetention()
	require.NoError(t, err)
	require.Equal(t, applier.Retention{ProcessedEvents: applier.DefaultProcessedEventsRetention, Rejections: applier.DefaultRejectionsRetention}, r)

	t.Setenv("PROCESSED_EVENTS_RETENTION", "0")
	t.Setenv("REJECTIONS_RETENTION", "240h")
	r, err = readRetention()
	require.NoError(t, err)
	require.Equal(t, applier.Retention{ProcessedEvents: -1, Rejections: 240 * time.Hour}, r, "0 keeps forever")

	t.Setenv("PROCESSED_EVENTS_RETENTION", "72h")
	_, err = readRetention()
	require.ErrorContains(t, err, "PROCESSED_EVENTS_RETENTION=72h0m0s is shorter than the event queue's retention (336h0m0s)")

	t.Setenv("PROCESSED_EVENTS_RETENTION", "14d")
	_, err = readRetention()
	require.ErrorContains(t, err, `PROCESSED_EVENTS_RETENTION="14d"`)
}

// A start that fails names every missing or invalid setting at once, not one per attempt.
func TestEveryBadSettingIsNamedAtOnce(t *testing.T) {
	t.Setenv("WORKERS", "zero")
	t.Setenv("POLL_WAIT", "soon")
	_, err := readSettings()
	require.Error(t, err)
	for _, want := range []string{"WORKERS", "POLL_WAIT", "TASK_QUEUE_URL is required", "EVENT_QUEUE_URL is required", "MACHINES_DIR and MACHINES_BUCKET"} {
		require.ErrorContains(t, err, want)
	}
}

// The intake's messages are forwarded as publishers' events: the approvals queue as the intake
// would turn approvals into publishers' events, and the event queue as the intake would loop.
func TestIntakeMustBeAQueueOfItsOwn(t *testing.T) {
	const events, approvals = "http://127.0.0.1:1/000000000000/events.fifo", "http://127.0.0.1:1/000000000000/approvals.fifo"
	t.Setenv("EVENT_QUEUE_URL", events)
	t.Setenv("APPROVAL_QUEUE_URL", approvals)
	t.Setenv("TASK_QUEUE_URL", "http://127.0.0.1:1/000000000000/tasks")
	t.Setenv("MACHINES_DIR", t.TempDir())
	for _, same := range []string{events, approvals} {
		t.Setenv("INTAKE_QUEUE_URL", same)
		_, err := readSettings()
		require.ErrorContains(t, err, "the intake queue "+same+" must be a queue of its own")
	}
	t.Setenv("INTAKE_QUEUE_URL", "http://127.0.0.1:1/000000000000/intake")
	_, err := readSettings()
	require.NoError(t, err)
}
