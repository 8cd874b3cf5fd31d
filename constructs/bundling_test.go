package stackseam

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The commands are built separately from being run, so their argv and environment are checked
// here without compiling anything. No shell is involved: every argument is its own element.

func lastEnv(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			v = strings.TrimPrefix(kv, key+"=")
		}
	}
	return v
}

func TestLambdaBuildCmd(t *testing.T) {
	t.Parallel()
	cmd := lambdaBuildCmd("/src/stackseam", "./functions/satisfier", "/out dir")
	require.Equal(t, []string{"go", "build", "-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w",
		"-o", "/out dir/bootstrap", "./functions/satisfier"}, cmd.Args)
	require.Equal(t, "/src/stackseam", cmd.Dir)
	require.Equal(t, "linux", lastEnv(cmd.Env, "GOOS"))
	require.Equal(t, "arm64", lastEnv(cmd.Env, "GOARCH"))
	require.Equal(t, "0", lastEnv(cmd.Env, "CGO_ENABLED"))
}

func TestTofuCmds(t *testing.T) {
	t.Parallel()
	dl := tofuDownloadCmd("/scratch")
	require.Equal(t, []string{"go", "mod", "download", "-json", "github.com/opentofu/opentofu@v1.10.6"}, dl.Args)
	require.Equal(t, "/scratch", dl.Dir)
	require.Equal(t, "", lastEnv(dl.Env, "GOFLAGS"))
	require.Equal(t, "off", lastEnv(dl.Env, "GOWORK"))

	b := tofuBuildCmd("/mod/opentofu@v1.10.6", "/cache/tofu.tmp")
	require.Equal(t, []string{"go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -X github.com/opentofu/opentofu/version.dev=no", "-o", "/cache/tofu.tmp", "./cmd/tofu"}, b.Args)
	require.Equal(t, "/mod/opentofu@v1.10.6", b.Dir)
	for k, v := range map[string]string{"GOOS": "linux", "GOARCH": "arm64", "CGO_ENABLED": "0", "GOFLAGS": "", "GOWORK": "off"} {
		require.Equal(t, v, lastEnv(b.Env, k), k)
	}
}

func TestTerraformBinaryPaths(t *testing.T) {
	t.Parallel()
	def := &terraformBinary{cacheDir: "/repo/.cache"}
	require.Equal(t, "tofu", def.name())
	require.Equal(t, "/var/task/bin/tofu", def.lambdaPath())
	// The layout of `make tofu`, for linux/arm64.
	require.Equal(t, "/repo/.cache/tofu/v1.10.6/linux_arm64/tofu", def.cachedTofu())

	given := &terraformBinary{path: "/opt/hashicorp/terraform", cacheDir: "/repo/.cache"}
	require.Equal(t, "/var/task/bin/terraform", given.lambdaPath())
	p, err := given.resolve()
	require.NoError(t, err)
	require.Equal(t, "/opt/hashicorp/terraform", p)
}

func TestResolveUsesCachedTofu(t *testing.T) {
	t.Parallel()
	tb := &terraformBinary{cacheDir: t.TempDir()}
	require.NoError(t, os.MkdirAll(filepath.Dir(tb.cachedTofu()), 0o755))
	require.NoError(t, os.WriteFile(tb.cachedTofu(), []byte("cached"), 0o755))
	p, err := tb.resolve()
	require.NoError(t, err)
	require.Equal(t, tb.cachedTofu(), p)
}

func TestLinkOrCopyKeepsTheBinaryExecutable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o755, 0o644} { // 0o644: copied, and made executable
		src := filepath.Join(dir, "src-"+mode.String())
		require.NoError(t, os.WriteFile(src, []byte("binary"), mode))
		dst := filepath.Join(dir, "dst-"+mode.String())
		require.NoError(t, linkOrCopy(src, dst))
		st, err := os.Stat(dst)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, "binary", string(got))
	}
}

func TestResolveBuildDirsFindsThisModule(t *testing.T) {
	t.Parallel()
	d, err := resolveBuildDirs("", "")
	require.NoError(t, err)
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	require.Equal(t, root, d.module)
	require.Equal(t, filepath.Join(root, ".cache"), d.cache)

	d, err = resolveBuildDirs("/elsewhere", "/cache")
	require.NoError(t, err)
	require.Equal(t, buildDirs{module: "/elsewhere", cache: "/cache"}, d)
}

// OpenTofuVersion is the version the Makefile builds for the host (TOFU_VERSION), so the tests'
// OpenTofu and the bundled one are the same.
func TestOpenTofuVersionMatchesMakefile(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile(filepath.Join("..", "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^TOFU_VERSION\s*:?=\s*(\S+)`).FindSubmatch(mk)
	require.NotNil(t, m, "TOFU_VERSION not found in the Makefile")
	require.Equal(t, OpenTofuVersion, string(m[1]))
}
