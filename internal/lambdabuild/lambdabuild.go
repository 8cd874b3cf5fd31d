// Package lambdabuild is how a stackseam function is built for AWS Lambda (provided.al2023): the
// go build flags, environment and output name. The construct's bundling and the tests that run
// the shipped binaries under the Lambda Runtime Interface Emulator build from this one place, so
// the binary a test runs is built the way the deployed one is.
package lambdabuild

import "path/filepath"

const (
	// BootstrapName is the file name provided.al2023 runs.
	BootstrapName = "bootstrap"
	// GOOS is Lambda's operating system.
	GOOS = "linux"
	// GOARCH is the architecture the construct deploys (Graviton).
	GOARCH = "arm64"
)

// Flags are the build flags, as aws-lambda-go recommends for provided.al2023: no RPC shim
// (lambda.norpc). -trimpath and -buildvcs=false make the output depend on the sources only, so
// an unchanged function keeps its asset hash and is not redeployed after every commit.
var Flags = []string{"-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// Args returns the go command's arguments that build the main package pkg into
// dir/bootstrap.
func Args(dir, pkg string) []string {
	args := append([]string{"build"}, Flags...)
	return append(args, "-o", filepath.Join(dir, BootstrapName), pkg)
}

// Env returns the environment additions of the build for goarch: a static binary (no cgo) for
// Linux. The construct passes GOARCH; tests running the binary on this host pass the host's.
func Env(goarch string) []string {
	return []string{"GOOS=" + GOOS, "GOARCH=" + goarch, "CGO_ENABLED=0"}
}
