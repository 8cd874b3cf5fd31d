package stackseam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/stackseam/stackseam/internal/message"
)

// Schedule is a fixed event sent to one stack on a clock, for example DESTROY of a preview
// stack every night. An EventBridge rule sends it to the event queue with the stack as the
// message group; each firing's eventId is unique ("schedule-<Name>-<EventBridge event id>"), so
// the queue's content-based deduplication and the state manager's eventId check drop only
// EventBridge's own redeliveries of one firing.
type Schedule struct {
	// Name identifies the schedule: the rule's construct id and part of every eventId it sends.
	// Letters, digits, '.', '_' and '-' (1–128), unique among Schedules. Defaults to
	// "<StackID>-<Event>".
	Name string
	// Expression is an EventBridge schedule expression, evaluated in UTC: "cron(Minutes Hours
	// Day-of-month Month Day-of-week Year)" with exactly one of the day fields "?", or
	// "rate(N minute|minutes|hour|hours|day|days)". Required.
	Expression string
	// StackID is the stack the event is sent to (and the FIFO message group). Required unless
	// States is given.
	StackID string
	// States, with Machine and no StackID, makes the schedule a broadcast: the event goes to
	// every stack of Machine that is in one of States when the schedule fires (a nightly drift
	// check of every running stack). The rule invokes the state manager, which sends each stack
	// the event as its own, conditional on the stack's version. Defaults to none.
	States []string
	// Event is the event's name, e.g. DESTROY; NEXT and task results cannot be scheduled.
	// Required.
	Event string
	// Machine names the stack's machine; needed when the event may create the stack. Defaults
	// to "" (the stack must exist).
	Machine string
	// Metadata is merged into the stack's metadata: flat string, number or boolean values.
	// Defaults to none.
	Metadata map[string]any
	// Disabled keeps the rule but stops it from firing. Defaults to false.
	Disabled bool
}

// name is the schedule's name with its default applied.
func (sc Schedule) name() string {
	if sc.Name != "" {
		return sc.Name
	}
	if len(sc.States) > 0 {
		return sc.Machine + "-" + sc.Event
	}
	return sc.StackID + "-" + sc.Event
}

// broadcastBody is the invocation payload of a broadcast schedule (message.Broadcast), with id in
// place of the firing's id.
func broadcastBody(sc Schedule, id string) map[string]any {
	return map[string]any{"stackseam": message.BroadcastKind, "name": sc.name(), "machine": sc.Machine,
		"states": sc.States, "event": sc.Event, "id": id}
}

// scheduleEventIDPrefix starts the eventId of every scheduled event; EventBridge's event id
// follows the schedule's name.
const scheduleEventIDPrefix = "schedule-"

// maxInputTemplate is EventBridge's limit on a target's input template.
const maxInputTemplate = 8192

var (
	scheduleNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	rateRe         = regexp.MustCompile(`^rate\(([0-9]+) (minute|minutes|hour|hours|day|days)\)$`)
	cronRe         = regexp.MustCompile(`^cron\((.*)\)$`)
	// The characters each cron field may use (EventBridge's syntax: lists, ranges, steps,
	// wildcards, and L, W and # in the day fields). Values are checked by EventBridge on deploy.
	cronFields = []struct {
		name string
		re   *regexp.Regexp
	}{
		{"minutes", regexp.MustCompile(`^[0-9,*/-]+$`)},
		{"hours", regexp.MustCompile(`^[0-9,*/-]+$`)},
		{"day-of-month", regexp.MustCompile(`^[0-9,*?/LW-]+$`)},
		{"month", regexp.MustCompile(`^[0-9A-Za-z,*/-]+$`)},
		{"day-of-week", regexp.MustCompile(`^[0-9A-Za-z,*?/L#-]+$`)},
		{"year", regexp.MustCompile(`^[0-9,*/-]+$`)},
	}
)

