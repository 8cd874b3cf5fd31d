package stackseam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/stackseam/stackseam/internal/lambdabuild"
)

// The functions' build (package lambdabuild, shared with the tests that run the shipped binaries
// under the Lambda Runtime Interface Emulator): a static binary named bootstrap for Graviton.
const (
	modulePath    = "github.com/stackseam/stackseam"
	lambdaGOOS    = lambdabuild.GOOS
	lambdaGOARCH  = lambdabuild.GOARCH
	bootstrapName = lambdabuild.BootstrapName
	// terraformDir is the asset folder of the Terraform binary; Lambda unpacks the asset into
	// /var/task (LAMBDA_TASK_ROOT).
	terraformDir  = "bin"
	lambdaTaskDir = "/var/task"
)

var lambdaBuildFlags = lambdabuild.Flags

// lambdaBuildCmd is the `go build` of one function's main package (pkg, relative to moduleDir)
// into dir/bootstrap. Building the command is separate from running it so that its argv and
// environment are tested without compiling anything.
func lambdaBuildCmd(moduleDir, pkg, dir string) *exec.Cmd {
	cmd := exec.Command("go", lambdabuild.Args(dir, pkg)...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), lambdabuild.Env(lambdaGOARCH)...)
	return cmd
}

// tofuDownloadCmd asks the go command where OpenTofu's module is (downloading it through the
// module proxy unless it is cached). It runs outside any module (workDir is a scratch
// directory, GOWORK=off) so that no go.mod or go.sum is touched, and with GOFLAGS cleared so
// that the caller's flags (-mod=vendor …) cannot change what is built.
func tofuDownloadCmd(workDir string) *exec.Cmd {
	cmd := exec.Command("go", "mod", "download", "-json", OpenTofuModule+"@"+OpenTofuVersion)
	cmd.Dir = workDir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GO111MODULE=on")
	return cmd
}

// tofuBuildCmd cross-compiles OpenTofu's CLI from its module directory (it builds as the main
// module; `go install module@version` refuses its replace directive). version.dev=no is what
// OpenTofu's release build sets, so `tofu version` reports the plain release number.
func tofuBuildCmd(srcDir, output string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -X github.com/opentofu/opentofu/version.dev=no", "-o", output, "./cmd/tofu")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GO111MODULE=on",
		"GOOS="+lambdaGOOS, "GOARCH="+lambdaGOARCH, "CGO_ENABLED=0")
	return cmd
}

// run runs cmd with its output going to stderr (stdout belongs to the CDK app's protocol when
// the CLI runs it), and says which command failed.
func run(cmd *exec.Cmd) error {
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s (in %s): %w", strings.Join(cmd.Args, " "), cmd.Dir, err)
	}
	return nil
}

// functionBundler is the local bundling of one function's asset: `go build` of its main package
// and, for the satisfier, a copy of the Terraform binary. CDK calls TryBundle through jsii when
// the asset is staged; there is no Docker fallback (the image given with it is never pulled).
type functionBundler struct {
	moduleDir string
	pkg       string
	terraform *terraformBinary // nil: no Terraform binary in this asset
}

// TryBundle implements awscdk.ILocalBundling. A failure panics: jsii turns the panic into the
// error CDK reports for the asset ("Failed to bundle asset …"), where returning false would make
// CDK try Docker and hide the real cause.
func (b *functionBundler) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	if err := b.bundle(*outputDir); err != nil {
		panic(err)
	}
	return jsii.Bool(true)
}

func (b *functionBundler) bundle(dir string) error {
	if err := run(lambdaBuildCmd(b.moduleDir, b.pkg, dir)); err != nil {
		return fmt.Errorf("error building %s for %s/%s: %w", b.pkg, lambdaGOOS, lambdaGOARCH, err)
	}
	if b.terraform == nil {
		return nil
	}
	src, err := b.terraform.resolve()
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, terraformDir, b.terraform.name())
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return linkOrCopy(src, dst)
}

// terraformBinary is the Terraform-compatible executable bundled with the satisfier: the file a
// user gave, or OpenTofu built from source and cached.
type terraformBinary struct {
	path     string // a linux/arm64 executable given by the user; "" means build OpenTofu
	cacheDir string
}

