package stackseam

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/aws-cdk-go/awscdk/v2/interfaces/interfacesawscloudwatch"
	"github.com/aws/jsii-runtime-go"

	"github.com/stackseam/stackseam/internal/metrics"
)

// The metrics the functions write in the embedded metric format, by their names in
// internal/metrics (the one place they are spelt). Each record is aggregated by Function alone
// and by Function plus all of its dimensions, so a breakdown is queried with exactly that
// dimension set.
const (
	fnStateManager = metrics.StateManager
	fnSatisfier    = metrics.Satisfier

	dimFunction    = metrics.DimFunction
	dimOutcome     = metrics.DimOutcome
	dimEvent       = metrics.DimEvent
	dimExecutor    = metrics.DimExecutor
	dimResult      = metrics.DimResult
	dimDestination = metrics.DimDestination

	metricEvents          = metrics.Events
	metricTransitions     = metrics.Transitions
	metricExpired         = metrics.Expired
	metricTaskResults     = metrics.TaskResults
	metricTaskDuration    = metrics.TaskDuration
	metricTaskRuns        = metrics.TaskRuns
	metricTaskRunDuration = metrics.TaskRunDuration
	metricOutboxLag       = metrics.OutboxLag
	metricOutboxSent      = metrics.OutboxSent

	// outcomeRejected is engine.Rejected (metricnames_test.go checks it; the construct does not
	// import the engine).
	outcomeRejected = "rejected"
	resultFailed    = metrics.ResultFailed
)

var fiveMinutes = awscdk.Duration_Minutes(jsii.Number(5))

// insightsQuery is a CloudWatch Metrics Insights query of one metric over the dimension set
// Function + dims (SCHEMA matches exactly that set, so the Function-only aggregate of the same
// records is not counted twice), filtered by where (name, value pairs) and grouped by groupBy.
// Every identifier is quoted: Function and Result, for example, are reserved words.
func insightsQuery(stat, metric string, dims []string, where [][2]string, groupBy ...string) string {
	q := func(id string) string { return `"` + id + `"` }
	schema := []string{q(metrics.Namespace), q(dimFunction)}
	for _, d := range dims {
		schema = append(schema, q(d))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s(%s) FROM SCHEMA(%s)", stat, q(metric), strings.Join(schema, ", "))
	for i, w := range where {
		if i == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "%s = '%s'", q(w[0]), w[1])
	}
	if len(groupBy) > 0 {
		quoted := make([]string, len(groupBy))
		for i, g := range groupBy {
			quoted[i] = q(g)
		}
		b.WriteString(" GROUP BY " + strings.Join(quoted, ", "))
	}
	return b.String()
}

// insights is a query as a metric. An empty label keeps the series' own labels (the GROUP BY
// values) on a graph; CDK would otherwise label every series with the query's text.
func insights(label, query string) awscloudwatch.MathExpression {
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String(query),
		Period:     fiveMinutes,
		Label:      jsii.String(label),
	})
}

// functionMetric is a metric the functions write with the Function dimension alone.
func functionMetric(function, name, stat, label string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(metrics.Namespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{dimFunction: jsii.String(function)},
		Statistic:     jsii.String(stat),
		Period:        fiveMinutes,
		Label:         jsii.String(label),
	})
}

// Queries shared by the alarms and the dashboard.
var (
	rejectedEventsQuery = insightsQuery("SUM", metricEvents, []string{dimEvent, dimOutcome},
		[][2]string{{dimFunction, fnStateManager}, {dimOutcome, outcomeRejected}})
	failedTasksQuery = insightsQuery("SUM", metricTaskResults, []string{dimExecutor, dimResult},
		[][2]string{{dimFunction, fnStateManager}, {dimResult, resultFailed}})
)

