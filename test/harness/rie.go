package harness

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// RIEVersion is the Lambda Runtime Interface Emulator version the tests run. The Makefile's
// RIE_VERSION must be the same (TestVersionsMatchMakefile checks it).
const RIEVersion = localenv.RIEVersion

// RIE is one Runtime Interface Emulator running one function (see localenv.RIE), with its output.
type RIE struct {
	*localenv.RIE
	out *processOutput
}

// Output returns everything the emulator and the function wrote so far.
func (r *RIE) Output() string { return r.out.String() }

// RIEConfig is one function run under the emulator (see localenv.RIEConfig).
type RIEConfig = localenv.RIEConfig

// RIEBinary returns the Runtime Interface Emulator: STACKSEAM_TEST_RIE when set, otherwise the
// one `make rie` builds into .cache/rie, built on first use when missing (about a minute).
func RIEBinary(t testing.TB) string {
	t.Helper()
	return toolBinary(t, localenv.RIEBinary)
}

// bootstraps holds the bootstraps BuildBootstrap builds.
var bootstraps buildCache

// BuildBootstrap builds a function's main package (such as "./functions/satisfier") as the
// construct bundles it (CGO_ENABLED=0, -tags lambda.norpc, -trimpath, named bootstrap) for the
// host's architecture, once per test process, and returns the bootstrap's path.
func BuildBootstrap(t testing.TB, pkg string) string {
	t.Helper()
	root := RepoRoot(t)
	dir := filepath.Join(workDir(t), "lambda", strings.Trim(filepath.ToSlash(pkg), "./"))
	return bootstraps.get(t, pkg, func() (string, error) { return localenv.BuildBootstrap(root, dir, pkg) })
}

// StartRIE starts cfg's function under the emulator (Binary defaults to RIEBinary), its output
// (cfg.Out is replaced) going to the test log with the prefix name; it is stopped at the end of
// the test.
func StartRIE(t testing.TB, name string, cfg RIEConfig) *RIE {
	t.Helper()
	if cfg.Binary == "" {
		cfg.Binary = RIEBinary(t)
	}
	out := &processOutput{t: t}
	out.setPrefix(name + ": ")
	cfg.Out = out
	t.Cleanup(out.close)
	r, err := localenv.StartRIE(cfg)
	failOn(t, err)
	t.Cleanup(r.Stop)
	return &RIE{RIE: r, out: out}
}