// validateExpression checks the shape of an EventBridge schedule expression, so that a typo
// fails synthesis instead of a deployment.
func validateExpression(expr string) error {
	if m := rateRe.FindStringSubmatch(expr); m != nil {
		n, err := strconv.Atoi(m[1])
		switch {
		case err != nil || n < 1:
			return fmt.Errorf("rate %s must be a positive whole number", m[1])
		case n == 1 && strings.HasSuffix(m[2], "s"):
			return fmt.Errorf("EventBridge wants the singular for 1: rate(1 %s)", strings.TrimSuffix(m[2], "s"))
		case n > 1 && !strings.HasSuffix(m[2], "s"):
			return fmt.Errorf("EventBridge wants the plural for %d: rate(%d %ss)", n, n, m[2])
		}
		return nil
	}
	m := cronRe.FindStringSubmatch(expr)
	if m == nil {
		return fmt.Errorf("not an EventBridge schedule expression: want cron(Minutes Hours Day-of-month Month Day-of-week Year) or rate(N minutes|hours|days)")
	}
	fields := strings.Split(m[1], " ")
	if len(fields) != len(cronFields) {
		return fmt.Errorf("cron needs %d fields separated by single spaces (Minutes Hours Day-of-month Month Day-of-week Year), got %d", len(cronFields), len(fields))
	}
	for i, f := range cronFields {
		if !f.re.MatchString(fields[i]) {
			return fmt.Errorf("cron %s field %q is not valid", f.name, fields[i])
		}
	}
	if (fields[2] == "?") == (fields[4] == "?") {
		return fmt.Errorf("cron needs \"?\" in exactly one of day-of-month (%q) and day-of-week (%q)", fields[2], fields[4])
	}
	return nil
}

// scheduleBody is the event a schedule sends, with eventID in place of the per-firing id: a
// string, or the CDK token of EventBridge's event id.
func scheduleBody(sc Schedule, eventID string) map[string]any {
	body := map[string]any{
		"stackId": sc.StackID,
		"event":   sc.Event,
		"eventId": scheduleEventIDPrefix + sc.name() + "-" + eventID,
	}
	if sc.Machine != "" {
		body["machine"] = sc.Machine
	}
	if len(sc.Metadata) > 0 {
		body["metadata"] = sc.Metadata
	}
	return body
}

// validateSchedules reports every problem of every schedule. The event is checked by
// message.ParseEvent, the state manager's own parser, with a sample event id.
func validateSchedules(schedules []Schedule) []string {
	var problems []string
	seen := map[string]int{}
	for i, sc := range schedules {
		name := sc.name()
		add := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("Schedules[%d] (%s): ", i, name)+fmt.Sprintf(format, args...))
		}
		if !scheduleNameRe.MatchString(name) {
			add("name %q must be 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
		} else if j, dup := seen[name]; dup {
			add("name %q is also the name of Schedules[%d]; give each schedule a unique Name", name, j)
		} else {
			seen[name] = i
		}
		if sc.Expression == "" {
			add("Expression is required")
		} else if err := validateExpression(sc.Expression); err != nil {
			add("Expression %q: %v", sc.Expression, err)
		}
		if why := message.Reserved(sc.Event); why != "" {
			add("%s", why)
			continue
		}
		if len(sc.States) > 0 {
			if sc.StackID != "" || len(sc.Metadata) > 0 {
				add("a broadcast (States) goes to every stack of Machine in those states: StackID and Metadata cannot be given")
			}
			raw, err := marshalTemplate(broadcastBody(sc, "00000000-0000-0000-0000-000000000000"))
			if err == nil {
				_, err = message.ParseBroadcast(raw)
			}
			if err != nil {
				add("%v", err)
			}
			continue
		}
		// EventBridge reads <name> in an input template as a placeholder.
		for _, k := range slices.Sorted(maps.Keys(sc.Metadata)) {
			if s, ok := sc.Metadata[k].(string); strings.ContainsAny(k, "<>") || (ok && strings.ContainsAny(s, "<>")) {
				add("metadata %q: '<' and '>' cannot be used (EventBridge input templates read <name> as a placeholder)", k)
			}
		}
		body, err := marshalTemplate(scheduleBody(sc, "00000000-0000-0000-0000-000000000000"))
		if err != nil {
			add("the event cannot be encoded: %v", err)
			continue
		}
		if _, err := message.ParseEvent(body); err != nil {
			add("%s", strings.TrimPrefix(err.Error(), message.ErrInvalid.Error()+": "))
		}
		if len(body) > maxInputTemplate {
			add("the event is %d bytes; EventBridge input templates hold at most %d", len(body), maxInputTemplate)
		}
	}
	return problems
}