// name is the binary's file name in the asset (tofu, or the given file's name).
func (t *terraformBinary) name() string {
	if t.path != "" {
		return filepath.Base(t.path)
	}
	return "tofu"
}

// lambdaPath is where the satisfier finds the binary at run time (TERRAFORM_BINARY).
func (t *terraformBinary) lambdaPath() string {
	return lambdaTaskDir + "/" + terraformDir + "/" + t.name()
}

// cachedTofu is where the cross-compiled OpenTofu lives: the layout of `make tofu`
// (.cache/tofu/<version>/<goos>_<goarch>/tofu), for linux/arm64.
func (t *terraformBinary) cachedTofu() string {
	return filepath.Join(t.cacheDir, "tofu", OpenTofuVersion, lambdaGOOS+"_"+lambdaGOARCH, "tofu")
}

// resolve returns the path of the binary to bundle, building OpenTofu the first time.
func (t *terraformBinary) resolve() (string, error) {
	if t.path != "" {
		return t.path, nil
	}
	bin := t.cachedTofu()
	if isFile(bin) {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "stackseam: building OpenTofu %s for %s/%s into %s (once; minutes on a small machine)\n",
		OpenTofuVersion, lambdaGOOS, lambdaGOARCH, bin)
	if err := buildTofu(bin); err != nil {
		return "", fmt.Errorf("error building OpenTofu %s for %s/%s (set TerraformBinary to use a binary of your own): %w",
			OpenTofuVersion, lambdaGOOS, lambdaGOARCH, err)
	}
	return bin, nil
}

// buildTofu builds OpenTofu into bin through a temporary file renamed into place, so an
// interrupted or concurrent build never leaves a partial binary behind under the final name.
func buildTofu(bin string) error {
	scratch, err := os.MkdirTemp("", "stackseam-tofu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	download := tofuDownloadCmd(scratch)
	var out bytes.Buffer
	download.Stdout = &out
	download.Stderr = os.Stderr
	if err := download.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(download.Args, " "), err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out.Bytes(), &mod); err != nil {
		return fmt.Errorf("reading the output of go mod download: %w", err)
	}
	if mod.Dir == "" {
		return fmt.Errorf("go mod download %s@%s: %s", OpenTofuModule, OpenTofuVersion, mod.Error)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(bin), ".tofu-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	if err := run(tofuBuildCmd(mod.Dir, tmp)); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, bin)
}

// linkOrCopy puts src at dst as an executable: a hard link when both are on one file system (the
// Terraform binary is tens of MB and CDK only reads it), else a copy.
func linkOrCopy(src, dst string) error {
	if st, err := os.Stat(src); err == nil && st.Mode().Perm()&0o111 == 0o111 {
		if os.Link(src, dst) == nil {
			return nil
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// buildDirs are the directories the bundling works with.
type buildDirs struct {
	module string // the stackseam module's source
	cache  string // where OpenTofu is cached
}

// resolveBuildDirs fills in ModuleDir and CacheDir defaults by asking the go command, from the
// current directory: where the stackseam module's source is (this repository, a replace
// target, or the module cache) and where the current main module's root is.
func resolveBuildDirs(moduleDir, cacheDir string) (buildDirs, error) {
	d := buildDirs{module: moduleDir, cache: cacheDir}
	if d.module == "" {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", modulePath).Output()
		d.module = strings.TrimSpace(string(out))
		if err != nil || d.module == "" {
			return d, fmt.Errorf("cannot find the source of %s with `go list -m` from the current directory (set ModuleDir): %w",
				modulePath, errors.Join(err, exitStderr(err)))
		}
	}
	if d.cache == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err == nil && gomod != "" && gomod != os.DevNull {
			d.cache = filepath.Join(filepath.Dir(gomod), ".cache")
		} else if dir, err := os.UserCacheDir(); err == nil {
			d.cache = filepath.Join(dir, "stackseam")
		} else {
			return d, errors.New("no cache directory for OpenTofu (set CacheDir)")
		}
	}
	return d, nil
}

func exitStderr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return errors.New(strings.TrimSpace(string(ee.Stderr)))
	}
	return nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
