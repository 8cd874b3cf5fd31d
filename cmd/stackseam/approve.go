package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/queue"
)

// The approval events the CLI sends; a machine lists them under approvals.
const (
	eventApprove = "APPROVE"
	eventReject  = "REJECT"
)

var approveCommand = &command{
	name:    "approve",
	args:    "STACK",
	summary: "approve a stack's pending plan, with your name on it (needs approval rights)",
	help: `
Sends APPROVE (or --event) to the approvals queue, with who approved and an
optional comment; the stack's history records both. Who approved is your AWS
identity (STS GetCallerIdentity: the ARN of your user or role session); only
when it cannot be read, --as or your OS user name. The state manager also
records the sender SQS saw.

Only principals granted approval rights (the construct's GrantApprove) can
send to the approvals queue, and an event a machine lists under approvals is
accepted from there only: a publisher's APPROVE on the event queue is
rejected. Look at the plan first with ` + "`stackseam plan STACK`" + `, and approve it
with the --if-version it prints: if a new plan replaced the one you saw (a
CHANGE while you looked), the approval is then ignored instead of applying it.

examples:
  stackseam approve prod --if-version 12 --comment "reviewed with the DBA"
  stackseam reject prod --comment "drops the audit bucket"`,
	run: func(ctx context.Context, c *cli, cmd *command, args []string) int {
		return runApproval(ctx, c, cmd, args, eventApprove)
	},
}

var rejectCommand = &command{
	name:    "reject",
	args:    "STACK",
	summary: "reject a stack's pending plan, with your name on it (needs approval rights)",
	help: `
Sends REJECT (or --event) to the approvals queue, as ` + "`stackseam approve`" + ` does.

examples:
  stackseam reject prod --comment "drops the audit bucket"`,
	run: func(ctx context.Context, c *cli, cmd *command, args []string) int {
		return runApproval(ctx, c, cmd, args, eventReject)
	},
}

// approval is what approve and reject print with --output json.
type approval struct {
	sent
	By       string `json:"by"`
	Identity string `json:"identity"`
}

func runApproval(ctx context.Context, c *cli, cmd *command, args []string, event string) int {
	fs := newFlags(cmd)
	comment := fs.String("comment", "", "why: kept in the stack's history with your name")
	as := fs.String("as", "", "the `NAME` to record when no AWS identity can be read (default: your OS user)")
	fs.StringVar(&event, "event", event, "the approval `EVENT` the machine lists under approvals")
	eventID := fs.String("event-id", "", "an `ID` that makes the approval idempotent")
	ifVersion := ifVersionFlag(fs, "apply the approval only while the stack is at `VERSION` (as `stackseam plan` showed it); otherwise it is ignored")
	sf := sendFlags{q: queueFlags{kind: approvalsQueue}}
	sf.register(fs)
	pos, code, done := parseFlags(fs, args, c.stdout, c.stderr)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(c, fs, "name one stack")
	}
	url, awsCfg, code, ok := sf.q.resolveOrSay(ctx, c, cmd, fs)
	if !ok {
		return code
	}
	by, identity := approver(ctx, awsCfg, *as)
	ev := message.Event{StackID: pos[0], Event: event, EventID: *eventID, By: by, Comment: *comment, IfVersion: *ifVersion}
	body, err := json.Marshal(ev)
	if err != nil {
		return fail(c, cmd, fmt.Errorf("error encoding the approval: %w", err))
	}
	if _, err := message.ParseEvent(body); err != nil {
		return usageError(c, fs, "%s", strings.TrimPrefix(err.Error(), message.ErrInvalid.Error()+": "))
	}
	dedup := first(ev.EventID, newDedupID())
	msg := queue.Outgoing{Body: string(body), GroupID: ev.StackID, DedupID: dedup}
	if err := sf.q.send(ctx, c, awsCfg, url, ev.Event, msg); err != nil {
		return fail(c, cmd, err)
	}
	if sf.out.json() {
		return printJSON(c, cmd, approval{sent: sent{QueueURL: url, GroupID: ev.StackID, DedupID: dedup, Body: body},
			By: by, Identity: identity})
	}
	line := fmt.Sprintf("sent %s to stack %s as %s (%s)", ev.Event, ev.StackID, printable(by), identity)
	if ev.Comment != "" {
		line += ": " + printable(ev.Comment)
	}
	if ev.IfVersion != nil {
		line += fmt.Sprintf(" (if still at version %d)", *ev.IfVersion)
	}
	fmt.Fprintln(c.stdout, line)
	return exitOK
}

// approver says who is approving: the caller's AWS identity when STS can tell it (what the
// approvals queue's permissions are granted to), else the name given with --as, else the OS
// user. identity says which it is.
func approver(ctx context.Context, cfg aws.Config, as string) (by, identity string) {
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err == nil && aws.ToString(out.Arn) != "" {
		return aws.ToString(out.Arn), "AWS caller identity"
	}
	if as != "" {
		return as, "--as; no AWS identity could be read"
	}
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		name += "@" + host
	}
	return name, "OS user; no AWS identity could be read"
}

