package localenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
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
	path, err := moduleBinary{module: tofuModule, version: TofuVersion, pkg: "./cmd/tofu", path: TofuCachePath(root)}.find()
	if err != nil {
		return "", fmt.Errorf("building OpenTofu %s (or run `make tofu`, or set %s): %w", TofuVersion, EnvTerraform, err)
	}
	return path, nil
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
