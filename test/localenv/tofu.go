package localenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
)

// TofuVersion is the OpenTofu version the tests and the demo run. The
// Makefile's TOFU_VERSION must be the same (a harness test checks it).
const TofuVersion = "v1.10.6"

// EnvTerraform names the variable that points at another terraform or tofu
// binary to run instead.
const EnvTerraform = "STACKSEAM_TEST_TERRAFORM"

const tofuModule = "github.com/opentofu/opentofu"

var (
	tofuOnce sync.Once
	tofuPath string
	tofuErr  error
)

// TofuBinary returns the Terraform-compatible binary to run:
// STACKSEAM_TEST_TERRAFORM when set (a terraform or tofu binary), otherwise
// OpenTofu TofuVersion built for the host at
// .cache/tofu/<version>/<goos>_<goarch>/tofu under root, which `make tofu`
// builds. When that file is missing the first call builds it the same way
// (about five minutes on two cores), under a file lock so that processes
// running at the same time build it once. The answer is kept for the
// process.
func TofuBinary(root string) (string, error) {
	tofuOnce.Do(func() { tofuPath, tofuErr = findTofu(root) })
	return tofuPath, tofuErr
}

// TofuCachePath is where `make tofu` puts the binary for the host.
func TofuCachePath(root string) string {
	return filepath.Join(root, ".cache", "tofu", TofuVersion, runtime.GOOS+"_"+runtime.GOARCH, "tofu")
}

func findTofu(root string) (string, error) {
	if p := os.Getenv(EnvTerraform); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvTerraform, p, err)
		}
		return p, nil
	}
	path := TofuCachePath(root)
	if checkExecutable(path) == nil {
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // which releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	if checkExecutable(path) == nil {
		return path, nil // another process built it while we waited
	}
	if err := buildTofu(path); err != nil {
		return "", fmt.Errorf("building OpenTofu %s (or run `make tofu`, or set %s): %w", TofuVersion, EnvTerraform, err)
	}
	return path, nil
}

// buildTofu builds OpenTofu from its module as the Makefile does: `go
// install` cannot (replace directives), `go build` in the module's
// directory can.
func buildTofu(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is not in PATH")
	}
	// Outside this module, so that our go.sum is left alone.
	download := exec.Command(goBin, "mod", "download", "-json", tofuModule+"@"+TofuVersion)
	download.Dir = os.TempDir()
	download.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	raw, err := download.Output()
	if err != nil {
		return fmt.Errorf("go mod download %s@%s: %w", tofuModule, TofuVersion, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(raw, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s@%s gave no directory (%s): %v", tofuModule, TofuVersion, mod.Error, err)
	}
	build := exec.Command(goBin, "build", "-trimpath", "-o", out+".tmp", "./cmd/tofu")
	build.Dir = mod.Dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=", "GOARCH=", "GOFLAGS=", "GOWORK=off")
	if output, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/tofu: %w\n%s", err, output)
	}
	return os.Rename(out+".tmp", out)
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
