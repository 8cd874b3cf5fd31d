package stackseam_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// dashboardBody decodes a dashboard's body, an Fn::Join of JSON text and references; each
// reference becomes the text "${Ref:<id>}" or "${<id>.<attribute>}".
func dashboardBody(tb testing.TB, r *resource) map[string]any {
	tb.Helper()
	parts := r.Properties["DashboardBody"].(map[string]any)["Fn::Join"].([]any)[1].([]any)
	var b strings.Builder
	for _, part := range parts {
		switch v := part.(type) {
		case string:
			b.WriteString(v)
		case map[string]any:
			if id, ok := v["Ref"].(string); ok {
				b.WriteString("${Ref:" + id + "}")
			} else if att, ok := v["Fn::GetAtt"].([]any); ok {
				fmt.Fprintf(&b, "${%s.%s}", att[0], att[1])
			} else {
				require.Failf(tb, "unexpected dashboard body part", "%v", v)
			}
		}
	}
	var body map[string]any
	require.NoError(tb, json.Unmarshal([]byte(b.String()), &body), b.String())
	return body
}

type widget struct {
	title       string
	metrics     []any // as in the widget's JSON
	annotations []any
}

func widgets(tb testing.TB, body map[string]any) []widget {
	tb.Helper()
	var out []widget
	for _, w := range body["widgets"].([]any) {
		p := w.(map[string]any)["properties"].(map[string]any)
		wd := widget{title: p["title"].(string)}
		if m, ok := p["metrics"].([]any); ok {
			wd.metrics = m
		}
		if a, ok := p["annotations"].(map[string]any); ok {
			wd.annotations = a["horizontal"].([]any)
		}
		out = append(out, wd)
	}
	return out
}

// query is a Metrics Insights query in a graph; without a label (CDK leaves an empty one out)
// the series keep their GROUP BY values as labels.
func query(q string) []any { return []any{map[string]any{"expression": q}} }

