package settings_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/settings"
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
	require.PanicsWithValue(t, "settings: test reads STACKSEAM_SETTINGS_UNDECLARED, which is not in its declared variables (functions/settings)",
		func() { d.Get("STACKSEAM_SETTINGS_UNDECLARED") })
	require.Equal(t, []string{"STACKSEAM_SETTINGS_TEST"}, d.Read())
}

func TestDeclaredListsAreConsistent(t *testing.T) {
	for _, d := range []*settings.Declared{settings.StateManager, settings.Satisfier} {
		seen := map[string]bool{}
		for _, v := range d.Variables {
			require.False(t, seen[v.Name], "%s declares %s twice", d.Function, v.Name)
			seen[v.Name] = true
			require.False(t, v.LocalOnly && (v.Deployed || v.Runtime), "%s: %s cannot be local-only and set in Lambda", d.Function, v.Name)
			require.False(t, v.Deployed && v.Runtime, "%s: %s is set by the construct or by Lambda, not both", d.Function, v.Name)
		}
	}
}
