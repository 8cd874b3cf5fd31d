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
