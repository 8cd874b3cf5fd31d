package terraform

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// workDirPrefix names the per-run work dirs; the pid that follows lets a new process remove the
// dirs of dead ones.
const workDirPrefix = "stackseam-run-"

// newWorkDir makes a fresh, private work dir for one run under parent.
func newWorkDir(parent string) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("error creating %s: %w", parent, err)
	}
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-*", workDirPrefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("error creating a work dir in %s: %w", parent, err)
	}
	return dir, nil
}

// sweepWorkDirs removes the work dirs that runs of earlier processes left behind — a process
// killed mid-run cannot clean up, and a warm Lambda keeps /tmp, which is small. It must run before
// this process makes any: a dir carrying our own pid then comes from an earlier process that had
// the same pid (in Lambda every process has the same few pids).
func sweepWorkDirs(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), workDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			continue
		}
		if pid == os.Getpid() || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

// copyLocal copies the local source at location (relative to the sources dir root) — a folder
// with its sub-folders, or one file — into dst and returns how many files it copied. Terraform's
// own .terraform folders are left out: a stale one would pin providers and modules from another
// machine. A symbolic link counts as what it points at (a link to a folder is not followed), and
// one that leads outside root — the location itself or any file under it — is refused: the
// source must not be a way to read the satisfier's other files into a log or a plan.
func copyLocal(root, location, dst string) (int, error) {
	if err := CheckLocation(location); err != nil {
		return 0, err
	}
	base, err := filepath.Abs(root)
	if err == nil {
		base, err = filepath.EvalSymlinks(base)
	}
	if err != nil {
		return 0, fmt.Errorf("error reading the sources dir %s: %w", root, err)
	}
	src := filepath.Join(base, filepath.FromSlash(location))
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return 0, err
	}
	if !inside(base, real) {
		return 0, fmt.Errorf("it leaves the sources dir (TERRAFORM_SOURCES_DIR) through a symbolic link")
	}
	info, err := os.Stat(real)
	if err != nil {
		return 0, err
	}
	if !info.IsDir() {
		return 1, copyFile(real, filepath.Join(dst, filepath.Base(src)))
	}
	n := 0
	err = filepath.WalkDir(real, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".terraform" && path != real {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(real, path)
		if err != nil {
			return err
		}
		from := path
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(path)
			if err != nil {
				return nil // a dangling link holds nothing to copy
			}
			if !inside(base, target) {
				return fmt.Errorf("%s is a symbolic link that leaves the sources dir (TERRAFORM_SOURCES_DIR)", filepath.ToSlash(rel))
			}
			from = target
		}
		fi, err := os.Stat(from)
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		n++
		return copyFile(from, filepath.Join(dst, rel))
	})
	return n, err
}

// inside reports whether path is dir or lies under it; both are absolute and free of symbolic
// links.
func inside(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFile(dst, in)
}

// writeFile creates dst (and its folder) with what r holds.
func writeFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
