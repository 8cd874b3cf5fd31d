package harness

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// BuildBinaryWithTags is BuildBinary with build tags (such as
// "faultinject"): it builds a main package of this module for the host with
// `go build -tags`, once per test process and set of tags, and returns the
// binary's path. The binary lives apart from the untagged one, so a test can
// run both.
func BuildBinaryWithTags(t testing.TB, pkg string, tags ...string) string {
	t.Helper()
	if len(tags) == 0 {
		return BuildBinary(t, pkg)
	}
	tags = slices.Clone(tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	joined := strings.Join(tags, ",")
	root, dir := RepoRoot(t), workDir(t)
	return binaries.get(t, pkg+" -tags "+joined, func() (string, error) { return goBuildTags(root, dir, pkg, joined) })
}

func goBuildTags(root, workDir, pkg, tags string) (string, error) {
	name := strings.Trim(filepath.ToSlash(pkg), "./")
	out := filepath.Join(workDir, "bin-tags-"+strings.ReplaceAll(tags, ",", "-"), name, filepath.Base(pkg))
	return out, localenv.Build(root, out, pkg, strings.Split(tags, ",")...)
}
