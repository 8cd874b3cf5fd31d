package harness

import (
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// TofuVersion is the OpenTofu version the tests run. The Makefile's
// TOFU_VERSION must be the same (TestVersionsMatchMakefile checks it).
const TofuVersion = localenv.TofuVersion

// TofuBinary returns the Terraform-compatible binary the tests run:
// STACKSEAM_TEST_TERRAFORM when set (a terraform or tofu binary), otherwise
// OpenTofu TofuVersion built for the host at
// .cache/tofu/<version>/<goos>_<goarch>/tofu, which `make tofu` builds.
// When that file is missing the first call builds it the same way (about
// five minutes on two cores), under a file lock so that test processes
// running at the same time build it once.
func TofuBinary(t testing.TB) string {
	t.Helper()
	return toolBinary(t, localenv.TofuBinary)
}

// toolBinary returns the path of a tool the tests run (OpenTofu, the RIE), which find looks up or
// builds for the repository at root.
func toolBinary(t testing.TB, find func(root string) (string, error)) string {
	t.Helper()
	path, err := find(RepoRoot(t))
	failOn(t, err)
	return path
}
