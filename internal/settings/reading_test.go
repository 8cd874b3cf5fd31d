package settings_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/settings"
)

// A Reading reads every setting and names every problem at once.
func TestReadingCollectsEveryProblem(t *testing.T) {
	d := &settings.Declared{Function: "test", Variables: []settings.Variable{
		{Name: "STACKSEAM_READING_N"}, {Name: "STACKSEAM_READING_D"}, {Name: "STACKSEAM_READING_BAD_N"}, {Name: "STACKSEAM_READING_BAD_D"},
	}}
	t.Setenv("STACKSEAM_READING_N", "3")
	t.Setenv("STACKSEAM_READING_BAD_N", "0")
	t.Setenv("STACKSEAM_READING_BAD_D", "soon")
	var n, badN int
	var dur, badD time.Duration
	read := d.Reading()
	read.Int(&n, "STACKSEAM_READING_N", 1)
	read.Duration(&dur, "STACKSEAM_READING_D", time.Minute)
	require.NoError(t, read.Err())
	require.Equal(t, 3, n)
	require.Equal(t, time.Minute, dur, "unset takes the default")

	read.Int(&badN, "STACKSEAM_READING_BAD_N", 1)
	read.Duration(&badD, "STACKSEAM_READING_BAD_D", time.Minute)
	read.Problem(nil)
	read.Problem(errors.New("a problem of the function's own"))
	err := read.Err()
	require.ErrorContains(t, err, `STACKSEAM_READING_BAD_N="0"`)
	require.ErrorContains(t, err, `STACKSEAM_READING_BAD_D="soon"`)
	require.ErrorContains(t, err, "a problem of the function's own")
	require.Len(t, err.(interface{ Unwrap() []error }).Unwrap(), 3)
}
