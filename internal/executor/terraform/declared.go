package terraform

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-config-inspect/tfconfig"
)

// DeclaredVariables returns the names of the input variables the root module in dir declares
// (`variable` blocks in its .tf and .tf.json files, and OpenTofu's .tofu and .tofu.json files,
// which replace a .tf file of the same name as OpenTofu does). It reads the files without running
// Terraform. When some file cannot be parsed it returns what it found together with the error:
// Terraform itself will then report the problem better than a partial parse can.
func DeclaredVariables(dir string) (map[string]bool, error) {
	mod, diags := tfconfig.LoadModuleFromFilesystem(newTofuFS(), dir)
	declared := map[string]bool{}
	if mod != nil {
		for name := range mod.Variables {
			declared[name] = true
		}
	}
	if diags.HasErrors() {
		return declared, fmt.Errorf("error reading the variable declarations in the source: %w", diags.Err())
	}
	return declared, nil
}

// tofuFS is the local file system as tfconfig reads it, with OpenTofu's own file names shown
// under Terraform's: "main.tofu" appears as "main.tf" (hiding a "main.tf" beside it, which
// OpenTofu ignores), "x.tofu.json" as "x.tf.json". tfconfig knows only Terraform's extensions.
type tofuFS struct {
	// real maps a shown path to the file it stands for, filled by ReadDir.
	real map[string]string
}

func newTofuFS() *tofuFS { return &tofuFS{real: map[string]string{}} }

// tofuExt pairs OpenTofu's extensions with the Terraform ones they stand in for.
var tofuExt = [][2]string{{".tofu.json", ".tf.json"}, {".tofu", ".tf"}}

func (f *tofuFS) path(name string) string {
	if p, ok := f.real[name]; ok {
		return p
	}
	return name
}

func (f *tofuFS) Open(name string) (tfconfig.File, error) { return os.Open(f.path(name)) }

func (f *tofuFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(f.path(name)) }

func (f *tofuFS) ReadDir(dir string) ([]os.FileInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	shown := map[string]os.FileInfo{}
	fromTofu := map[string]bool{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		name := e.Name()
		for _, ext := range tofuExt {
			if base, ok := strings.CutSuffix(name, ext[0]); ok && !e.IsDir() {
				as := base + ext[1]
				shown[as] = renamed{info, as}
				fromTofu[as] = true
				f.real[filepath.Join(dir, as)] = filepath.Join(dir, name)
				name = ""
				break
			}
		}
		if name != "" && !fromTofu[name] {
			shown[name] = info
		}
	}
	out := make([]os.FileInfo, 0, len(shown))
	for _, info := range shown {
		out = append(out, info)
	}
	// In name order, as os.ReadDir gives them: tfconfig applies override files in that order.
	slices.SortFunc(out, func(a, b os.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// renamed is a file's info under another name.
type renamed struct {
	os.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }
