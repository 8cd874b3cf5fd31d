package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const fixtures = "../../internal/machine/testdata"

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// runCLI runs the command line in-process and returns the exit code and
// what was printed.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// runFailing runs the command line in-process and requires that it end with code (not exitOK),
// saying want on stderr; it returns stderr.
func runFailing(t *testing.T, code int, want string, args ...string) string {
	t.Helper()
	got, _, stderr := runCLI(t, args...)
	require.Equal(t, code, got, "%v: %s", args, stderr)
	require.Contains(t, stderr, want, args)
	return stderr
}

// runEnv runs the command line in-process with env as its whole
// environment and now as the time.
func runEnv(t *testing.T, env map[string]string, now time.Time, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] },
		now: func() time.Time { return now }, pollInterval: 20 * time.Millisecond}
	code = c.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

// golden compares got with testdata/NAME, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `go test ./cmd/stackseam -update` to create %s", path)
	require.Equal(t, string(want), got, "output differs from %s (run `go test ./cmd/stackseam -update` if the change is meant)", path)
}

func TestUsage(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t)
	require.Equal(t, exitUsage, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "usage: stackseam COMMAND")
	require.Contains(t, stderr, "validate")

	runFailing(t, exitUsage, `unknown command "frobnicate"`, "frobnicate")

	for _, help := range []string{"help", "-h", "--help"} {
		code, stdout, stderr = runCLI(t, help)
		require.Equal(t, exitOK, code, help)
		require.Empty(t, stderr, help)
		require.Contains(t, stdout, "  validate   check machine files", help)
	}

	code, stdout, _ = runCLI(t, "help", "validate")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "usage: stackseam validate [flags] PATH...")

	runFailing(t, exitUsage, `unknown command "nope"`, "help", "nope")
}

func TestValidateUsage(t *testing.T) {
	t.Parallel()
	runFailing(t, exitUsage, "name at least one machine file or folder", "validate")

	code, stdout, _ := runCLI(t, "validate", "-h")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "usage: stackseam validate")

	runFailing(t, exitUsage, "flag provided but not defined: -bogus", "validate", "-bogus", "x.yml")
}

func TestValidateExampleMachines(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, "validate", "../../machines")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "OK feature-env\nOK qa-env\nOK reviewed-env\n", stdout)
	require.Empty(t, stderr)
}

func TestValidateValidFileWithWarnings(t *testing.T) {
	t.Parallel()
	path := fixtures + "/valid/warnings.yml"
	code, stdout, stderr := runCLI(t, "validate", path)
	require.Equal(t, exitOK, code)
	require.Empty(t, stderr)
	require.Equal(t, "OK warnings\n"+
		"warning: "+path+":6:5: NEXT is an event of every machine; it need not be declared [implicit-next]\n"+
		"warning: "+path+":7:5: event NEVER is declared but no state handles it, so sending it is always rejected [unused-event]\n"+
		"warning: "+path+":11:7: event GO advances 2 times in state INIT; the stack ends in the last target [multiple-advance]\n"+
		"warning: "+path+":20:3: state ORPHAN cannot be reached from INIT [unreachable]\n"+
		"warning: "+path+":28:3: task spare is defined but no state lists it [unused-task]\n",
		stdout)
}

func TestValidateInvalidFile(t *testing.T) {
	t.Parallel()
	bad := fixtures + "/invalid/advance-target.yml"
	good := fixtures + "/valid/minimal.yml"
	code, stdout, stderr := runCLI(t, "validate", good, bad)
	require.Equal(t, exitFail, code)
	require.Equal(t, "OK minimal\n", stdout)
	require.Equal(t,
		bad+":7:11: an advance needs the state to go to: add `state: NAME` [advance-target]\n"+
			bad+":10:18: state DONNE does not exist (did you mean DONE?) [advance-target]\n"+
			bad+":12:11: a no-op action has no state [unknown-key]\n",
		stderr)
}

func TestValidateFolderReportsEveryFile(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, "validate", fixtures+"/invalid")
	require.Equal(t, exitFail, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "invalid/all-at-once.yml:2:10: ")
	require.Contains(t, stderr, "invalid/yaml-syntax.yml:2:1: ")
	require.Contains(t, stderr, "[machine-name]")

	code, stdout, stderr = runCLI(t, "validate", fixtures+"/valid")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "OK config-values\n")
	require.Contains(t, stdout, "OK cloudseam-sample\n")
}

// validate and graph judge the files the state manager loads (catalog.DirFiles): a dot-file an
// editor left beside a machine, a folder or a link to one named like a machine are not machines.
func TestValidateSkipsDotFilesAsTheStateManagerDoes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yml"), []byte("version: 1\nevents: []\nstates: {INIT: {terminal: true}}\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".a.yml.swp.yml"), []byte("not: [a machine"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "folder.yml"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(dir, "folder.yml"), filepath.Join(dir, "link.yaml")))
	code, stdout, stderr := runCLI(t, "validate", dir)
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "OK a\n", stdout)

	files, err := catalog.DirFiles(dir)
	require.NoError(t, err)
	require.Len(t, files, 1, "the catalog loads the same one file")
	require.Equal(t, "a", files[0].Name)

	runFailing(t, exitFail, "machine link: no link.yml or link.yaml in "+dir, "graph", "--dir", dir, "link")
}

func TestValidatePathProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	machine := []byte("version: 1\nevents: []\nstates: {INIT: {terminal: true}}\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), machine, 0o600))
	dup := filepath.Join(dir, "dup")
	require.NoError(t, os.Mkdir(dup, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dup, "a.yml"), machine, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dup, "a.yaml"), machine, 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))

	for path, want := range map[string]string{
		filepath.Join(dir, "missing.yml"): "no such file or directory",
		filepath.Join(dir, "notes.txt"):   "not a machine file",
		dup:                               "machine a is also defined by",
		empty:                             "no .yml or .yaml files in this folder",
	} {
		code, stdout, stderr := runCLI(t, "validate", path)
		require.Equal(t, exitFail, code, path)
		require.Empty(t, stdout, path)
		require.Contains(t, stderr, want, path)
	}
}

func TestEveryCommandHasConsistentHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range commands {
		code, stdout, stderr := runCLI(t, "help", cmd.name)
		require.Equal(t, exitOK, code, cmd.name)
		require.Empty(t, stderr, cmd.name)
		code, viaFlag, _ := runCLI(t, cmd.name, "-h")
		require.Equal(t, exitOK, code, cmd.name)
		require.Equal(t, stdout, viaFlag, "help %s and %s -h print the same", cmd.name, cmd.name)
		require.Regexp(t, `^usage: stackseam `+cmd.name+` \[flags\]`, stdout)
		require.Contains(t, stdout, cmd.summary)
		require.Contains(t, stdout, "examples:\n  stackseam "+cmd.name, "%s help shows examples", cmd.name)
		require.Contains(t, stdout, "\nflags:\n", cmd.name)

		code, _, stderr = runCLI(t, cmd.name, "--no-such-flag")
		require.Equal(t, exitUsage, code, cmd.name)
		require.Contains(t, stderr, "flag provided but not defined: -no-such-flag", cmd.name)
		require.Contains(t, stderr, "usage: stackseam "+cmd.name, cmd.name)
	}
}

func TestFlagsMayFollowArguments(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runCLI(t, "validate", "../../machines", "--output", "json")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, `"machine": "feature-env"`)
	// "--" ends the flags: what follows is an argument even if it looks like one.
	runFailing(t, exitFail, "error reading --output", "validate", "--", "--output")
}
