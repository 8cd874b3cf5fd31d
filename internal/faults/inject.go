//go:build faultinject

package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Enabled reports whether the fault points are compiled in (build tag
// faultinject). In this build they are.
const Enabled = true

// armed is what EnvVar asked for, read once at start-up.
var armed = mustParse(os.Getenv(EnvVar))

type config struct {
	crashAfterCommit  float64
	crashBeforeResult float64
	sqsSendFail       float64
	poison            string
	poisonPanic       string
	crashOnTask       string
	hangOnTask        string
	hangFor           time.Duration
}

func mustParse(spec string) config {
	c, err := parse(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", EnvVar, spec, err)
		os.Exit(2)
	}
	if spec != "" {
		fmt.Fprintf(os.Stderr, "fault injection armed: %s\n", spec)
	}
	return c
}

func parse(spec string) (config, error) {
	var c config
	if strings.TrimSpace(spec) == "" {
		return c, nil
	}
	for _, item := range strings.Split(spec, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || value == "" {
			return c, fmt.Errorf("%q is not name=value", item)
		}
		switch name {
		case CrashAfterCommit, CrashBeforeResult, SQSSendFail:
			p, err := strconv.ParseFloat(value, 64)
			if err != nil || p < 0 || p > 1 {
				return c, fmt.Errorf("%s takes a probability from 0 to 1, not %q", name, value)
			}
			switch name {
			case CrashAfterCommit:
				c.crashAfterCommit = p
			case CrashBeforeResult:
				c.crashBeforeResult = p
			default:
				c.sqsSendFail = p
			}
		case Poison:
			c.poison = value
		case PoisonPanic:
			c.poisonPanic = value
		case CrashOnTask:
			c.crashOnTask = value
		case HangOnTask:
			marker, d, ok := strings.Cut(value, "@")
			hang, err := time.ParseDuration(d)
			if !ok || marker == "" || err != nil || hang <= 0 {
				return c, fmt.Errorf("%s takes MARKER@DURATION, not %q", name, value)
			}
			c.hangOnTask, c.hangFor = marker, hang
		default:
			return c, fmt.Errorf("unknown fault %q (known: %s, %s, %s, %s, %s, %s, %s)", name,
				CrashAfterCommit, CrashBeforeResult, SQSSendFail, Poison, PoisonPanic, CrashOnTask, HangOnTask)
		}
	}
	return c, nil
}

func announce(format string, args ...any) {
	fmt.Fprintf(os.Stderr, Announcement+" "+format+"\n", args...)
}

// AfterCommit kills the process, as a crash or an OOM kill would, with the
// armed probability when outbox rows wait to be published.
func AfterCommit(pending int) {
	if pending > 0 && armed.crashAfterCommit > 0 && rand.Float64() < armed.crashAfterCommit {
		crash("%s (%d outbox rows unpublished)", CrashAfterCommit, pending)
	}
}

// BeforeResult kills the process with the armed probability: the task ran,
// its result is lost.
func BeforeResult() {
	if armed.crashBeforeResult > 0 && rand.Float64() < armed.crashBeforeResult {
		crash("%s", CrashBeforeResult)
	}
}

func crash(format string, args ...any) {
	announce(format, args...)
	// SIGKILL rather than os.Exit: no deferred function, no flush, nothing
	// the real crash would not skip either.
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is delivered asynchronously; never go on
}

// SendBatch fails the armed share of SendMessageBatch requests.
func SendBatch() error {
	if armed.sqsSendFail == 0 || rand.Float64() >= armed.sqsSendFail {
		return nil
	}
	announce("%s", SQSSendFail)
	return errors.New(Announcement + " " + SQSSendFail + ": SendMessageBatch request failed")
}

// Message fails (or panics on) every message that carries an armed poison
// marker.
func Message(body string) error {
	if armed.poisonPanic != "" && strings.Contains(body, armed.poisonPanic) {
		announce("%s", PoisonPanic)
		panic(Announcement + " " + PoisonPanic)
	}
	if armed.poison != "" && strings.Contains(body, armed.poison) {
		announce("%s", Poison)
		return errors.New(Announcement + " " + Poison + ": this message always fails")
	}
	return nil
}

// Task kills the satisfier on a task message carrying the crash-on-task marker, and stalls it,
// deaf to cancellation, on one carrying the hang-on-task marker.
func Task(body string) {
	if armed.crashOnTask != "" && strings.Contains(body, armed.crashOnTask) {
		crash("%s", CrashOnTask)
	}
	if armed.hangOnTask != "" && strings.Contains(body, armed.hangOnTask) {
		announce("%s", HangOnTask)
		time.Sleep(armed.hangFor)
	}
}
