package harness

import (
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// LambdaFake is an HTTP server speaking the Lambda Invoke API, standing in
// for AWS Lambda, which the emulator lacks (see localenv.LambdaFake).
type LambdaFake = localenv.LambdaFake

// LambdaFunction answers one invocation of a fake function. ctx ends when
// the caller gives up on the request.
type LambdaFunction = localenv.LambdaFunction

// LambdaResponse is a fake function's answer.
type LambdaResponse = localenv.LambdaResponse

// LambdaInvocation is one request the fake received.
type LambdaInvocation = localenv.LambdaInvocation

// HandlerError is a fake function's answer when its handler failed (see localenv.HandlerError).
func HandlerError(errorType, message string) LambdaResponse {
	return localenv.HandlerError(errorType, message)
}

// NewLambdaFake starts a fake Lambda with no functions; it is closed at the
// end of the test.
func NewLambdaFake(t testing.TB) *LambdaFake {
	return closedAtEnd(t, localenv.NewLambdaFake())
}

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
