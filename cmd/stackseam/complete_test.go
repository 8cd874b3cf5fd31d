package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/signing"
	"github.com/stackseam/stackseam/test/harness"
)

// TestCompleteSendsASignedResultByTaskName: an operator's result for a manual step names the task,
// parses as the state manager parses it, and carries the signature of the key the state manager
// checks (here RESULT_SIGNING_KEY; deployed, the secret).
func TestCompleteSendsASignedResultByTaskName(t *testing.T) {
	t.Parallel()
	url, _ := harness.CreateQueue(t, "cli-complete", true, 5)
	secret := strings.Repeat("s", 40)
	key, err := signing.NewKey(secret)
	require.NoError(t, err)
	env := awsEnv(t, map[string]string{"EVENT_QUEUE_URL": url, "RESULT_SIGNING_KEY": secret})

	code, stdout, stderr := runEnv(t, env, now, "complete", "--stack", "feature/login", "--task", "approve")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "sent TASK_COMPLETED to stack feature/login\n", stdout)
	m := receiveOne(t, url)
	require.True(t, key.Verify(m.raw, m.signature), "signed with the key: %s", m.raw)
	ev, err := message.ParseEvent([]byte(m.raw))
	require.NoError(t, err)
	require.Equal(t, message.EventTaskCompleted, ev.Event)
	require.Equal(t, "approve", ev.Task.Name)
	require.Empty(t, ev.TaskRunID)

	code, _, stderr = runEnv(t, env, now, "complete", "--stack", "feature/login", "--task", "approve", "--failed", "rejected by QA")
	require.Equal(t, exitOK, code, stderr)
	m = receiveOne(t, url)
	require.True(t, key.Verify(m.raw, m.signature))
	ev, err = message.ParseEvent([]byte(m.raw))
	require.NoError(t, err)
	require.Equal(t, message.EventTaskError, ev.Event)
	require.Equal(t, "rejected by QA", ev.Description)

	// No key: the result goes unsigned, and the command says so.
	delete(env, "RESULT_SIGNING_KEY")
	code, _, stderr = runEnv(t, env, now, "complete", "--stack", "s", "--task", "approve")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stderr, "the result goes unsigned")
	require.Empty(t, receiveOne(t, url).signature)

	code, _, stderr = runEnv(t, env, now, "complete", "--stack", "s")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--stack and --task are required")
}