// marshalTemplate encodes v as CDK writes input templates: without escaping <, > and &.
func marshalTemplate(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// sweep invokes the state manager on a schedule, so that its sweep (time-to-live events,
// outbox messages left behind) runs in Lambda, where no ticker survives between invocations.
func (s *Stackseam) sweep(p resolved) {
	s.SweepRule = awsevents.NewRule(s.Construct, jsii.String("SweepSchedule"), &awsevents.RuleProps{
		Description: jsii.String("stackseam: runs the state manager's sweep (time-to-live events, outbox messages left behind)"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(p.SweepInterval.Minutes()))),
	})
	s.SweepRule.AddTarget(awseventstargets.NewLambdaFunction(s.StateManager, &awseventstargets.LambdaFunctionProps{
		// The state manager runs its sweep on this payload (or on any aws.events event).
		Event: awsevents.RuleTargetInput_FromObject(map[string]any{"stackseam": "tick"}),
	}))
	// Ticks are the state manager's only asynchronous invocations. A failed or late sweep is
	// not worth retrying: the next tick does the same work, and retries would overlap it.
	maxAge := min(max(p.SweepInterval, time.Minute), 6*time.Hour) // Lambda's bounds
	s.StateManager.ConfigureAsyncInvoke(&awslambda.EventInvokeConfigOptions{
		RetryAttempts: jsii.Number(0),
		MaxEventAge:   seconds(maxAge),
	})
}

// schedules adds one EventBridge rule per schedule, sending its event to the event queue.
// SSE-SQS needs no key policy; the SqsQueue target adds a queue policy statement that lets
// events.amazonaws.com send only on behalf of that rule (aws:SourceArn).
func (s *Stackseam) schedules(p resolved) {
	if len(p.Schedules) == 0 {
		return
	}
	parent := constructs.NewConstruct(s.Construct, jsii.String("Schedules"))
	for _, sc := range p.Schedules {
		name := sc.name()
		if len(sc.States) > 0 {
			rule := awsevents.NewRule(parent, jsii.String(name), &awsevents.RuleProps{
				Description: jsii.String(fmt.Sprintf("stackseam schedule %s: %s to every stack of %s in %s", name, sc.Event, sc.Machine, strings.Join(sc.States, ", "))),
				Schedule:    awsevents.Schedule_Expression(jsii.String(sc.Expression)),
				Enabled:     jsii.Bool(!sc.Disabled),
			})
			rule.AddTarget(awseventstargets.NewLambdaFunction(s.StateManager, &awseventstargets.LambdaFunctionProps{
				Event: awsevents.RuleTargetInput_FromObject(broadcastBody(sc, *awsevents.EventField_EventId())),
			}))
			s.ScheduleRules = append(s.ScheduleRules, rule)
			continue
		}
		rule := awsevents.NewRule(parent, jsii.String(name), &awsevents.RuleProps{
			Description: jsii.String(fmt.Sprintf("stackseam schedule %s: %s to stack %s", name, sc.Event, sc.StackID)),
			Schedule:    awsevents.Schedule_Expression(jsii.String(sc.Expression)),
			Enabled:     jsii.Bool(!sc.Disabled),
		})
		rule.AddTarget(awseventstargets.NewSqsQueue(s.EventQueue, &awseventstargets.SqsQueueProps{
			MessageGroupId: jsii.String(sc.StackID),
			// An input transformer puts EventBridge's id of the firing into eventId, so every
			// firing has its own body (the queue deduplicates by content) and its own eventId.
			Message: awsevents.RuleTargetInput_FromObject(scheduleBody(sc, *awsevents.EventField_EventId())),
		}))
		s.ScheduleRules = append(s.ScheduleRules, rule)
	}
}
