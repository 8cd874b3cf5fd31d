package settings_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/settings"
)

// mainAWSChild is set in the process TestMainAWSNamesBadSettingsFirst starts: there the test
// runs MainAWS itself, which exits.
const mainAWSChild = "STACKSEAM_MAINAWS_CHILD"

// mainAWS runs MainAWS as a function reading one Int setting would, in a child process (MainAWS
// exits), with env added, and returns the child's exit code and log.
func mainAWS(t *testing.T, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainAWSNamesBadSettingsFirst$")
	cmd.Env = append(os.Environ(), append([]string{mainAWSChild + "=1"}, env...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestMainAWSNamesBadSettingsFirst: a function's settings are read before the AWS configuration
// is loaded, so a start with bad settings names them even when the SDK would refuse its AWS_*
// variables too; then a refused AWS configuration stops the start.
func TestMainAWSNamesBadSettingsFirst(t *testing.T) {
	if os.Getenv(mainAWSChild) != "" {
		d := &settings.Declared{Function: "test", Variables: []settings.Variable{{Name: "LOG_LEVEL"}, {Name: "STACKSEAM_MAINAWS_N"}}}
		settings.MainAWS(d, "test function", func() (int, error) {
			read := d.Reading()
			var n int
			read.Int(&n, "STACKSEAM_MAINAWS_N", 1)
			return n, read.Err()
		}, func(_ context.Context, _ *slog.Logger, n int, _ aws.Config) error {
			return fmt.Errorf("run reached with %d", n)
		})
		return
	}
	code, out := mainAWS(t, "AWS_MAX_ATTEMPTS=many", "STACKSEAM_MAINAWS_N=0")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, `STACKSEAM_MAINAWS_N=\"0\"`, "the bad setting is named")

	code, out = mainAWS(t, "AWS_MAX_ATTEMPTS=many", "STACKSEAM_MAINAWS_N=2")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "error loading AWS configuration")
	require.Contains(t, out, "AWS_MAX_ATTEMPTS")

	code, out = mainAWS(t, "STACKSEAM_MAINAWS_N=2", "AWS_REGION=eu-west-1", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "run reached with 2", "run gets the settings read")
}
