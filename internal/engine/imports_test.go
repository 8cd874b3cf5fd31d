package engine_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDecidingNeedsNoAWS checks the build graph: the engine decides from a stack, a machine and
// an event, and the machine format is parsed from bytes, so neither may link the AWS SDK (which
// the loaders in internal/catalog and the functions' mains bring in), and the format package
// imports nothing that reads files or talks to the network.
func TestDecidingNeedsNoAWS(t *testing.T) {
	t.Parallel()
	const module = "github.com/stackseam/stackseam/internal/"
	for _, pkg := range []string{module + "engine", module + "machine"} {
		deps := goList(t, "-deps", pkg)
		require.Contains(t, deps, pkg, "go list names the package itself")
		for _, d := range deps {
			require.False(t, strings.HasPrefix(d, "github.com/aws/"), "%s depends on %s", pkg, d)
		}
	}
	direct := goList(t, "-f", `{{join .Imports "\n"}}`, module+"machine")
	require.Contains(t, direct, "go.yaml.in/yaml/v3", "go list lists the format's imports")
	for _, io := range []string{"os", "io/fs", "net", "net/http", "os/exec", module + "catalog"} {
		require.NotContains(t, direct, io, "package machine does no I/O")
	}
}

// goList runs `go list` with args and returns its output's lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	require.NoError(t, err, "go list %s", strings.Join(args, " "))
	return strings.Fields(string(out))
}
