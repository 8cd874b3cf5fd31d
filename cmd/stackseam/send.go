package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
	"github.com/stackseam/stackseam/internal/signing"
)

var sendCommand = &command{
	name:    "send",
	args:    "",
	summary: "publish an event to a stack (validated locally first)",
	help: `
Builds {"stackId", "event", "machine", "metadata", "eventId"}, checks it as
the state manager will (stack id, event name, metadata), and sends it to the
FIFO event queue with the stack id as message group and a fresh deduplication
id (the event id, when given). The state manager applies it, or rejects it
with a reason that ` + "`stackseam history ID`" + ` shows.

--machine is needed the first time a stack is seen. Metadata values are
strings; the keys are merged into the stack's metadata. NEXT and task results
cannot be sent: the state manager and the task satisfier send those.
--if-version makes the event conditional: it is ignored if anything changed
the stack since ` + "`stackseam show`" + ` printed that version.

examples:
  stackseam send --stack feature-123 --machine feature-env --event LAUNCH --meta branch=feature/123
  stackseam send --stack feature-123 --event ACCESS --meta lastAccess=2024-05-01T10:00:00Z`,
	run: runSend,
}

var retryCommand = &command{
	name:    "retry",
	args:    "STACK",
	summary: "re-dispatch a stack's failed tasks (or, with --pending, its pending ones)",
	help: `
Sends RETRY_FAILED_TASKS, or RETRY_PENDING_TASKS with --pending, to the
stack. Each matching task of the current state is dispatched again with a new
run id, so a late result of the old run cannot settle it. Use --pending for a
task whose result never came back (a lost message, a crashed satisfier).

examples:
  stackseam retry feature-123
  stackseam retry --pending feature-123`,
	run: runRetry,
}

// metaFlag collects repeated --meta KEY=VALUE flags.
type metaFlag struct{ values message.Metadata }

func (m *metaFlag) String() string { return "" }

func (m *metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, not %q", v)
	}
	if m.values == nil {
		m.values = message.Metadata{}
	}
	m.values[k] = val
	return nil
}

func runSend(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	var t targetFlags
	event := t.register(fs, "event", "the `EVENT` name (required)")
	machineName := fs.String("machine", "", "the stack's `MACHINE` (required for a new stack)")
	eventID := fs.String("event-id", "", "an `ID` that makes the event idempotent: a second event with it is not applied")
	ifVersion := ifVersionFlag(fs, "apply the event only while the stack is at `VERSION` (see `stackseam show`); otherwise it is ignored")
	var meta metaFlag
	fs.Var(&meta, "meta", "metadata `KEY=VALUE` to merge into the stack's (repeatable)")
	var sf sendFlags
	sf.register(fs)
	if code, ok := t.parse(c, fs, args); !ok {
		return code
	}
	if why := message.Reserved(*event); why != "" {
		return usageError(c, fs, "%s", why)
	}
	ev := message.Event{StackID: t.stack, Event: *event, Machine: *machineName, Metadata: meta.values, EventID: *eventID,
		IfVersion: *ifVersion}
	return publish(ctx, c, cmd, fs, &sf, ev)
}

func runRetry(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	pending := fs.Bool("pending", false, "retry the tasks still waiting for a result instead of the failed ones")
	eventID := fs.String("event-id", "", "an `ID` that makes the retry idempotent")
	var sf sendFlags
	sf.register(fs)
	id, code, ok := parseStack(c, fs, args)
	if !ok {
		return code
	}
	ev := message.Event{StackID: id, Event: message.EventRetryFailedTasks, EventID: *eventID}
	if *pending {
		ev.Event = message.EventRetryPendingTasks
	}
	return publish(ctx, c, cmd, fs, &sf, ev)
}

// targetFlags are what a command that takes flags only sends to (send, complete): --stack, and
// one more required flag naming what the command sends (--event, --task).
type targetFlags struct {
	stack string
	what  string
	value string
}

// register registers --stack and --what (with usage) on fs and returns what's value.
func (t *targetFlags) register(fs *flag.FlagSet, what, usage string) *string {
	t.what = what
	fs.StringVar(&t.stack, "stack", "", "the stack `ID` (required)")
	fs.StringVar(&t.value, what, "", usage)
	return &t.value
}

