package stackseam

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
)

// The dashboard and alarms query metrics by the names internal/metrics defines, which the
// functions write with, so a rename changes both sides. The one value spelt here is the outcome the
// rejected-events alarm filters on, which is the engine's.
func TestRejectedOutcomeIsTheEngines(t *testing.T) {
	t.Parallel()
	require.Equal(t, string(engine.Rejected), outcomeRejected)
}
