// Command stackseam is the operator's tool for stackseam: it checks machine
// files and (as commands are added) sends events and inspects stacks.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes shared by every command.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and found a problem
	exitUsage = 2 // the command line itself is wrong
)

// A command is one `stackseam NAME ...` subcommand. Each parses its own flags
// with a FlagSet from newFlags, so commands do not share flags by accident.
type command struct {
	name string
	// args is the synopsis after the name and [flags], e.g. "PATH...".
	args    string
	summary string
	run     func(ctx context.Context, cmd *command, args []string, stdout, stderr io.Writer) int
}

// commands is the command table; add a line here to add a command.
var commands = []*command{
	{name: "validate", args: "PATH...", summary: "check machine files (files or folders of .yml/.yaml)", run: runValidate},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns the
// exit code. Tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				fs := newFlags(c)
				fs.SetOutput(stdout)
				fs.Usage()
				return exitOK
			}
			fmt.Fprintf(stderr, "stackseam: unknown command %q\n", args[1])
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "stackseam: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(ctx, c, args[1:], stdout, stderr)
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: stackseam COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run `stackseam help COMMAND` for a command's flags.")
}

// newFlags returns the FlagSet of cmd. Its usage text goes to the FlagSet's
// output, which parseFlags points at stdout for -h and stderr for mistakes.
func newFlags(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet("stackseam "+cmd.name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: stackseam %s [flags] %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args with fs. It returns done=true with the exit code
// when the command should stop: -h asked for help (usage on stdout, 0) or a
// flag was wrong (error and usage on stderr, 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return exitOK, false
	case errors.Is(err, flag.ErrHelp):
		_, _ = buf.WriteTo(stdout)
		return exitOK, true
	default:
		_, _ = buf.WriteTo(stderr)
		return exitUsage, true
	}
}