func (s *Stackseam) alarms(p resolved) {
	alarm := func(id, description string, metric awscloudwatch.IMetric, threshold float64) {
		a := awscloudwatch.NewAlarm(s.Construct, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmDescription:   jsii.String(description),
			Metric:             metric,
			Threshold:          jsii.Number(threshold),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		for _, action := range p.AlarmActions {
			a.AddAlarmAction(action)
			a.AddOkAction(action)
		}
		s.Alarms = append(s.Alarms, a)
	}
	dlq := func(q awssqs.Queue) awscloudwatch.IMetric {
		return q.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: fiveMinutes, Statistic: jsii.String("Maximum")})
	}
	errs := func(fn awslambda.Function) awscloudwatch.IMetric {
		return fn.MetricErrors(&awscloudwatch.MetricOptions{Period: fiveMinutes, Statistic: jsii.String("Sum")})
	}
	age := func(q awssqs.Queue) awscloudwatch.IMetric {
		return q.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Period: fiveMinutes, Statistic: jsii.String("Maximum")})
	}
	alarm("EventDeadLetterQueueAlarm", "stackseam: events in the event dead-letter queue (the state manager gave up on them)", dlq(s.EventDeadLetterQueue), 1)
	alarm("ApprovalDeadLetterQueueAlarm", "stackseam: approvals in the approvals dead-letter queue (the state manager gave up on them)", dlq(s.ApprovalDeadLetterQueue), 1)
	alarm("IntakeDeadLetterQueueAlarm", "stackseam: intake messages in the intake dead-letter queue (the state manager could not forward them to the event queue)", dlq(s.IntakeDeadLetterQueue), 1)
	alarm("TaskDeadLetterQueueAlarm", "stackseam: task messages in the task dead-letter queue (the satisfier crashed or timed out on them)", dlq(s.TaskDeadLetterQueue), 1)
	alarm("StateManagerErrorsAlarm", "stackseam: state manager invocations failed", errs(s.StateManager), 1)
	alarm("SatisfierErrorsAlarm", "stackseam: satisfier invocations failed", errs(s.Satisfier), 1)
	// Metrics Insights queries: the Event and Executor dimensions take values only the machine
	// files know, so the alarms sum over all of them.
	alarm("FailedTasksAlarm", "stackseam: tasks failed (TASK_ERROR results applied by the state manager; see stackseam show)",
		insights("failed tasks", failedTasksQuery), 1)
	alarm("RejectedEventsAlarm", "stackseam: events rejected by the state manager (invalid, or not allowed in the stack's state; see stackseam history)",
		insights("rejected events", rejectedEventsQuery), 1)
	alarm("DatabaseUnavailableAlarm", "stackseam: the state manager cannot reach its database and has paused consuming events (they wait in the event queue; nothing is lost)",
		functionMetric(fnStateManager, metrics.DatabaseUnavailable, "Sum", "failed database probes"), 1)
	alarm("OutboxParkedAlarm", "stackseam: the state manager parked messages that can never be sent (see the parked_outbox table and the stacks' history)",
		functionMetric(fnStateManager, metrics.OutboxParked, "Sum", "parked outbox messages"), 1)
	alarm("MachineInvalidAlarm", "stackseam: a machine file that stacks run on is broken or deleted; they run on the last valid version they ran on until it is fixed (see the state manager's log)",
		functionMetric(fnStateManager, metrics.MachineInvalid, "Sum", "events on a broken or deleted machine file"), 1)
	alarm("TasksOverdueAlarm", "stackseam: task runs got no result by their deadline and were failed by the state manager (the satisfier crashed or hung; see stackseam stacks --stuck)",
		functionMetric(fnStateManager, metrics.TasksOverdue, "Sum", "overdue task runs"), 1)
	alarm("EventQueueAgeAlarm", fmt.Sprintf("stackseam: an event has waited %s or more in the event queue", p.EventQueueAgeAlarmThreshold),
		age(s.EventQueue), p.EventQueueAgeAlarmThreshold.Seconds())
	alarm("TaskQueueAgeAlarm", fmt.Sprintf("stackseam: a task message has waited %s or more in the task queue", p.TaskQueueAgeAlarmThreshold),
		age(s.TaskQueue), p.TaskQueueAgeAlarmThreshold.Seconds())
}

