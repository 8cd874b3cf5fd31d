package terraform

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunLogKeepsStartAndEnd(t *testing.T) {
	t.Parallel()
	l := newRunLog(100)
	fmt.Fprint(l, strings.Repeat("a", 30))
	require.Equal(t, strings.Repeat("a", 30), l.String())
	for range 100 {
		fmt.Fprint(l, strings.Repeat("b", 10))
	}
	fmt.Fprint(l, "THE END")
	s := l.String()
	require.True(t, strings.HasPrefix(s, strings.Repeat("a", 30)+strings.Repeat("b", 20)), s)
	require.True(t, strings.HasSuffix(s, "THE END"), s)
	require.Contains(t, s, "bytes of log left out")
	require.Less(t, len(s), 200)
}

func TestCopyLocal(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(src, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("main.tf", "main")
	write("modules/net/main.tf", "net")
	write(".terraform/providers/junk", "stale")
	write("modules/net/.terraform/x", "stale")
	require.NoError(t, os.Symlink(filepath.Join(src, "main.tf"), filepath.Join(src, "link.tf")))

	dst := t.TempDir()
	n, err := copyLocal(src, dst)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	for rel, want := range map[string]string{"main.tf": "main", "modules/net/main.tf": "net", "link.tf": "main"} {
		got, err := os.ReadFile(filepath.Join(dst, rel))
		require.NoError(t, err, rel)
		require.Equal(t, want, string(got))
	}
	require.NoDirExists(t, filepath.Join(dst, ".terraform"))
	require.NoDirExists(t, filepath.Join(dst, "modules/net/.terraform"))

	single := t.TempDir()
	n, err = copyLocal(filepath.Join(src, "modules/net/main.tf"), single)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.FileExists(t, filepath.Join(single, "main.tf"))

	_, err = copyLocal(filepath.Join(src, "missing"), t.TempDir())
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestSweepWorkDirs(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	mine := filepath.Join(parent, fmt.Sprintf("%s%d-abc", workDirPrefix, os.Getpid()))   // an earlier process with our pid
	dead := filepath.Join(parent, workDirPrefix+"999999999-abc")                         // no such process
	alive := filepath.Join(parent, fmt.Sprintf("%s%d-abc", workDirPrefix, os.Getppid())) // a running process
	other := filepath.Join(parent, "something-else")
	for _, d := range []string{mine, dead, alive, other} {
		require.NoError(t, os.MkdirAll(filepath.Join(d, "src"), 0o755))
	}
	sweepWorkDirs(parent)
	require.NoDirExists(t, mine)
	require.NoDirExists(t, dead)
	require.DirExists(t, alive)
	require.DirExists(t, other)
}
