package main

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConsoleScale measures the console's answers with 10,000 stacks stored (and history rows
// for each). It runs only when STACKSEAM_CONSOLE_SCALE=1 and asserts nothing about time: it logs
// the figures (README.md, "Web console").
func TestConsoleScale(t *testing.T) {
	if os.Getenv("STACKSEAM_CONSOLE_SCALE") != "1" {
		t.Skip("set STACKSEAM_CONSOLE_SCALE=1 to measure the console with 10,000 stacks")
	}
	b := setupConsole(t, nil)
	ctx := context.Background()
	_, err := b.rec.st.Pool().Exec(ctx, `
		INSERT INTO stacks (id, machine, state, tasks, version, created_at, state_entered_at, last_activity_at, updated_at)
		SELECT 'scale-' || i, CASE WHEN i % 2 = 0 THEN 'qa-env' ELSE 'feature-env' END,
			CASE WHEN i % 3 = 0 THEN 'RUN' ELSE 'DEPLOY' END,
			jsonb_build_array(jsonb_build_object('name', 'deploy', 'status', 'pending', 'runId', 'r' || i, 'attempt', 1,
				'dispatchedAt', now() - interval '1 hour')),
			3, now() - interval '2 hours', now() - interval '1 hour', now() - interval '1 hour', now()
		FROM generate_series(1, 10000) AS i;
		INSERT INTO history (stack_id, machine, at, kind, event, from_state, to_state)
		SELECT 'scale-' || (i % 10000 + 1), 'qa-env', now() - interval '1 hour', 'transition', 'LAUNCH', 'INIT', 'DEPLOY'
		FROM generate_series(1, 50000) AS i;
		ANALYZE`)
	require.NoError(t, err)
	for name, f := range map[string]func() error{
		"StackSummaries": func() error {
			_, _, err := b.srv.data.StackSummaries(ctx, stackFilter{Limit: maxListed}, now)
			return err
		},
		"SettledRuns": func() error { _, err := b.srv.data.SettledRuns(ctx, now.Add(-stuckWindow)); return err },
		"Troubles":    func() error { _, err := b.srv.data.Troubles(ctx, now.Add(-stuckWindow)); return err },
		"StateCounts": func() error { _, err := b.srv.data.StateCounts(ctx); return err },
	} {
		start := time.Now()
		require.NoError(t, f())
		t.Logf("%-45s %6.1f ms", name, float64(time.Since(start).Microseconds())/1000)
	}
	for _, path := range []string{"/", "/api/stacks", "/api/stacks?machine=qa-env&state=RUN", "/api/stacks?q=scale-99",
		"/api/stack?id=scale-42", "/api/machines", "/api/machine?name=qa-env", "/api/machine/graph.svg?name=qa-env"} {
		for i := 0; i < 3; i++ { // the first answer warms caches; the last is logged
			start := time.Now()
			res := b.get(t, path, nil)
			require.Equal(t, http.StatusOK, res.StatusCode, path)
			if i == 2 {
				t.Logf("%-45s %6.1f ms", path, float64(time.Since(start).Microseconds())/1000)
			}
		}
	}
}
