package settings_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/settings"
)

// These tests set environment variables, so they cannot run in parallel (t.Setenv forbids it).

func TestOr(t *testing.T) {
	t.Setenv("STACKSEAM_SETTINGS_TEST", "")
	require.Equal(t, "def", settings.Or("STACKSEAM_SETTINGS_TEST", "def"))
	t.Setenv("STACKSEAM_SETTINGS_TEST", "set")
	require.Equal(t, "set", settings.Or("STACKSEAM_SETTINGS_TEST", "def"))
}

func TestInt(t *testing.T) {
	t.Setenv("STACKSEAM_SETTINGS_TEST", "")
	n, err := settings.Int("STACKSEAM_SETTINGS_TEST", 4)
	require.NoError(t, err)
	require.Equal(t, 4, n)

	t.Setenv("STACKSEAM_SETTINGS_TEST", "7")
	n, err = settings.Int("STACKSEAM_SETTINGS_TEST", 4)
	require.NoError(t, err)
	require.Equal(t, 7, n)

	for _, bad := range []string{"0", "-1", "x", "1.5"} {
		t.Setenv("STACKSEAM_SETTINGS_TEST", bad)
		_, err = settings.Int("STACKSEAM_SETTINGS_TEST", 4)
		require.ErrorContains(t, err, `STACKSEAM_SETTINGS_TEST="`+bad+`": want a whole number`)
	}
}

func TestDuration(t *testing.T) {
	t.Setenv("STACKSEAM_SETTINGS_TEST", "")
	d, err := settings.Duration("STACKSEAM_SETTINGS_TEST", time.Second)
	require.NoError(t, err)
	require.Equal(t, time.Second, d)

	t.Setenv("STACKSEAM_SETTINGS_TEST", "1m30s")
	d, err = settings.Duration("STACKSEAM_SETTINGS_TEST", time.Second)
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, d)

	for _, bad := range []string{"-1s", "10", "soon"} {
		t.Setenv("STACKSEAM_SETTINGS_TEST", bad)
		_, err = settings.Duration("STACKSEAM_SETTINGS_TEST", time.Second)
		require.ErrorContains(t, err, "want a duration")
	}
}

func TestLogLevel(t *testing.T) {
	t.Setenv("LOG_LEVEL", "debug")
	require.Equal(t, slog.LevelDebug, settings.LogLevel())
	t.Setenv("LOG_LEVEL", "nonsense")
	require.Equal(t, slog.LevelInfo, settings.LogLevel())
	t.Setenv("LOG_LEVEL", "")
	require.Equal(t, slog.LevelInfo, settings.LogLevel())
}

func TestDeclaredRefusesUndeclaredNames(t *testing.T) {
	d := &settings.Declared{Function: "test", Variables: []settings.Variable{{Name: "STACKSEAM_SETTINGS_TEST"}}}
	t.Setenv("STACKSEAM_SETTINGS_TEST", "x")
	require.Equal(t, "x", d.Get("STACKSEAM_SETTINGS_TEST"))
	require.PanicsWithValue(t, "settings: test reads STACKSEAM_SETTINGS_UNDECLARED, which is not in its declared variables (internal/settings)",
		func() { d.Get("STACKSEAM_SETTINGS_UNDECLARED") })
	require.Equal(t, []string{"STACKSEAM_SETTINGS_TEST"}, d.Read())
}

func TestDeclaredListsAreConsistent(t *testing.T) {
	for _, d := range []*settings.Declared{settings.StateManager, settings.Satisfier, settings.Query} {
		seen := map[string]bool{}
		for _, v := range d.Variables {
			require.False(t, seen[v.Name], "%s declares %s twice", d.Function, v.Name)
			seen[v.Name] = true
			require.False(t, v.LocalOnly && (v.Deployed || v.Runtime), "%s: %s cannot be local-only and set in Lambda", d.Function, v.Name)
			require.False(t, v.Deployed && v.Runtime, "%s: %s is set by the construct or by Lambda, not both", d.Function, v.Name)
		}
	}
}

// CheckDeployed fails on the mismatches it is for.
func TestCheckDeployedFindsMismatches(t *testing.T) {
	var set []string
	for _, v := range settings.StateManager.Variables {
		if v.Deployed {
			set = append(set, v.Name)
		}
	}
	require.Empty(t, settings.StateManager.CheckDeployed(set))

	set = append(set, "BUCKET", "WORKERS")
	set = slices.DeleteFunc(set, func(n string) bool { return n == "MACHINES_BUCKET" })
	require.Equal(t, []string{
		"statemanager: the construct does not set MACHINES_BUCKET, which the deployed function needs",
		"statemanager: the construct sets BUCKET, which the function does not read",
		"statemanager: the construct sets WORKERS, which only local mode reads",
	}, settings.StateManager.CheckDeployed(set))
	require.Equal(t, []string{
		"satisfier: the construct does not set BUCKET, which the deployed function needs",
		"satisfier: the construct does not set CODEBUILD_PROJECT, which the deployed function needs",
		"satisfier: the construct does not set EVENT_QUEUE_URL, which the deployed function needs",
		"satisfier: the construct does not set LOG_LEVEL, which the deployed function needs",
		"satisfier: the construct does not set RESULT_SIGNING_SECRET_ID, which the deployed function needs",
		"satisfier: the construct does not set TASK_QUEUE_URL, which the deployed function needs",
		"satisfier: the construct does not set TERRAFORM_BINARY, which the deployed function needs",
		"satisfier: the construct does not set TERRAFORM_ROLE_ARN, which the deployed function needs",
		"satisfier: the construct sets LAMBDA_TASK_ROOT, which the Lambda runtime sets",
		"satisfier: the construct sets TASK_OBJECT_KEY, which only a CodeBuild build sets",
	}, settings.Satisfier.CheckDeployed([]string{"LAMBDA_TASK_ROOT", "TASK_OBJECT_KEY"}))
}
