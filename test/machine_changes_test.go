package test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/metrics"
)

// TestMachineChangesNeverStrandStacks drives the shipped state manager while
// a stack's machine file is broken, deleted, fixed and changed (README,
// "When a machine file changes"): results always settle and the stack moves
// on, on the last valid version it ran on, even in a state manager started
// after the file broke (it reads the version back from the database).
func TestMachineChangesNeverStrandStacks(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	dir := t.TempDir()
	valid := testdataMachine(t, "pair")
	var file string
	write := func(body string) {
		t.Helper()
		file = writeMachine(t, dir, "pair", body)
		// A new modification time even within the file system's clock step, so the
		// catalog sees the change.
		later := time.Now().Add(time.Duration(len(body)) * time.Millisecond)
		require.NoError(t, os.Chtimes(file, later, later))
	}
	write(valid)
	env := []string{"MACHINES_DIR=" + dir, "MACHINES_REFRESH=100ms"}
	sm := s.startStateManager(2, env...)

	// Two stacks on the valid file: one provisioning, one running.
	s.sendEvent("changes-1", "LAUNCH", map[string]any{"machine": "pair"})
	tasks := s.receiveTasks(2)
	s.waitState("changes-1", "PROVISION")
	s.sendEvent("changes-2", "LAUNCH", map[string]any{"machine": "pair"})
	for _, task := range s.receiveTasks(2) {
		s.send("changes-2", s.result(task, message.EventTaskCompleted, nil))
	}
	s.waitState("changes-2", "RUN")

	// A typo breaks the file. A state manager started now never saw it valid.
	write(strings.Replace(valid, "action: advance, state: RUN", "action: advnce, state: RUN", 1))
	require.NoError(t, sm.Stop())
	sm = s.startStateManager(2, env...)

	s.send("changes-1", s.result(tasks[0], message.EventTaskCompleted, nil))
	require.Eventually(t, func() bool {
		st := s.stack("changes-1")
		return st != nil && completed(st.Tasks) == 1
	}, 60*time.Second, 50*time.Millisecond, "the first result never settled while the file was broken")
	sm.WaitForOutput(t, `"`+metrics.MachineInvalid+`"`, 30*time.Second)

	// The file is deleted: the last result settles and NEXT moves the stack on.
	require.NoError(t, os.Remove(file))
	time.Sleep(300 * time.Millisecond) // past MACHINES_REFRESH, so the catalog has seen it gone
	s.send("changes-1", s.result(tasks[1], message.EventTaskCompleted, nil))
	s.waitState("changes-1", "RUN")
	// A new stack cannot start on a machine whose file is gone.
	s.sendEvent("changes-3", "LAUNCH", map[string]any{"machine": "pair"})
	require.Eventually(t, func() bool {
		return s.count(`SELECT count(*) FROM rejections WHERE stack_id = 'changes-3'`) == 1
	}, 60*time.Second, 50*time.Millisecond, "a new stack on a deleted machine was not rejected")
	require.Nil(t, s.stack("changes-3"))

	// A new valid version renames RUN to LIVE and DESTROYED to GONE. changes-2 is in RUN, which
	// the new version lacks: it keeps running on the version it ran on until it leaves RUN.
	write(strings.NewReplacer("RUN", "LIVE", "DESTROYED", "GONE").Replace(valid))
	time.Sleep(300 * time.Millisecond)
	s.sendEvent("changes-2", "ACCESS", nil)
	s.sendEvent("changes-2", "DESTROY", nil)
	teardown := s.receiveTasks(1)
	require.Equal(t, "teardown", teardown[0].Task.Name)
	s.waitState("changes-2", "TEARDOWN")
	// TEARDOWN exists in the new version, so the result is applied with it: NEXT goes to GONE.
	s.send("changes-2", s.result(teardown[0], message.EventTaskCompleted, nil))
	s.waitRemoved("changes-2")
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->GONE"}, s.transitions("changes-2"))

	// Fixed again (the original file): changes-1, in RUN, works on as before.
	write(valid)
	time.Sleep(300 * time.Millisecond)
	s.sendEvent("changes-1", "DESTROY", nil)
	teardown = s.receiveTasks(1)
	s.send("changes-1", s.result(teardown[0], message.EventTaskCompleted, nil))
	s.waitRemoved("changes-1")
	require.Equal(t, []string{"INIT->PROVISION", "PROVISION->RUN", "RUN->TEARDOWN", "TEARDOWN->DESTROYED"}, s.transitions("changes-1"))

	// One version is stored: the original. The broken one never ran, and the only event
	// decided with the LIVE version removed its stack, so no stack was pinned to it.
	require.Equal(t, 1, s.count(`SELECT count(*) FROM machine_versions WHERE name = 'pair'`))
	require.Zero(t, s.count(`SELECT count(*) FROM rejections WHERE stack_id IN ('changes-1', 'changes-2')`))
	require.Zero(t, s.queueDepth(s.eventDLQ))
}

func completed(tasks []message.StackTask) int {
	n := 0
	for _, t := range tasks {
		if t.Status == message.TaskCompleted {
			n++
		}
	}
	return n
}

// TestTimeToLiveOutlivesADeletedMachineFile deletes a machine file while a
// stack idles in a state with a ttl, and restarts the state manager: the
// sweep still sends the ttl event by the last stored version, and the stack
// is removed.
func TestTimeToLiveOutlivesADeletedMachineFile(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	dir := t.TempDir()
	// A longer ttl than the fixture's, so the file is surely gone before it expires.
	file := writeMachine(t, dir, "ttl", strings.Replace(testdataMachine(t, "ttl"), "after: 2s", "after: 6s", 1))
	env := []string{"MACHINES_DIR=" + dir, "MACHINES_REFRESH=100ms", "SWEEP_INTERVAL=1s"}
	sm := s.startStateManager(1, env...)

	s.sendEvent("ttl-gone", "LAUNCH", map[string]any{"machine": "ttl"})
	s.waitState("ttl-gone", "RUN")
	require.NoError(t, os.Remove(file))
	require.NoError(t, sm.Stop())
	sm = s.startStateManager(1, env...)

	s.waitRemoved("ttl-gone")
	require.Equal(t, []string{"INIT->RUN", "RUN->GONE"}, s.transitions("ttl-gone"))
	sm.WaitForOutput(t, `"`+metrics.MachineInvalid+`"`, 30*time.Second)
}
