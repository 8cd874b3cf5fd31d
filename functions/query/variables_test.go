package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The function reads its environment through its declared list (internal/settings), so the
// construct's test can check the template against that list; this proves the list has nothing the
// function does not read.
func TestReadsExactlyTheDeclaredVariables(t *testing.T) {
	t.Setenv("DATABASE_SECRET_ID", "stackseam/db")
	_ = vars.LogLevel() // main reads LOG_LEVEL first, for its logger
	cfg, err := readSettings()
	require.NoError(t, err)
	require.ElementsMatch(t, vars.Names(), vars.Read())
	require.True(t, cfg.ReadOnly, "the query function's connections are read-only")
}

func TestADatabaseIsRequired(t *testing.T) {
	t.Setenv("DATABASE_SECRET_ID", "")
	t.Setenv("DATABASE_URL", "")
	_, err := readSettings()
	require.ErrorContains(t, err, "DATABASE_SECRET_ID")
}
