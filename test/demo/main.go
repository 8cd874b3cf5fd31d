// Command demo runs all of stackseam on this machine, with no AWS account,
// and drives a stack through its life with the stackseam CLI: `make demo`.
//
// It starts a throwaway PostgreSQL cluster and the fauxqs SQS/S3 emulator,
// builds the CLI and both functions, creates the queues and buckets, uploads
// machines/ and the sample Terraform sources (test/demo/terraform), serves a
// fake Lambda Invoke endpoint for the lambda tasks, and starts the state
// manager and the task satisfier in local mode (the satisfier runs a real
// OpenTofu, built by `make deps`). Then it launches feature-123
// (machines/feature-env.yml) and qa (machines/qa-env.yml), follows
// feature-123's timeline live, touches and inspects it, destroys both, and
// prints the final history and the machine's graph. It stops everything it
// started and exits 0; on Ctrl-C it stops everything too and exits 130.
//
// It lives under test/ because it is built from the same local environment
// as the end-to-end tests (package localenv), and test/demo_test.go runs it
// in CI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	keep := flag.Bool("keep", false, "keep the work directory (logs, binaries) after a successful run")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	d := &demo{out: newConsole(os.Stdout), keep: *keep, started: time.Now()}
	err := d.run(ctx)
	// Cleaning up must not be cut short by the signal that interrupted us.
	d.cleanup()
	switch {
	case err == nil:
		d.out.printf("\ndemo finished in %s: everything it started is stopped.\n", since(d.started))
	case errors.Is(err, context.Canceled):
		d.out.printf("\ninterrupted: everything the demo started is stopped.\n")
		os.Exit(130)
	default:
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		d.printLogs(os.Stderr)
		os.Exit(1)
	}
}

// since formats the time since t to a tenth of a second.
func since(t time.Time) string {
	return time.Since(t).Round(100 * time.Millisecond).String()
}

// printLogs shows the end of each function's log after a failure, and where
// the whole logs are.
func (d *demo) printLogs(w io.Writer) {
	for _, l := range d.logs {
		fmt.Fprintf(w, "\n--- last lines of %s ---\n%s", l.name, l.tail.String())
	}
	if d.workDir != "" && d.kept {
		fmt.Fprintf(w, "\nthe full logs are in %s\n", d.workDir)
	}
}
