package localenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// moduleBinary is a command built from a Go module at a pinned version, for the host, and cached
// at a fixed path under the repository's .cache (the path the Makefile builds it to).
type moduleBinary struct {
	module, version string
	pkg             string // the main package inside the module, e.g. ./cmd/tofu
	path            string // where the binary is cached
}

// find returns the cached binary, building it first when it is missing, under a file lock so
// that processes running at the same time build it once.
func (b moduleBinary) find() (string, error) {
	if checkExecutable(b.path) == nil {
		return b.path, nil
	}
	if err := os.MkdirAll(filepath.Dir(b.path), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(b.path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // which releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	if checkExecutable(b.path) == nil {
		return b.path, nil // another process built it while we waited
	}
	return b.path, b.build()
}

// build builds the binary as the Makefile does: the module's directory comes from `go mod
// download -json`, run outside this module so that our go.sum is left alone (`go install
// module@version` refuses modules with replace directives); `go build` there writes a temporary
// file that is renamed into place only when complete.
func (b moduleBinary) build() error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is not in PATH")
	}
	download := exec.Command(goBin, "mod", "download", "-json", b.module+"@"+b.version)
	download.Dir = os.TempDir()
	download.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	raw, err := download.Output()
	if err != nil {
		return fmt.Errorf("go mod download %s@%s: %w", b.module, b.version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(raw, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s@%s gave no directory (%s): %v", b.module, b.version, mod.Error, err)
	}
	tmp := b.path + ".tmp"
	build := exec.Command(goBin, "build", "-trimpath", "-o", tmp, b.pkg)
	build.Dir = mod.Dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=", "GOARCH=", "GOFLAGS=", "GOWORK=off")
	if output, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s@%s: %w\n%s", b.pkg, b.module, b.version, err, output)
	}
	return os.Rename(tmp, b.path)
}
