package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// coldStart starts each binary several times, as a new Lambda execution
// environment or a restarted worker would, and measures the time from
// starting the process to its "ready" line (wall), next to the startupMs the
// line reports (from main to ready, after the Go runtime started). The state
// manager connects to an already migrated database.
func (b *bench) coldStart(ctx context.Context) error {
	s, cleanup, err := b.newSystem(ctx, "coldstart")
	defer cleanup()
	if err != nil {
		return err
	}
	for _, fn := range []struct{ name, ready string }{{"statemanager", "state manager ready"}, {"satisfier", "satisfier ready"}} {
		env := s.smEnv
		if fn.name == "satisfier" {
			env = s.satEnv
		}
		walls, reported := map[string][]float64{}, map[string][]float64{}
		for i := range b.o.starts + 1 {
			for _, v := range b.variants() { // alternating, with -baseline
				p, err := start(b.bins[fn.name+v], env, fn.ready, nil)
				if err != nil {
					return err
				}
				p.stop()
				if i == 0 {
					continue // the first start migrates the database and warms the page cache
				}
				var line struct {
					StartupMs float64 `json:"startupMs"`
				}
				if err := json.Unmarshal([]byte(p.readyLine), &line); err != nil {
					return fmt.Errorf("reading %q: %w", p.readyLine, err)
				}
				walls[v] = append(walls[v], float64(p.readyAt.Sub(p.startedAt).Microseconds())/1000)
				reported[v] = append(reported[v], line.StartupMs)
			}
		}
		wall := median(walls[""])
		progress("  %s: %.1f ms to ready (startupMs %.0f), median of %d", fn.name, wall, median(reported[""]), len(walls[""]))
		reference := "—"
		if b.o.baseline != "" {
			reference = fmt.Sprintf("baseline: %.0f ms (startupMs %.0f)", median(walls[baselineSuffix]), median(reported[baselineSuffix]))
		}
		b.add(row{
			measure:   fmt.Sprintf("cold start, %s: process start → ready (median of %d)", fn.name, len(walls[""])),
			result:    fmt.Sprintf("%.0f ms (startupMs %.0f)", wall, median(reported[""])),
			reference: reference,
			target:    "—",
			met:       "—",
		})
	}
	return nil
}

// lambdaBuildFlags are the constructs package's: what is deployed.
var lambdaBuildFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// zipSizes builds each function as it is deployed (linux/arm64, bootstrap)
// and zips it as Lambda receives it; the Terraform binary the satisfier's
// asset also carries is left out.
func (b *bench) zipSizes(ctx context.Context) error {
	for _, fn := range []string{"statemanager", "satisfier"} {
		sizes := map[string][2]int64{}
		for _, v := range b.variants() {
			root := b.root
			if v != "" {
				root = b.o.baseline
			}
			dir := filepath.Join(b.work, "lambda"+v, fn)
			bootstrap := filepath.Join(dir, "bootstrap")
			args := append(append([]string{"build"}, lambdaBuildFlags...), "-o", bootstrap, "./functions/"+fn)
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go %v: %w\n%s", args, err, out)
			}
			size, zipped, err := zipFile(bootstrap, filepath.Join(dir, "function.zip"))
			if err != nil {
				return err
			}
			progress("  %s%s: bootstrap %.1f MB, zip %.1f MB", label(v), fn, mb(size), mb(zipped))
			sizes[v] = [2]int64{size, zipped}
		}
		size, zipped := sizes[""][0], sizes[""][1]
		reference := "—"
		if b.o.baseline != "" {
			reference = fmt.Sprintf("baseline: %.1f MB (%.1f MB unzipped)", mb(sizes[baselineSuffix][1]), mb(sizes[baselineSuffix][0]))
		}
		b.add(row{
			measure:   fmt.Sprintf("function zip, %s (linux/arm64 bootstrap)", fn),
			result:    fmt.Sprintf("%.1f MB (%.1f MB unzipped)", mb(zipped), mb(size)),
			reference: reference,
			target:    "≤ 10 MB",
			met:       verdict(mb(zipped) <= 10),
		})
	}
	return nil
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// zipFile writes a zip holding file, executable, and returns the sizes of
// file and of the zip.
func zipFile(file, out string) (size, zipped int64, err error) {
	in, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	h, err := zip.FileInfoHeader(info)
	if err != nil {
		return 0, 0, err
	}
	h.Method = zip.Deflate
	h.Modified = time.Time{}
	w, err := zw.CreateHeader(h)
	if err != nil {
		return 0, 0, err
	}
	if _, err := io.Copy(w, in); err != nil {
		return 0, 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, 0, err
	}
	zinfo, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return info.Size(), zinfo.Size(), nil
}
