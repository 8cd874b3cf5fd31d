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
	root := t.TempDir()
	src := filepath.Join(root, "app")
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
	require.NoError(t, os.Symlink("../app/modules/net/main.tf", filepath.Join(src, "relative-link.tf")))
	require.NoError(t, os.Symlink(filepath.Join(src, "gone.tf"), filepath.Join(src, "dangling.tf")))

	dst := t.TempDir()
	n, err := copyLocal(root, "app", dst)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	for rel, want := range map[string]string{"main.tf": "main", "modules/net/main.tf": "net", "link.tf": "main", "relative-link.tf": "net"} {
		got, err := os.ReadFile(filepath.Join(dst, rel))
		require.NoError(t, err, rel)
		require.Equal(t, want, string(got))
	}
	require.NoDirExists(t, filepath.Join(dst, ".terraform"))
	require.NoDirExists(t, filepath.Join(dst, "modules/net/.terraform"))

	single := t.TempDir()
	n, err = copyLocal(root, "app/modules/net/main.tf", single)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.FileExists(t, filepath.Join(single, "main.tf"))

	_, err = copyLocal(root, "missing", t.TempDir())
	require.ErrorIs(t, err, os.ErrNotExist)

	// The sources dir reached through a link of its own is still the same dir.
	linkedRoot := filepath.Join(t.TempDir(), "sources")
	require.NoError(t, os.Symlink(root, linkedRoot))
	n, err = copyLocal(linkedRoot, "app", t.TempDir())
	require.NoError(t, err)
	require.Equal(t, 4, n)
}

func TestCopyLocalStaysInsideTheSourcesDir(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("top secret"), 0o600))
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "app"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "app", "main.tf"), []byte("main"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "out-dir")))
	require.NoError(t, os.Symlink(secret, filepath.Join(root, "out-file.tf")))
	leaky := filepath.Join(root, "leaky")
	require.NoError(t, os.MkdirAll(leaky, 0o755))
	require.NoError(t, os.Symlink(secret, filepath.Join(leaky, "secret.tf")))

	for location, want := range map[string]string{
		outside:                        "is absolute",
		"/etc":                         "is absolute",
		"../" + filepath.Base(outside): `contains ".."`,
		"app/../../x":                  `contains ".."`,
		"out-dir":                      "leaves the sources dir (TERRAFORM_SOURCES_DIR) through a symbolic link",
		"out-file.tf":                  "leaves the sources dir (TERRAFORM_SOURCES_DIR) through a symbolic link",
		"leaky":                        "secret.tf is a symbolic link that leaves the sources dir (TERRAFORM_SOURCES_DIR)",
	} {
		dst := t.TempDir()
		_, err := copyLocal(root, location, dst)
		require.ErrorContains(t, err, want, location)
		_, err = os.Stat(filepath.Join(dst, "secret.tf"))
		require.ErrorIs(t, err, os.ErrNotExist, "nothing from outside was copied for %s", location)
	}
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
