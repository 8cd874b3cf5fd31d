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

func TestTofuVersionMatchesMakefile(t *testing.T) {
	t.Parallel()
	makefile, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^TOFU_VERSION\s*:?=\s*(\S+)`).FindSubmatch(makefile)
	require.NotNil(t, m, "the Makefile defines TOFU_VERSION")
	require.Equal(t, harness.TofuVersion, string(m[1]))
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

func TestRIEVersionMatchesMakefile(t *testing.T) {
	t.Parallel()
	makefile, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^RIE_VERSION\s*:?=\s*(\S+)`).FindSubmatch(makefile)
	require.NotNil(t, m, "the Makefile defines RIE_VERSION")
	require.Equal(t, harness.RIEVersion, string(m[1]))
}
