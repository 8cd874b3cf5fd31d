package stackseam_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	stackseam "github.com/stackseam/stackseam/constructs"
	stackseammessage "github.com/stackseam/stackseam/internal/message"
)

// transform does what an EventBridge input transformer does with an input template: each
// <name> of the paths map becomes the value at that path, as JSON (a quoted string) where the
// placeholder stands alone, or as raw text inside a JSON string.
func transform(tb testing.TB, template string, values map[string]string) string {
	tb.Helper()
	var out strings.Builder
	inString, escaped := false, false
	for i := 0; i < len(template); i++ {
		c := template[i]
		if c == '<' {
			if end := strings.IndexByte(template[i:], '>'); end > 0 {
				if v, ok := values[template[i+1:i+end]]; ok {
					if inString {
						out.WriteString(v)
					} else {
						raw, err := json.Marshal(v)
						require.NoError(tb, err)
						out.Write(raw)
					}
					i += end
					continue
				}
			}
		}
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		}
		out.WriteByte(c)
	}
	return out.String()
}

func TestTransform(t *testing.T) {
	t.Parallel()
	require.Equal(t, `{"a":"x-1","b":"1","c":"\"1\\"}`,
		transform(t, `{"a":"x-<id>","b":<id>,"c":"\"<id>\\"}`, map[string]string{"id": "1"}))
}

