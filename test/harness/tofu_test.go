package harness_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// TestVersionsMatchMakefile: the versions the tests run are the ones `make tofu` and `make rie`
// build into .cache.
func TestVersionsMatchMakefile(t *testing.T) {
	t.Parallel()
	makefile, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "Makefile"))
	require.NoError(t, err)
	for variable, version := range map[string]string{"TOFU_VERSION": harness.TofuVersion, "RIE_VERSION": harness.RIEVersion} {
		m := regexp.MustCompile(`(?m)^` + variable + `\s*:?=\s*(\S+)`).FindSubmatch(makefile)
		require.NotNil(t, m, "the Makefile defines %s", variable)
		require.Equal(t, version, string(m[1]), variable)
	}
}

func TestTofuBinaryRuns(t *testing.T) {
	t.Parallel()
	bin := harness.TofuBinary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err, string(out))
	if os.Getenv("STACKSEAM_TEST_TERRAFORM") == "" {
		require.Contains(t, string(out), "OpenTofu "+harness.TofuVersion)
	}
}