// parse parses args with fs (parseNoArgs) and checks that both flags are given. When the command
// cannot go on (or help was asked for), ok is false and code the exit code.
func (t *targetFlags) parse(c *cli, fs *flag.FlagSet, args []string) (code int, ok bool) {
	hint := fmt.Sprintf(" (the stack and %s are flags: --stack ID --%s %s)", t.what, t.what, strings.ToUpper(t.what))
	if code, ok := parseNoArgs(c, fs, args, hint); !ok {
		return code, false
	}
	if t.stack == "" || t.value == "" {
		return usageError(c, fs, "--stack and --%s are required", t.what), false
	}
	return exitOK, true
}

// sendFlags are the flags of the commands that send an event (send, retry, complete; approve
// and reject with the approvals queue): the queue, and the output format.
type sendFlags struct {
	q   queueFlags
	out outputFlag
}

func (f *sendFlags) register(fs *flag.FlagSet) {
	f.q.register(fs)
	f.out.register(fs)
}

// sent is what send and retry print with --output json.
type sent struct {
	QueueURL string          `json:"queueUrl"`
	GroupID  string          `json:"groupId"`
	DedupID  string          `json:"dedupId"`
	Body     json.RawMessage `json:"body"`
}

// publish validates ev as the state manager will and sends it to the event
// queue.
func publish(ctx context.Context, c *cli, cmd *command, fs *flag.FlagSet, sf *sendFlags, ev message.Event) int {
	return publishSigned(ctx, c, cmd, fs, sf, ev, nil)
}

// publishSigned is publish with the result signing key: when keyFor returns a key, the message
// carries the body's signature (signing.Attribute), as the satisfier's results do.
func publishSigned(ctx context.Context, c *cli, cmd *command, fs *flag.FlagSet, sf *sendFlags, ev message.Event,
	keyFor func(context.Context, aws.Config) (signing.Key, error)) int {
	q, out := &sf.q, &sf.out
	body, err := json.Marshal(ev)
	if err != nil {
		return fail(c, cmd, fmt.Errorf("error encoding the event: %w", err))
	}
	if _, err := message.ParseEvent(body); err != nil {
		return usageError(c, fs, "%s", strings.TrimPrefix(err.Error(), message.ErrInvalid.Error()+": "))
	}
	url, awsCfg, code, ok := q.resolveOrSay(ctx, c, cmd, fs)
	if !ok {
		return code
	}
	dedup := ev.EventID
	if dedup == "" {
		dedup = newDedupID()
	}
	msg := queue.Outgoing{Body: string(body), GroupID: ev.StackID, DedupID: dedup}
	if keyFor != nil {
		key, err := keyFor(ctx, awsCfg)
		if err != nil {
			return fail(c, cmd, err)
		}
		if key.Required() {
			msg.Attributes = map[string]string{signing.Attribute: key.Sign(string(body))}
		}
	}
	if err := q.send(ctx, c, awsCfg, url, ev.Event, msg); err != nil {
		return fail(c, cmd, err)
	}
	if out.json() {
		return printJSON(c, cmd, sent{QueueURL: url, GroupID: ev.StackID, DedupID: dedup, Body: body})
	}
	line := fmt.Sprintf("sent %s to stack %s", ev.Event, ev.StackID)
	var extras []string
	if ev.Machine != "" {
		extras = append(extras, "machine "+ev.Machine)
	}
	if len(ev.Metadata) > 0 {
		extras = append(extras, "metadata "+formatMetadata(ev.Metadata))
	}
	if ev.EventID != "" {
		extras = append(extras, "event id "+ev.EventID)
	}
	if ev.IfVersion != nil {
		extras = append(extras, fmt.Sprintf("if still at version %d", *ev.IfVersion))
	}
	if len(extras) > 0 {
		line += " (" + strings.Join(extras, ", ") + ")"
	}
	fmt.Fprintln(c.stdout, line)
	return exitOK
}

// newDedupID returns a random FIFO deduplication id, so sending the same
// event twice on purpose delivers it twice.
func newDedupID() string { return randomHex(16) }

// ifVersionFlag registers --if-version on fs: the stack version an event (or approval) applies
// at, nil until the flag is given.
func ifVersionFlag(fs *flag.FlagSet, usage string) **int64 {
	var v *int64
	fs.Func("if-version", usage, func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a stack version (a whole number), not %q", s)
		}
		v = &n
		return nil
	})
	return &v
}
