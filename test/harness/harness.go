// Package harness gives stackseam's tests the services they need — a
// throwaway PostgreSQL cluster and the fauxqs AWS emulator, each started once
// per test process — and builds and runs the module's binaries, so that
// `go test ./...` works on its own on a machine with the PostgreSQL server
// binaries and the emulator's node_modules (`make deps`). The work itself is
// done by package localenv, which the demo shares; the harness ties it to
// tests: failures end the test, and everything is cleaned up with it.
//
// Every package that uses it starts its tests through [Main]:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// Environment variables:
//   - STACKSEAM_TEST_DATABASE_URL: use this PostgreSQL server (a URL whose
//     user may CREATE DATABASE) instead of starting one. The production-shaped
//     server (TLSDatabaseServer) is always one the harness starts.
//   - STACKSEAM_TEST_AWS_ENDPOINT: use this emulator (http://host:port)
//     instead of starting one.
//   - STACKSEAM_TEST_PG_BINDIR: the directory holding initdb and postgres,
//     when they are not in the usual places.
package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// tempPrefix names the per-process work directories; a new one sweeps away
// those whose test process died without running Main's cleanup.
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
// use (see localenv.NewWorkDir). Main removes it.
func workDir(t testing.TB) string {
	t.Helper()
	requireMain(t)
	stateMu.Lock()
	defer stateMu.Unlock()
	if rootDir != "" {
		return rootDir
	}
	dir, err := localenv.NewWorkDir(tempPrefix)
	failOn(t, err)
	rootDir = dir
	return dir
}

// failOn fails the test with err, if any: the harness's functions hand their failures to the
// test, so that tests need not check them.
func failOn(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
}

// closedAtEnd closes f at the end of the test and returns it: a fake's server must not outlive
// the test that started it.
func closedAtEnd[F interface{ Close() }](t testing.TB, f F) F {
	t.Cleanup(f.Close)
	return f
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
	repoRootOnce.Do(func() { repoRoot, repoRootErr = localenv.RepoRoot() })
	if repoRootErr != nil {
		t.Fatalf("harness: %v", repoRootErr)
	}
	return repoRoot
}

// Testdata returns the path of elem under the repository's test/testdata, the tests' fixtures
// (machines, Terraform sources).
func Testdata(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{RepoRoot(t), "test", "testdata"}, elem...)...)
}