// Each schedule is an EventBridge rule sending its event to the event queue, in the stack's
// message group, with a body that message.ParseEvent (the state manager's parser) accepts and
// that differs between firings (the queue deduplicates by content).
func TestEmbeddedSchedules(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	queue := tpl.id(t, emb+"EventQueue/Resource")
	firings := []string{"7bf73129-1428-4cd3-a780-95db273d1602", "0b4b5d1e-55a8-4c6f-9d7e-2f1c0a9e8b31"}
	for _, sc := range embeddedSchedules {
		if len(sc.States) > 0 {
			continue // TestEmbeddedBroadcastSchedule
		}
		name := sc.Name
		if name == "" {
			name = sc.StackID + "-" + sc.Event
		}
		t.Run(name, func(t *testing.T) {
			p := tpl.res(t, emb+"Schedules/"+name+"/Resource").Properties
			require.Equal(t, sc.Expression, p["ScheduleExpression"])
			require.Equal(t, map[bool]string{false: "ENABLED", true: "DISABLED"}[sc.Disabled], p["State"])
			require.Equal(t, "stackseam schedule "+name+": "+sc.Event+" to stack "+sc.StackID, p["Description"])
			targets := p["Targets"].([]any)
			require.Len(t, targets, 1)
			target := targets[0].(map[string]any)
			require.Equal(t, getAtt(queue, "Arn"), target["Arn"])
			require.Equal(t, map[string]any{"MessageGroupId": sc.StackID}, target["SqsParameters"])
			require.Nil(t, target["Input"])
			transformer := target["InputTransformer"].(map[string]any)
			require.Equal(t, map[string]any{"id": "$.id"}, transformer["InputPathsMap"])
			template := transformer["InputTemplate"].(string)

			var bodies []string
			for _, id := range firings {
				body := transform(t, template, map[string]string{"id": id})
				ev, err := stackseammessage.ParseEvent([]byte(body))
				require.NoError(t, err, body)
				want := stackseammessage.Event{StackID: sc.StackID, Event: sc.Event, Machine: sc.Machine,
					EventID: "schedule-" + name + "-" + id}
				if sc.Metadata != nil {
					want.Metadata = normalizeMetadata(t, sc.Metadata)
				}
				require.Equal(t, want, ev)
				bodies = append(bodies, body)
			}
			require.NotEqual(t, bodies[0], bodies[1], "two firings must not be deduplicated")
			require.Equal(t, bodies[0], transform(t, template, map[string]string{"id": firings[0]}),
				"a redelivered firing has the same body, so the queue drops it")

			// EventBridge may send to the queue for this rule only.
			require.Contains(t, tpl.res(t, emb+"EventQueue/Policy/Resource").Properties["PolicyDocument"].(map[string]any)["Statement"],
				map[string]any{
					"Action":    []any{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
					"Condition": map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": getAtt(tpl.id(t, emb+"Schedules/"+name+"/Resource"), "Arn")}},
					"Effect":    "Allow",
					"Principal": map[string]any{"Service": "events.amazonaws.com"},
					"Resource":  getAtt(queue, "Arn"),
				})
		})
	}
}

// A broadcast schedule invokes the state manager with a payload message.ParseBroadcast accepts,
// carrying the firing's id.
func TestEmbeddedBroadcastSchedule(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	p := tpl.res(t, emb+"Schedules/nightly-drift/Resource").Properties
	require.Equal(t, "cron(0 2 * * ? *)", p["ScheduleExpression"])
	require.Equal(t, "stackseam schedule nightly-drift: CHECK-DRIFT to every stack of reviewed-env in RUN", p["Description"])
	target := p["Targets"].([]any)[0].(map[string]any)
	require.Equal(t, getAtt(tpl.id(t, emb+"StateManager/Resource"), "Arn"), target["Arn"])
	transformer := target["InputTransformer"].(map[string]any)
	body := transform(t, transformer["InputTemplate"].(string), map[string]string{"id": "7bf73129-1428-4cd3-a780-95db273d1602"})
	b, err := stackseammessage.ParseBroadcast([]byte(body))
	require.NoError(t, err, body)
	require.Equal(t, stackseammessage.Broadcast{Stackseam: "broadcast", Name: "nightly-drift", Machine: "reviewed-env",
		States: []string{"RUN"}, Event: "CHECK-DRIFT", ID: "7bf73129-1428-4cd3-a780-95db273d1602"}, b)
	rule := tpl.id(t, emb+"Schedules/nightly-drift/Resource")
	found := false
	for _, perm := range tpl.ofType("AWS::Lambda::Permission") {
		if perm.Properties["SourceArn"] != nil && fmt.Sprint(perm.Properties["SourceArn"]) == fmt.Sprint(getAtt(rule, "Arn")) {
			found = true
		}
	}
	require.True(t, found, "the rule may invoke the state manager")
}

// normalizeMetadata is metadata as ParseEvent returns it (numbers as json.Number).
func normalizeMetadata(tb testing.TB, m map[string]any) stackseammessage.Metadata {
	tb.Helper()
	raw, err := json.Marshal(m)
	require.NoError(tb, err)
	ev, err := stackseammessage.ParseEvent([]byte(`{"stackId":"s","event":"E","metadata":` + string(raw) + `}`))
	require.NoError(tb, err)
	return ev.Metadata
}

func TestEmbeddedSweepInterval(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	require.Equal(t, "rate(5 minutes)", tpl.res(t, emb+"SweepSchedule/Resource").Properties["ScheduleExpression"])
	// A tick older than the next one is not worth running.
	require.Equal(t, 300.0, tpl.res(t, emb+"StateManager/EventInvokeConfig/Resource").Properties["MaximumEventAgeInSeconds"])
}

func TestValidateSchedules(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 9000)
	for _, tc := range []struct {
		schedule stackseam.Schedule
		problems []string
	}{
		{stackseam.Schedule{Expression: "cron(0 22 ? * MON-FRI *)", StackID: "preview-42", Event: "DESTROY"}, nil},
		{stackseam.Schedule{Name: "a.b_c-1", Expression: "rate(1 minute)", StackID: "s", Event: "RETRY_FAILED_TASKS"}, nil},
		{stackseam.Schedule{Expression: "cron(15 10 L * ? 2030-2040)", StackID: "s", Event: "E", Machine: "m",
			Metadata: map[string]any{"n": 1.5, "b": false, "s": "x"}}, nil},
		{stackseam.Schedule{Expression: "cron(0/5 8-17 ? * 6#3 *)", StackID: "s", Event: "E"}, nil},
		{stackseam.Schedule{StackID: "s", Event: "E"}, []string{"Schedules[0] (s-E): Expression is required"}},
		{stackseam.Schedule{Expression: "rate(1 minutes)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "rate(1 minutes)": EventBridge wants the singular for 1: rate(1 minute)`}},
		{stackseam.Schedule{Expression: "rate(2 hour)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "rate(2 hour)": EventBridge wants the plural for 2: rate(2 hours)`}},
		{stackseam.Schedule{Expression: "rate(0 days)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "rate(0 days)": rate 0 must be a positive whole number`}},
		{stackseam.Schedule{Expression: "rate(1 week)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "rate(1 week)": not an EventBridge schedule expression: want cron(Minutes Hours Day-of-month Month Day-of-week Year) or rate(N minutes|hours|days)`}},
		{stackseam.Schedule{Expression: "0 22 * * ?", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "0 22 * * ?": not an EventBridge schedule expression: want cron(Minutes Hours Day-of-month Month Day-of-week Year) or rate(N minutes|hours|days)`}},
		{stackseam.Schedule{Expression: "cron(0 22 * * *)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "cron(0 22 * * *)": cron needs 6 fields separated by single spaces (Minutes Hours Day-of-month Month Day-of-week Year), got 5`}},
		{stackseam.Schedule{Expression: "cron(0 22 * * * *)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "cron(0 22 * * * *)": cron needs "?" in exactly one of day-of-month ("*") and day-of-week ("*")`}},
		{stackseam.Schedule{Expression: "cron(0 22 ? * ? *)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "cron(0 22 ? * ? *)": cron needs "?" in exactly one of day-of-month ("?") and day-of-week ("?")`}},
		{stackseam.Schedule{Expression: "cron(0 2x ? * MON *)", StackID: "s", Event: "E"},
			[]string{`Schedules[0] (s-E): Expression "cron(0 2x ? * MON *)": cron hours field "2x" is not valid`}},
		{stackseam.Schedule{Expression: "rate(1 day)", StackID: "bad id", Event: "destroy"},
			[]string{`Schedules[0] (bad id-destroy): name "bad id-destroy" must be 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
				`Schedules[0] (bad id-destroy): stackId "bad id" is not a valid stack id: a stack id is ` + stackseammessage.StackIDRule}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "destroy"},
			[]string{`Schedules[0] (n): event "destroy" must match ^[A-Z0-9_-]+$`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", Event: "E"}, []string{`Schedules[0] (n): stackId is required`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "E", Machine: "-m"},
			[]string{`Schedules[0] (n): machine "-m" is not a valid machine name`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "NEXT"},
			[]string{`Schedules[0] (n): NEXT is fired by the state manager when a state's tasks are done`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "TASK_ERROR"},
			[]string{`Schedules[0] (n): TASK_ERROR is a task result, which only the task satisfier sends`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "E", Metadata: map[string]any{"nested": map[string]any{"a": 1}}},
			[]string{`Schedules[0] (n): metadata.nested is an object; metadata must be flat (strings, numbers or booleans)`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "E", Metadata: map[string]any{"b": "<id>", "<a>": 1}},
			[]string{`Schedules[0] (n): metadata "<a>": '<' and '>' cannot be used (EventBridge input templates read <name> as a placeholder)`,
				`Schedules[0] (n): metadata "b": '<' and '>' cannot be used (EventBridge input templates read <name> as a placeholder)`}},
		{stackseam.Schedule{Expression: "rate(1 day)", Machine: "m", States: []string{"RUN", "DRIFTED"}, Event: "CHECK-DRIFT"}, nil},
		{stackseam.Schedule{Expression: "rate(1 day)", Machine: "m", States: []string{"RUN"}, Event: "E", StackID: "s"},
			[]string{"Schedules[0] (m-E): a broadcast (States) goes to every stack of Machine in those states: StackID and Metadata cannot be given"}},
		{stackseam.Schedule{Expression: "rate(1 day)", States: []string{"RUN"}, Event: "E"},
			[]string{`Schedules[0] (-E): name "-E" must be 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
				`Schedules[0] (-E): the broadcast's machine "" is not a machine name`}},
		{stackseam.Schedule{Name: "n", Expression: "rate(1 day)", StackID: "s", Event: "E", Metadata: map[string]any{"a": long[:8000], "b": long[:1000]}},
			[]string{`Schedules[0] (n): the event is 9114 bytes; EventBridge input templates hold at most 8192`}},
	} {
		err := (&stackseam.StackseamProps{Schedules: []stackseam.Schedule{tc.schedule}}).Validate()
		if tc.problems == nil {
			require.NoError(t, err, "%+v", tc.schedule)
			continue
		}
		var pe *stackseam.PropsError
		require.True(t, errors.As(err, &pe), "%+v: %v", tc.schedule, err)
		require.Equal(t, tc.problems, pe.Problems)
	}

	// Names are unique; the default name is <stackId>-<event>.
	err := (&stackseam.StackseamProps{Schedules: []stackseam.Schedule{
		{Expression: "rate(1 day)", StackID: "s", Event: "E"},
		{Name: "s-E", Expression: "rate(2 days)", StackID: "t", Event: "E"},
	}}).Validate()
	var pe *stackseam.PropsError
	require.True(t, errors.As(err, &pe))
	require.Equal(t, []string{`Schedules[1] (s-E): name "s-E" is also the name of Schedules[0]; give each schedule a unique Name`}, pe.Problems)
	require.Regexp(t, regexp.MustCompile(`^invalid StackseamProps \(1 problems\)`), err.Error())
}
