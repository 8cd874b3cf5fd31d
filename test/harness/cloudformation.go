package harness

import (
	"testing"

	"github.com/stackseam/stackseam/test/localenv"
)

// CloudFormationFake is an HTTP server speaking the CloudFormation query protocol for
// DescribeStacks, standing in for CloudFormation, which the emulator lacks (see
// localenv.CloudFormationFake).
type CloudFormationFake = localenv.CloudFormationFake

// FakeStack is one stack the CloudFormation fake describes.
type FakeStack = localenv.FakeStack

// NewCloudFormationFake starts a fake CloudFormation with no stacks; it is closed at the end of
// the test. A child process reaches it through Env().
func NewCloudFormationFake(t testing.TB) *CloudFormationFake {
	return closedAtEnd(t, localenv.NewCloudFormationFake())
}