// The dashboard's queries are exactly the EMF dimension sets the functions write (see
// metricnames_test.go for the names) and the queues' metrics.
func TestDefaultDashboard(t *testing.T) {
	tpl := synth(t).templates["Default"]
	ws := widgets(t, dashboardBody(t, tpl.res(t, def+"Dashboard/Resource")))
	queue := func(metric, q, label string) []any {
		return []any{"AWS/SQS", metric, "QueueName", "${" + tpl.id(t, def+q+"/Resource") + ".QueueName}",
			map[string]any{"label": label, "stat": "Maximum"}}
	}
	emf := func(function, metric, stat, label string) []any {
		return []any{"stackseam", metric, "Function", function, map[string]any{"label": label, "stat": stat}}
	}
	want := []widget{
		{title: "Events by outcome", metrics: []any{
			query(`SELECT SUM("Events") FROM SCHEMA("stackseam", "Function", "Event", "Outcome") WHERE "Function" = 'statemanager' GROUP BY "Outcome"`)}},
		{title: "Rejected events by event", metrics: []any{
			query(`SELECT SUM("Events") FROM SCHEMA("stackseam", "Function", "Event", "Outcome") WHERE "Function" = 'statemanager' AND "Outcome" = 'rejected' GROUP BY "Event"`)}},
		{title: "Transitions and time-to-live events", metrics: []any{
			emf("statemanager", "Transitions", "Sum", "transitions"),
			emf("statemanager", "Expired", "Sum", "time-to-live events")}},
		{title: "Outbox lag by destination (ms, maximum)", metrics: []any{
			query(`SELECT MAX("OutboxLag") FROM SCHEMA("stackseam", "Function", "Destination") WHERE "Function" = 'statemanager' GROUP BY "Destination"`)}},
		{title: "Task results by executor and result (state manager)", metrics: []any{
			query(`SELECT SUM("TaskResults") FROM SCHEMA("stackseam", "Function", "Executor", "Result") WHERE "Function" = 'statemanager' GROUP BY "Executor", "Result"`)}},
		{title: "Task duration by executor (dispatch to result, ms, average)", metrics: []any{
			query(`SELECT AVG("TaskDuration") FROM SCHEMA("stackseam", "Function", "Executor", "Result") WHERE "Function" = 'statemanager' GROUP BY "Executor"`),
			emf("statemanager", "TaskDuration", "Maximum", "maximum, all executors")}},
		{title: "Task runs by executor and result (satisfier)", metrics: []any{
			query(`SELECT SUM("TaskRuns") FROM SCHEMA("stackseam", "Function", "Executor", "Result") WHERE "Function" = 'satisfier' GROUP BY "Executor", "Result"`)}},
		{title: "Task run duration by executor (satisfier, ms, average)", metrics: []any{
			query(`SELECT AVG("TaskRunDuration") FROM SCHEMA("stackseam", "Function", "Executor", "Result") WHERE "Function" = 'satisfier' GROUP BY "Executor"`),
			emf("satisfier", "TaskRunDuration", "Maximum", "maximum, all executors")}},
		{title: "Dead-letter queues (messages)", metrics: []any{
			queue("ApproximateNumberOfMessagesVisible", "EventDeadLetterQueue", "event dead-letter queue"),
			queue("ApproximateNumberOfMessagesVisible", "ApprovalDeadLetterQueue", "approvals dead-letter queue"),
			queue("ApproximateNumberOfMessagesVisible", "IntakeDeadLetterQueue", "intake dead-letter queue"),
			queue("ApproximateNumberOfMessagesVisible", "TaskDeadLetterQueue", "task dead-letter queue")}},
		{title: "Oldest message age (seconds)", metrics: []any{
			queue("ApproximateAgeOfOldestMessage", "EventQueue", "event queue"),
			queue("ApproximateAgeOfOldestMessage", "TaskQueue", "task queue")},
			annotations: []any{
				map[string]any{"label": "event queue alarm", "value": 900.0, "yAxis": "left"},
				map[string]any{"label": "task queue alarm", "value": 3600.0, "yAxis": "left"}}},
		{title: "Outbox messages sent by destination", metrics: []any{
			query(`SELECT SUM("OutboxSent") FROM SCHEMA("stackseam", "Function", "Destination") WHERE "Function" = 'statemanager' GROUP BY "Destination"`)}},
		{title: "Task runs failed by the state manager: no result came", metrics: []any{
			emf("statemanager", "TasksOverdue", "Sum", "past their deadline"),
			emf("statemanager", "TasksDeadLettered", "Sum", "dead-lettered")}},
		{title: "Alarms"},
	}
	require.Len(t, ws, len(want))
	for i, w := range want {
		require.Equal(t, w.title, ws[i].title)
		if w.metrics != nil {
			require.Equal(t, normalize(t, w.metrics), ws[i].metrics, w.title)
		}
		require.Equal(t, w.annotations, ws[i].annotations, w.title)
	}

	// Each graph holds at most one Metrics Insights query, CloudWatch's limit per widget.
	for _, w := range ws {
		n := 0
		for _, m := range w.metrics {
			if e, ok := m.([]any)[0].(map[string]any); ok && strings.HasPrefix(e["expression"].(string), "SELECT ") {
				n++
			}
		}
		require.LessOrEqual(t, n, 1, w.title)
	}

	// The alarm status widget lists every alarm.
	body := dashboardBody(t, tpl.res(t, def+"Dashboard/Resource"))
	last := body["widgets"].([]any)[len(want)-1].(map[string]any)["properties"].(map[string]any)
	var alarms []any
	for id := range tpl.ofType("AWS::CloudWatch::Alarm") {
		alarms = append(alarms, "${"+id+".Arn}")
	}
	require.ElementsMatch(t, alarms, last["alarms"])
}

// The embedded stack's dashboard marks the age threshold it was given.
func TestEmbeddedDashboardThresholds(t *testing.T) {
	tpl := synth(t).templates["Embedded"]
	for _, w := range widgets(t, dashboardBody(t, tpl.res(t, emb+"Dashboard/Resource"))) {
		if w.title == "Oldest message age (seconds)" {
			require.Equal(t, []any{
				map[string]any{"label": "event queue alarm", "value": 600.0, "yAxis": "left"},
				map[string]any{"label": "task queue alarm", "value": 3600.0, "yAxis": "left"},
			}, w.annotations)
			return
		}
	}
	require.Fail(t, "no oldest message age widget")
}
