// Package harness gives stackseam's tests the services they need — a
// throwaway PostgreSQL cluster and the fauxqs AWS emulator, each started once
// per test process — and builds and runs the module's binaries, so that
// `go test ./...` works on its own on a machine with the PostgreSQL server
// binaries and the emulator's node_modules (`make deps`).
//
// Every package that uses it starts its tests through [Main]:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// Environment variables:
//   - STACKSEAM_TEST_DATABASE_URL: use this PostgreSQL server (a URL whose
//     user may CREATE DATABASE) instead of starting one.
//   - STACKSEAM_TEST_AWS_ENDPOINT: use this emulator (http://host:port)
//     instead of starting one.
//   - STACKSEAM_TEST_PG_BINDIR: the directory holding initdb and postgres,
//     when they are not in the usual places.
package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modulePath is what RepoRoot looks for in go.mod, so that a go.mod of some
// unrelated nested module is never mistaken for the repository root.
const modulePath = "github.com/stackseam/stackseam"

// tempPrefix names the per-process work directories; the sweep in workDir
// removes ones whose test process died without running Main's cleanup.
const tempPrefix = "stackseam-harness-"

var (
	stateMu     sync.Mutex
	mainRunning bool     // set by Main; servers are only started under it
	rootDir     string   // this process's work directory, made on first use
	stoppers    []func() // run by Main in reverse order once the tests end
)

// Main runs the tests of a package and then stops every server the harness
// started and removes its temporary files. Use:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	stateMu.Lock()
	mainRunning = true
	stateMu.Unlock()

	code := m.Run()
	shutdown()
	os.Exit(code)
}

// shutdown stops everything registered with atExit, newest first, so that
// things are torn down in the reverse order of their creation.
func shutdown() {
	stateMu.Lock()
	fns := stoppers
	stoppers = nil
	dir := rootDir
	rootDir = ""
	mainRunning = false
	stateMu.Unlock()

	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "harness: removing %s: %v\n", dir, err)
		}
	}
}

// atExit registers fn to run when Main finishes.
func atExit(fn func()) {
	stateMu.Lock()
	defer stateMu.Unlock()
	stoppers = append(stoppers, fn)
}

// requireMain fails the test when the package's tests do not run under Main:
// without it nothing would stop the servers or remove their files.
func requireMain(t testing.TB) {
	t.Helper()
	stateMu.Lock()
	ok := mainRunning
	stateMu.Unlock()
	if !ok {
		t.Fatal("harness: this package's tests must run through harness.Main, which stops the servers it starts; " +
			"add `func TestMain(m *testing.M) { harness.Main(m) }` to a _test.go file of the package")
	}
}

// workDir returns this test process's work directory, creating it on first
// use. It is world-traversable (not world-readable) because, when the tests
// run as root, PostgreSQL runs as the postgres user inside it.
func workDir(t testing.TB) string {
	t.Helper()
	requireMain(t)
	stateMu.Lock()
	defer stateMu.Unlock()
	if rootDir != "" {
		return rootDir
	}
	sweepStaleWorkDirs()
	dir, err := os.MkdirTemp("", tempPrefix+"*")
	if err != nil {
		t.Fatalf("harness: creating work directory: %v", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatalf("harness: chmod %s: %v", dir, err)
	}
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("harness: writing %s: %v", pidFile, err)
	}
	rootDir = dir
	return dir
}

// sweepStaleWorkDirs removes work directories left by test processes that
// were killed (timeout, ^C) before Main could clean up. Their servers are
// already gone: every child gets SIGKILL when its parent dies.
func sweepStaleWorkDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			// A directory still being set up has no pid file yet; only
			// old ones are certainly abandoned.
			if info, statErr := os.Stat(dir); statErr == nil && time.Since(info.ModTime()) > time.Hour {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

var (
	repoRootOnce sync.Once
	repoRoot     string
	repoRootErr  error
)

// RepoRoot returns the repository's root directory (where go.mod is). Tests
// run in their package's directory, so it walks up from there.
func RepoRoot(t testing.TB) string {
	t.Helper()
	repoRootOnce.Do(func() { repoRoot, repoRootErr = findRepoRoot() })
	if repoRootErr != nil {
		t.Fatalf("harness: %v", repoRootErr)
	}
	return repoRoot
}

func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(string(data), modulePath) {
			return dir, nil
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in %s or any parent directory", modulePath, wd)
		}
	}
}

func declaresModule(goMod, path string) bool {
	for _, line := range strings.Split(goMod, "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "module" && strings.Trim(fields[1], `"`) == path {
			return true
		}
	}
	return false
}