var planCommand = &command{
	name:    "plan",
	args:    "STACK",
	summary: "show a stack's plan and drift summaries, and where their full text is",
	help: `
Prints the summary every plan or drift task of the stack left in its
metadata: whether it found changes, how many resources it would add, change,
destroy and replace, their addresses (never values), the run, and the log
that holds the full human-readable plan (` + "`aws s3 cp s3://… -`" + ` prints it).
A plan waits for ` + "`stackseam approve`" + ` in the state the machine gives it.

examples:
  stackseam plan prod
  stackseam plan prod --output json`,
	run: runPlan,
}

// planSummary is one plan or drift task's summary, read back from the stack's metadata.
type planSummary struct {
	Task      string   `json:"task"`
	Kind      string   `json:"kind"` // plan or drift
	Found     bool     `json:"found"`
	Add       any      `json:"add"`
	Change    any      `json:"change"`
	Destroy   any      `json:"destroy"`
	Replace   any      `json:"replace"`
	Addresses []string `json:"addresses"`
	Drifted   []string `json:"drifted,omitempty"`
	RunID     string   `json:"runId,omitempty"`
	Log       string   `json:"log,omitempty"`
}

// planSummaries finds the summaries in a stack's metadata: a plan task's outputs are
// <task>.changes, <task>.add…, a drift task's <task>.drift, <task>.add… (README.md, "Plan,
// approve, apply").
func planSummaries(md message.Metadata) []planSummary {
	var out []planSummary
	for _, k := range slices.Sorted(maps.Keys(md)) {
		var task, kind string
		if t, ok := strings.CutSuffix(k, ".changes"); ok {
			task, kind = t, "plan"
		} else if t, ok := strings.CutSuffix(k, ".drift"); ok {
			task, kind = t, "drift"
		} else {
			continue
		}
		if _, ok := md[task+".runId"]; !ok {
			continue
		}
		s := planSummary{Task: task, Kind: kind, Add: md[task+".add"], Change: md[task+".change"],
			Destroy: md[task+".destroy"], Replace: md[task+".replace"], Addresses: []string{}}
		s.Found, _ = md[k].(bool)
		s.RunID, _ = md[task+".runId"].(string)
		s.Log, _ = md[task+".log"].(string)
		if text, ok := md[task+".addresses"].(string); ok {
			_ = json.Unmarshal([]byte(text), &s.Addresses)
		}
		if text, ok := md[task+".drifted"].(string); ok {
			_ = json.Unmarshal([]byte(text), &s.Drifted)
		}
		out = append(out, s)
	}
	return out
}

func runPlan(ctx context.Context, c *cli, cmd *command, args []string) int {
	s, out, code := readStack(ctx, c, cmd, args)
	if s == nil {
		return code
	}
	plans := planSummaries(s.Metadata)
	if out.json() {
		return printJSON(c, cmd, struct {
			StackID string        `json:"stackId"`
			State   string        `json:"state"`
			Plans   []planSummary `json:"plans"`
		}{s.ID, s.State, append([]planSummary{}, plans...)})
	}
	w := c.stdout
	fmt.Fprintf(w, "stack %s · machine %s · state %s\n", printable(s.ID), printable(s.Machine), printable(s.State))
	if len(plans) == 0 {
		fmt.Fprintln(w, "\nno plan or drift summary: no plan or drift task has run for this stack")
		return exitOK
	}
	for _, p := range plans {
		found := map[string][2]string{"plan": {"changes", "no changes"}, "drift": {"DRIFT", "no drift"}}[p.Kind]
		verdict := found[1]
		if p.Found {
			verdict = found[0]
		}
		fmt.Fprintf(w, "\n%s %s (run %s): %s\n", p.Kind, printable(p.Task), printable(p.RunID), verdict)
		fmt.Fprintf(w, "  %v to add, %v to change, %v to destroy, %v to replace\n",
			formatValue(p.Add), formatValue(p.Change), formatValue(p.Destroy), formatValue(p.Replace))
		for _, a := range p.Addresses {
			fmt.Fprintf(w, "  %s\n", printable(a))
		}
		if omitted, ok := s.Metadata[p.Task+".addressesOmitted"]; ok {
			fmt.Fprintf(w, "  … and %s more (in the log)\n", formatValue(omitted))
		}
		if len(p.Drifted) > 0 {
			fmt.Fprintln(w, "  changed outside Terraform:")
			for _, a := range p.Drifted {
				fmt.Fprintf(w, "    %s\n", printable(a))
			}
		}
		if p.Log != "" {
			fmt.Fprintf(w, "  full text: %s\n", printable(p.Log))
		}
	}
	if slices.ContainsFunc(plans, func(p planSummary) bool { return p.Kind == "plan" && p.Found }) {
		// The version ties the approval to this plan: a CHANGE meanwhile makes another plan,
		// and an approval of this one is then ignored instead of applying that one.
		fmt.Fprintf(w, "\napprove what is shown with `stackseam approve %s --if-version %d [--comment ...]`, or `stackseam reject %s --if-version %d`\n",
			printable(s.ID), s.Version, printable(s.ID), s.Version)
	}
	return exitOK
}