// dashboard graphs the functions' EMF metrics and the queues. Each graph holds at most one
// Metrics Insights query, CloudWatch's limit per widget.
func (s *Stackseam) dashboard(p resolved) {
	const width, height = 12, 6
	graph := func(title string, left []awscloudwatch.IMetric, annotations ...*awscloudwatch.HorizontalAnnotation) awscloudwatch.IWidget {
		props := &awscloudwatch.GraphWidgetProps{
			Title:  jsii.String(title),
			Left:   &left,
			Width:  jsii.Number(width),
			Height: jsii.Number(height),
		}
		if len(annotations) > 0 {
			props.LeftAnnotations = &annotations
		}
		return awscloudwatch.NewGraphWidget(props)
	}
	sm := [][2]string{{dimFunction, fnStateManager}}
	sat := [][2]string{{dimFunction, fnSatisfier}}
	queueMetric := func(label string, metric func(*awscloudwatch.MetricOptions) awscloudwatch.Metric) awscloudwatch.IMetric {
		return metric(&awscloudwatch.MetricOptions{Period: fiveMinutes, Statistic: jsii.String("Maximum"), Label: jsii.String(label)})
	}
	threshold := func(label string, v float64) *awscloudwatch.HorizontalAnnotation {
		return &awscloudwatch.HorizontalAnnotation{Label: jsii.String(label), Value: jsii.Number(v)}
	}
	alarms := make([]interfacesawscloudwatch.IAlarmRef, len(s.Alarms))
	for i, a := range s.Alarms {
		alarms[i] = a
	}

	s.Dashboard = awscloudwatch.NewDashboard(s.Construct, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{})
	s.Dashboard.AddWidgets(
		graph("Events by outcome", []awscloudwatch.IMetric{
			insights("", insightsQuery("SUM", metricEvents, []string{dimEvent, dimOutcome}, sm, dimOutcome))}),
		graph("Rejected events by event", []awscloudwatch.IMetric{
			insights("", insightsQuery("SUM", metricEvents, []string{dimEvent, dimOutcome},
				[][2]string{{dimFunction, fnStateManager}, {dimOutcome, outcomeRejected}}, dimEvent))}),
	)
	s.Dashboard.AddWidgets(
		graph("Transitions and time-to-live events", []awscloudwatch.IMetric{
			functionMetric(fnStateManager, metricTransitions, "Sum", "transitions"),
			functionMetric(fnStateManager, metricExpired, "Sum", "time-to-live events")}),
		graph("Outbox lag by destination (ms, maximum)", []awscloudwatch.IMetric{
			insights("", insightsQuery("MAX", metricOutboxLag, []string{dimDestination}, sm, dimDestination))}),
	)
	s.Dashboard.AddWidgets(
		graph("Task results by executor and result (state manager)", []awscloudwatch.IMetric{
			insights("", insightsQuery("SUM", metricTaskResults, []string{dimExecutor, dimResult}, sm, dimExecutor, dimResult))}),
		graph("Task duration by executor (dispatch to result, ms, average)", []awscloudwatch.IMetric{
			insights("", insightsQuery("AVG", metricTaskDuration, []string{dimExecutor, dimResult}, sm, dimExecutor)),
			functionMetric(fnStateManager, metricTaskDuration, "Maximum", "maximum, all executors")}),
	)
	s.Dashboard.AddWidgets(
		graph("Task runs by executor and result (satisfier)", []awscloudwatch.IMetric{
			insights("", insightsQuery("SUM", metricTaskRuns, []string{dimExecutor, dimResult}, sat, dimExecutor, dimResult))}),
		graph("Task run duration by executor (satisfier, ms, average)", []awscloudwatch.IMetric{
			insights("", insightsQuery("AVG", metricTaskRunDuration, []string{dimExecutor, dimResult}, sat, dimExecutor)),
			functionMetric(fnSatisfier, metricTaskRunDuration, "Maximum", "maximum, all executors")}),
	)
	s.Dashboard.AddWidgets(
		graph("Dead-letter queues (messages)", []awscloudwatch.IMetric{
			queueMetric("event dead-letter queue", s.EventDeadLetterQueue.MetricApproximateNumberOfMessagesVisible),
			queueMetric("approvals dead-letter queue", s.ApprovalDeadLetterQueue.MetricApproximateNumberOfMessagesVisible),
			queueMetric("intake dead-letter queue", s.IntakeDeadLetterQueue.MetricApproximateNumberOfMessagesVisible),
			queueMetric("task dead-letter queue", s.TaskDeadLetterQueue.MetricApproximateNumberOfMessagesVisible)}),
		graph("Oldest message age (seconds)", []awscloudwatch.IMetric{
			queueMetric("event queue", s.EventQueue.MetricApproximateAgeOfOldestMessage),
			queueMetric("task queue", s.TaskQueue.MetricApproximateAgeOfOldestMessage)},
			threshold("event queue alarm", p.EventQueueAgeAlarmThreshold.Seconds()),
			threshold("task queue alarm", p.TaskQueueAgeAlarmThreshold.Seconds())),
	)
	s.Dashboard.AddWidgets(
		graph("Outbox messages sent by destination", []awscloudwatch.IMetric{
			insights("", insightsQuery("SUM", metricOutboxSent, []string{dimDestination}, sm, dimDestination))}),
		graph("Task runs failed by the state manager: no result came", []awscloudwatch.IMetric{
			functionMetric(fnStateManager, metrics.TasksOverdue, "Sum", "past their deadline"),
			functionMetric(fnStateManager, metrics.TasksDeadLettered, "Sum", "dead-lettered")}),
	)
	s.Dashboard.AddWidgets(
		awscloudwatch.NewAlarmStatusWidget(&awscloudwatch.AlarmStatusWidgetProps{
			Title:  jsii.String("Alarms"),
			Alarms: &alarms,
			Width:  jsii.Number(width),
			Height: jsii.Number(height),
		}),
	)
}
