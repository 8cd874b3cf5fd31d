package faults_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/faults"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestNormalBuildHasNoFaultPoints builds both functions as they ship and
// with the faultinject tag, and checks from the binaries themselves that
// only the tagged ones hold the fault points and read the arming variable.
func TestNormalBuildHasNoFaultPoints(t *testing.T) {
	t.Parallel()
	require.False(t, faults.Enabled, "tests are built without the tag")
	for _, pkg := range []string{"./functions/statemanager", "./functions/satisfier"} {
		plain := harness.BuildBinary(t, pkg)
		tagged := harness.BuildBinaryWithTags(t, pkg, faults.BuildTag)

		require.Empty(t, faultSymbols(t, plain), "%s: a normal build links no fault code", pkg)
		require.False(t, contains(t, plain, faults.EnvVar), "%s: a normal build never reads %s", pkg, faults.EnvVar)

		require.Contains(t, faultSymbols(t, tagged), "github.com/stackseam/stackseam/internal/faults.SendBatch", pkg)
		require.True(t, contains(t, tagged, faults.EnvVar), "%s: the tagged build reads %s", pkg, faults.EnvVar)
	}
}

// faultSymbols lists the symbols of package faults in a binary (go tool nm).
func faultSymbols(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	require.NoError(t, err)
	var syms []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.Contains(fields[len(fields)-1], "stackseam/internal/faults.") {
			syms = append(syms, fields[len(fields)-1])
		}
	}
	return syms
}

func contains(t *testing.T, bin, s string) bool {
	t.Helper()
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	return bytes.Contains(data, []byte(s))
}
