package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The function reads its environment through its declared list (internal/settings), so the
// construct's test can check the template against that list; this proves the list has nothing the
// function does not read, and the panic on an undeclared name proves the converse.
func TestReadsExactlyTheDeclaredVariables(t *testing.T) {
	t.Setenv("EVENT_QUEUE_URL", "http://127.0.0.1:1/000000000000/events.fifo")
	t.Setenv("TASK_QUEUE_URL", "http://127.0.0.1:1/000000000000/tasks")

	_ = vars.LogLevel() // main reads LOG_LEVEL before the rest, for its logger
	_, err := readOptions(false)
	require.NoError(t, err)
	require.ElementsMatch(t, vars.Names(), vars.Read())
}

// A start that fails names every missing or invalid setting at once, not one per attempt.
func TestEveryBadSettingIsNamedAtOnce(t *testing.T) {
	t.Setenv("WORKERS", "-1")
	t.Setenv("TASK_TIMEOUT", "forever")
	_, err := readOptions(false)
	require.Error(t, err)
	for _, want := range []string{"WORKERS", "TASK_TIMEOUT", "EVENT_QUEUE_URL is required", "TASK_QUEUE_URL is required"} {
		require.ErrorContains(t, err, want)
	}
}
