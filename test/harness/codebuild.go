package harness

import (
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/codebuild"

	"github.com/stackseam/stackseam/test/localenv"
)

// CodeBuildFake is an HTTP server speaking the CodeBuild API whose builds run real processes
// (see localenv.CodeBuildFake).
type CodeBuildFake = localenv.CodeBuildFake

// CodeBuildProject is what one fake project runs.
type CodeBuildProject = localenv.CodeBuildProject

// FakeBuild is one build the fake started.
type FakeBuild = localenv.FakeBuild

// NewCodeBuildFake starts a fake CodeBuild with no projects; it is closed, and its builds
// killed, at the end of the test.
func NewCodeBuildFake(t testing.TB) *CodeBuildFake {
	return closedAtEnd(t, localenv.NewCodeBuildFake())
}

// BuildOutput returns a project Output that logs each build's output with t.Log, line by line,
// prefixed with the build's id, until the end of the test.
func BuildOutput(t testing.TB) func(buildID string) io.Writer {
	return func(buildID string) io.Writer {
		out := &processOutput{t: t, prefix: "build " + buildID + ": "}
		t.Cleanup(out.close)
		return out
	}
}

// CodeBuildClient returns a CodeBuild client of the fake, as an operator's would be.
func CodeBuildClient(t testing.TB, f *CodeBuildFake) *codebuild.Client {
	t.Helper()
	return codebuild.New(codebuild.Options{
		Region: Region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
		BaseEndpoint: aws.String(f.URL),
	})
}
