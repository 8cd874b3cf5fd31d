// Package localenv runs stackseam's moving parts on one machine, without
// AWS: a throwaway PostgreSQL cluster (plain, or TLS-only and durable like
// RDS), the fauxqs SQS/S3 emulator, fake Lambda Invoke and Secrets Manager
// GetSecretValue endpoints, the module's binaries built and started as child
// processes, and the OpenTofu binary the Terraform executor runs. The test
// harness (test/harness) wraps it for tests; the demo (test/demo) uses it
// directly. Nothing here depends on package testing: every function returns
// an error and leaves cleaning up to its caller.
//
// Children are started in their own process group and, on Linux, get
// SIGKILL when the process that started them dies, so nothing outlives a
// crashed or interrupted run.
package localenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// modulePath is what RepoRoot looks for in go.mod, so that a go.mod of some
// unrelated nested module is never mistaken for the repository root.
const modulePath = "github.com/stackseam/stackseam"

// RepoRoot returns the repository's root directory (where go.mod is),
// walking up from the working directory.
func RepoRoot() (string, error) {
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

// NewWorkDir creates a work directory for this process under the system
// temp dir, named prefix plus a random part, holding a file "pid" with our
// process id. It first removes directories with the same prefix whose
// process is gone (killed before it could clean up): their servers are gone
// too, since every child gets SIGKILL when its parent dies. The directory is
// world-traversable (not world-readable) because, when we run as root,
// PostgreSQL runs as the postgres user inside it. The caller removes it.
func NewWorkDir(prefix string) (string, error) {
	sweepStaleWorkDirs(prefix)
	dir, err := os.MkdirTemp("", prefix+"*")
	if err != nil {
		return "", fmt.Errorf("creating a work directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", pidFile, err)
	}
	return dir, nil
}

func sweepStaleWorkDirs(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// NameChars lower-cases label and replaces every character other than a-z and 0-9 with sep:
// what names of resources the tests make (databases, buckets) can hold, from a test's name.
func NameChars(label string, sep rune) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return sep
	}, strings.ToLower(label))
}

// RandomHex returns 2n random hex digits, for unique names.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
