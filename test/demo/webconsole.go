package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stackseam/stackseam/test/localenv"
)

// startWebConsole serves `stackseam console` (read-only, on a free loopback port) for the length
// of the demo and prints its URL, so a newcomer can watch the stacks move in a browser.
func (d *demo) startWebConsole(ctx context.Context) error {
	return d.step("serving the web console (read-only; it stops with the demo)", func() error {
		f, err := os.Create(filepath.Join(d.workDir, "logs", "console.log"))
		if err != nil {
			return err
		}
		tail := localenv.NewTailBuffer(16 << 10)
		env := append(append([]string{}, d.cliEnv...),
			"MACHINES_BUCKET="+systemBucket, "MACHINES_PREFIX=machines/", "BUCKET="+systemBucket, "STACKSEAM_OPERATOR=demo")
		p, err := localenv.StartProcess(d.cliBin, env, []string{"console", "--listen", "127.0.0.1:0"}, io.MultiWriter(f, tail))
		if err != nil {
			f.Close()
			return err
		}
		d.atCleanup(func() {
			if err := p.Stop(stopGrace); err != nil {
				d.out.printf("stopping the web console: %v\n", err)
			}
			p.KillGroup()
			f.Close()
		})
		deadline := time.After(60 * time.Second)
		for {
			if _, rest, ok := strings.Cut(tail.String(), "open "); ok && strings.Contains(rest, "\n") {
				url, _, _ := strings.Cut(rest, "\n")
				d.out.printf("    web console: open %s to watch the stacks move\n", url)
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-p.Done():
				return fmt.Errorf("the web console exited while starting (%v): %s", p.Wait(), tail.String())
			case <-deadline:
				return fmt.Errorf("the web console did not start within a minute: %s", tail.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}
