// Command stackseam is the operator's tool for stackseam: it checks and
// draws machine files, sends events and operators' task results, shows stacks
// and their history, and imports stacks from CloudSeam.
//
// Every command has the same shape — `stackseam COMMAND [flags] ARGS`, flags
// before or after the arguments, `--output json` where a script may want the
// result — and the same exit codes: 0 done, 1 the command ran and failed (an
// invalid machine, a stack that does not exist, an unreachable queue), 2 the
// command line or configuration is wrong. Configuration comes from flags and,
// when a flag is not given, from the environment variables the functions use
// (EVENT_QUEUE_URL, DATABASE_URL, DATABASE_SECRET_ID, AWS_PROFILE,
// AWS_REGION, AWS_ENDPOINT_URL), or from a deployed stackseam's CloudFormation
// stack (--stack-name, STACKSEAM_STACK_NAME): its outputs name the event queue
// and the query function, which stacks, show and history invoke instead of
// reading the database. The standard library's flag package is
// enough for this: one FlagSet per command, parsed by parseFlags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes shared by every command.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and found a problem
	exitUsage = 2 // the command line itself is wrong
)

// cli is one invocation's surroundings: where output goes, how the
// environment is read and what time it is. Tests give their own, so they can
// run in parallel without touching the process environment or the clock.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// pollInterval is how often `history --follow` looks for new rows.
	pollInterval time.Duration
}

// A command is one `stackseam NAME ...` subcommand. Each parses its own flags
// with a FlagSet from newFlags, so commands do not share flags by accident.
type command struct {
	name string
	// args is the synopsis after the name and [flags], e.g. "PATH...".
	args    string
	summary string
	// help is the longer text `stackseam help NAME` prints after the
	// summary: what the command does, its configuration, examples.
	help string
	// run parses the command's flags (from newFlags) and runs it,
	// returning the exit code.
	run func(ctx context.Context, c *cli, cmd *command, args []string) int
}

// commands is the command table; add a line here to add a command.
var commands = []*command{
	validateCommand,
	graphCommand,
	sendCommand,
	retryCommand,
	completeCommand,
	approveCommand,
	rejectCommand,
	planCommand,
	stacksCommand,
	showCommand,
	historyCommand,
	consoleCommand,
	importCommand,
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
	c := &cli{stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now, pollInterval: 250 * time.Millisecond}
	return c.run(ctx, args)
}

func (c *cli) run(ctx context.Context, args []string) int {
	// Values in the output come from publishers and scripts: no control character of theirs may
	// reach the terminal (escape.go).
	c.stdout, c.stderr = &controlEscaper{w: c.stdout}, &controlEscaper{w: c.stderr}
	if len(args) == 0 {
		usage(c.stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if cmd := lookup(args[1]); cmd != nil {
				return cmd.run(ctx, c, cmd, []string{"-h"})
			}
			fmt.Fprintf(c.stderr, "stackseam: unknown command %q\n", args[1])
			return exitUsage
		}
		usage(c.stdout)
		return exitOK
	}
	cmd := lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "stackseam: unknown command %q\n\n", args[0])
		usage(c.stderr)
		return exitUsage
	}
	return cmd.run(ctx, c, cmd, args[1:])
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
	fmt.Fprintln(w, "Run `stackseam help COMMAND` (or `stackseam COMMAND -h`) for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 done, 1 failed, 2 wrong command line or configuration.")
}

// newFlags returns the FlagSet of cmd. Its usage text goes to the FlagSet's
// output, which parseFlags points at stdout for -h and stderr for mistakes.
func newFlags(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet("stackseam "+cmd.name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		synopsis := "usage: stackseam " + cmd.name + " [flags]"
		if cmd.args != "" {
			synopsis += " " + cmd.args
		}
		fmt.Fprintf(w, "%s\n\n%s\n", synopsis, cmd.summary)
		if cmd.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
		}
		first := true
		// Like fs.PrintDefaults, but with the "--" the help texts use.
		fs.VisitAll(func(f *flag.Flag) {
			if first {
				fmt.Fprintln(w, "\nflags:")
				first = false
			}
			arg, text := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if arg != "" {
				line += " " + arg
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				text += fmt.Sprintf(" (default %q)", f.DefValue)
			}
			fmt.Fprintf(w, "%s\n    \t%s\n", line, text)
		})
	}
	return fs
}

// parseFlags parses args with fs, allowing flags after the positional
// arguments too (`stackseam show ID --output json`); "--" ends the flags. It
// returns the positional arguments, or done=true with the exit code when the
// command should stop: -h asked for help (usage on stdout, 0) or a flag was
// wrong (error and usage on stderr, 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (positional []string, code int, done bool) {
	var buf strings.Builder
	fs.SetOutput(&buf)
	defer fs.SetOutput(stderr)
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, exitOK, true
		case err != nil:
			fmt.Fprint(stderr, buf.String())
			return nil, exitUsage, true
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), exitOK, false
		}
		if len(rest) == 0 {
			return positional, exitOK, false
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError prints msg and the command's usage on stderr and returns the
// usage exit code.
func usageError(c *cli, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.SetOutput(c.stderr)
	fs.Usage()
	return exitUsage
}

// fail prints an error of a command that ran and returns the failure exit
// code.
func fail(c *cli, cmd *command, err error) int {
	fmt.Fprintf(c.stderr, "stackseam %s: %v\n", cmd.name, err)
	return exitFail
}
