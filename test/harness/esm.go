package harness

import (
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// EventSourceMapping behaves like a Lambda SQS event-source mapping (see
// localenv.EventSourceMapping).
type EventSourceMapping = localenv.EventSourceMapping

// Invoker runs one invocation of a function (a *RIE, or an InvokerFunc).
type Invoker = localenv.Invoker

// InvokerFunc is a function as an Invoker.
type InvokerFunc = localenv.InvokerFunc

// RIEResult is the outcome of one invocation.
type RIEResult = localenv.RIEResult

// Schedule invokes a function on a clock, as an EventBridge rule does (see localenv.Schedule).
type Schedule = localenv.Schedule

// StartEventSourceMapping starts m (its SQS client defaults to the emulator's) and stops it at
// the end of the test. Register it with a LambdaFake (AddEventSourceMapping) for the Lambda API.
func StartEventSourceMapping(t testing.TB, m *EventSourceMapping) *EventSourceMapping {
	t.Helper()
	if m.SQS == nil {
		m.SQS = SQSClient(t)
	}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// StartSchedule starts s and stops it at the end of the test.
func StartSchedule(t testing.TB, s *Schedule) *Schedule {
	t.Helper()
	s.Start()
	t.Cleanup(s.Stop)
	return s
}
