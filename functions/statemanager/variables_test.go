package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The function reads its environment through its declared list (functions/settings), so the
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
