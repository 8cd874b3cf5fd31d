package test

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// The demo (`make demo`, test/demo) is run here as a user runs it: it
// starts its own PostgreSQL, emulator and functions, so it only needs the
// environment the Go toolchain needs.

// startDemo starts the demo program with this process's environment (the Go
// caches, the STACKSEAM_TEST_* overrides).
func startDemo(t *testing.T) *harness.Process {
	t.Helper()
	bin := harness.BuildBinary(t, "./test/demo")
	harness.TofuBinary(t) // build it here, under the harness's lock, if it is missing
	return harness.StartProcess(t, bin, os.Environ(), "-timeout", "8m")
}

func TestDemoRunsAStackThroughItsLife(t *testing.T) {
	t.Parallel()
	p := startDemo(t)
	select {
	case <-p.Done():
	case <-time.After(9 * time.Minute):
		t.Fatalf("the demo did not finish; its output:\n%s", p.Output())
	}
	out := p.Output()
	require.Equal(t, 0, p.ExitCode(), out)
	for _, want := range []string{
		"$ stackseam validate machines/\nOK feature-env\nOK qa-env\nOK reviewed-env\n",
		"sent LAUNCH to stack feature-123 (machine feature-env, metadata branch=feature/123 owner=alice)",
		"sent LAUNCH to stack qa (machine qa-env, metadata appVersion=2.4.1)",
		// The live timeline.
		"LAUNCH: INIT → PROVISION after 0ms in INIT · branch=feature/123 owner=alice",
		"task provision-infra completed in",
		"outputs instances, url", // Terraform's outputs
		"task seed-database completed in",
		"outputs databaseUrl, dataset", // the fake Lambda's
		"NEXT: PROVISION → RUN after",
		"ACCESS: no-op in RUN · lastAccess=",
		"DESTROY: RUN → DEPROVISION after",
		"task destroy-infra completed in",
		"removed in DESTROYED after",
		// show, stacks, the final history and the graph.
		"url          https://feature-123.dev.example.com",
		"$ stackseam stacks\nno stacks\n",
		"$ stackseam history feature-123\nstack feature-123 · machine feature-env · removed ",
		"time in each state\n  INIT",
		"task runs\n  provision-infra  PROVISION    attempt 1  completed",
		"$ stackseam graph feature-env\nflowchart LR\n",
		// The reviewed environment: a plan, an approval with a name on it, the approved plan applied.
		"sent LAUNCH to stack prod (machine reviewed-env, metadata release=2.0.0)",
		"$ stackseam plan prod\nstack prod · machine reviewed-env · state AWAITING-APPROVAL",
		"  2 to add, 0 to change, 0 to destroy, 0 to replace\n  create terraform_data.app\n  create terraform_data.deployment\n",
		"sent APPROVE to stack prod as ",
		"CHANGES: PLAN → AWAITING-APPROVAL after",
		"raised by task plan (changes)",
		`APPROVE: AWAITING-APPROVAL → APPLY after`,
		`: "first deployment, reviewed"`,
		"task apply completed in",
		"NEXT: APPLY → RUN after",
		"    web console: open http://127.0.0.1:",
		"==> stopped the functions, the fake Lambda, the emulator and PostgreSQL",
		"demo finished in ",
	} {
		require.Contains(t, out, want)
	}
	require.Regexp(t, `feature-123  feature-env  RUN    0        0`, out, "stacks lists both stacks in RUN")
	require.Regexp(t, `qa +qa-env +RUN`, out)
	dir, pids := demoResources(t, out)
	requireGone(t, dir, pids)
}

func TestDemoCleansUpOnInterrupt(t *testing.T) {
	t.Parallel()
	p := startDemo(t)
	p.WaitForOutput(t, "sent LAUNCH to stack qa", 5*time.Minute)
	require.NoError(t, p.Signal(syscall.SIGINT))
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
		t.Fatalf("the demo did not stop after SIGINT; its output:\n%s", p.Output())
	}
	out := p.Output()
	require.Equal(t, 130, p.ExitCode(), out)
	require.Contains(t, out, "interrupted: everything the demo started is stopped.")
	dir, pids := demoResources(t, out)
	requireGone(t, dir, pids)
}

// demoResources finds the work directory and the functions' pids the demo
// printed.
func demoResources(t *testing.T, out string) (dir string, pids []int) {
	t.Helper()
	m := regexp.MustCompile(`statemanager pid (\d+), satisfier pid (\d+); their logs: (\S+)/logs`).FindStringSubmatch(out)
	require.NotNil(t, m, "the demo names its processes and work directory:\n%s", out)
	for _, s := range m[1:3] {
		pid, err := strconv.Atoi(s)
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	require.True(t, strings.HasPrefix(m[3], os.TempDir()), m[3])
	return m[3], pids
}

// requireGone checks that the demo left nothing behind.
func requireGone(t *testing.T, dir string, pids []int) {
	t.Helper()
	_, err := os.Stat(dir)
	require.True(t, errors.Is(err, os.ErrNotExist), "the work directory %s is removed (%v)", dir, err)
	for _, pid := range pids {
		require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "process %d is gone", pid)
	}
}
