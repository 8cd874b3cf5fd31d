package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/query"
)

// TestStacksStuckListsOverdueAndForceSettledRuns: a run past its deadline that no sweep settled
// yet, and runs the state manager failed itself (by deadline, by dead letter) within --since, are
// listed with why; a healthy stack and an older forced failure are not.
func TestStacksStuckListsOverdueAndForceSettledRuns(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	r.deadlines = engine.Deadlines{DefaultTimeout: 15 * time.Minute, Visibility: 90 * time.Minute, Receives: 3} // 5h15m
	hour := time.Hour
	// stuck-1 launched 6 hours before now: both runs are past their deadline (5h15m for
	// provision-infra, 4h45m for seed-database, whose timeoutSeconds is 5 minutes), none settled.
	r.apply(-3*hour, message.Event{StackID: "stuck-1", Event: "LAUNCH", Machine: "feature-env"})
	// stuck-2: one run failed by its deadline 1 hour ago, the other by its dead letter.
	s := r.apply(-4*hour, message.Event{StackID: "stuck-2", Event: "LAUNCH", Machine: "feature-env"})
	forced := result(s, "provision-infra", message.EventTaskError, "no result within 5h15m0s", nil)
	forced.SettledBy = message.SettledByDeadline
	r.apply(2*hour, forced)
	dead := result(s, "seed-database", message.EventTaskError, "dead-lettered after 3 receives", nil)
	dead.SettledBy = message.SettledByDeadLetter
	r.apply(2*hour+30*time.Minute, dead)
	// old: forced long before --since; fine: nothing wrong.
	s = r.apply(-30*hour, message.Event{StackID: "old", Event: "LAUNCH", Machine: "feature-env"})
	old := result(s, "provision-infra", message.EventTaskError, "no result", nil)
	old.SettledBy = message.SettledByDeadline
	r.apply(-24*hour, old)
	r.apply(-24*hour, result(s, "seed-database", message.EventTaskCompleted, "", nil))
	s = r.apply(2*hour, message.Event{StackID: "fine", Event: "LAUNCH", Machine: "feature-env"})

	code, stdout, stderr := runEnv(t, r.env(), now, "stacks", "--stuck")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, `STACK    MACHINE      STATE      TASK             RUN    WHY                       SINCE
stuck-1  feature-env  PROVISION  provision-infra  run-1  overdue, not settled yet  45m00s
stuck-1  feature-env  PROVISION  seed-database    run-2  overdue, not settled yet  1h15m
stuck-2  feature-env  PROVISION  provision-infra  run-3  settled by deadline       1h00m
stuck-2  feature-env  PROVISION  seed-database    run-4  settled by dead-letter    30m00s
`, stdout)

	code, stdout, stderr = runEnv(t, r.env(), now, "stacks", "--stuck", "--since", "48h", "--output", "json")
	require.Equal(t, exitOK, code, stderr)
	var runs []query.StuckRun
	require.NoError(t, json.Unmarshal([]byte(stdout), &runs))
	require.Len(t, runs, 5, "the older forced failure is within 48 hours")
	require.Equal(t, "old", runs[2].StackID, "force-settled runs follow the overdue ones, oldest first")
	require.Equal(t, "no result", runs[2].Reason)

	code, stdout, _ = runEnv(t, r.env(), now, "show", "stuck-1")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "pending for 6h00m, overdue by 45m00s")
	code, stdout, _ = runEnv(t, r.env(), now, "show", "fine")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "pending for 1h00m, deadline in 4h15m")

	code, stdout, _ = runEnv(t, r.env(), now, "stacks", "--stuck", "--machine", "qa-env")
	require.Equal(t, exitOK, code)
	require.Equal(t, "no stuck stacks\n", stdout)

	// Through a deployed query function (--stack-name), the same answers.
	remote, _, _ := deployedEnv(t, r)
	for _, args := range [][]string{{"stacks", "--stuck"}, {"stacks", "--stuck", "--since", "48h", "--output", "json"}} {
		_, viaDatabase, _ := runEnv(t, r.env(), now, args...)
		code, viaInvoke, stderr := runEnv(t, remote, now, args...)
		require.Equal(t, exitOK, code, stderr)
		require.Equal(t, viaDatabase, viaInvoke, "%v", args)
	}
}
