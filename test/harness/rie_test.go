package harness_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// The emulator runs a bootstrap built as the construct bundles it in Lambda mode, with the
// function's timeout, memory and environment, and every way an invocation can end is told apart
// as Lambda tells it to an event-source mapping.
func TestRIERunsABootstrapInLambdaMode(t *testing.T) {
	t.Parallel()
	bootstrap := harness.BuildBootstrap(t, "./test/harness/testdata/rieprobe")
	r := harness.StartRIE(t, "rieprobe", harness.RIEConfig{
		Bootstrap: bootstrap, Env: []string{"PROBE_SETTING=from-the-template"},
		Name: "probe", Timeout: 3 * time.Second, MemoryMB: 256,
	})
	ctx := context.Background()
	invoke := func(payload string) harness.RIEResult {
		res, err := r.Invoke(ctx, []byte(payload))
		require.NoError(t, err)
		return res
	}

	ok := invoke(`{}`)
	require.False(t, ok.Failed, string(ok.Payload))
	var got map[string]any
	require.NoError(t, json.Unmarshal(ok.Payload, &got))
	require.Equal(t, true, got["runtimeAPI"], "Lambda mode: the runtime API is set")
	require.Equal(t, filepath.Dir(bootstrap), got["taskRoot"])
	require.Equal(t, filepath.Dir(bootstrap), got["wd"])
	require.Equal(t, "256", got["memory"])
	require.Equal(t, "probe", got["name"])
	require.Equal(t, "from-the-template", got["setting"])
	// The deadline comes from the function's timeout (the emulator's default is 300s).
	require.LessOrEqual(t, got["deadlineIn"], 3.0)
	require.Greater(t, got["deadlineIn"], 0.0)

	fail := invoke(`{"do": "fail"}`)
	require.True(t, fail.Failed)
	require.False(t, fail.TimedOut)
	require.Contains(t, string(fail.Payload), "failed on purpose")

	crash := invoke(`{"do": "panic"}`)
	require.True(t, crash.Failed)
	require.Contains(t, string(crash.Payload), "panicked on purpose")

	slow := invoke(`{"do": "sleep", "for": "10s"}`)
	require.True(t, slow.Failed)
	require.True(t, slow.TimedOut, string(slow.Payload))

	// After a crash and a timeout the environment starts the function again.
	require.False(t, invoke(`{}`).Failed)

	// One invocation at a time: concurrent calls wait for each other rather than being refused.
	var wg sync.WaitGroup
	results := make([]harness.RIEResult, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = invoke(`{"do": "sleep", "for": "200ms"}`)
		}()
	}
	wg.Wait()
	for _, res := range results {
		require.False(t, res.Failed, string(res.Payload))
	}
	require.Contains(t, r.Output(), "REPORT RequestId")
}
