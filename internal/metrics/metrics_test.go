package metrics

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRecordWritesOneEMFLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := New(&buf, "statemanager")
	r.now = func() time.Time { return time.UnixMilli(1700000000123) }
	r.Record([]Dim{{"Outcome", "applied"}, {"Event", "LAUNCH"}}, Value{"Events", Count, 1}, Value{"Latency", Milliseconds, 2.5})
	r.Record(nil, Value{"Transitions", Count, 3})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.Equal(t, "statemanager", rec["Function"])
	require.Equal(t, "applied", rec["Outcome"])
	require.Equal(t, 1.0, rec["Events"])
	require.Equal(t, 2.5, rec["Latency"])
	aws := rec["_aws"].(map[string]any)
	require.Equal(t, 1700000000123.0, aws["Timestamp"])
	cw := aws["CloudWatchMetrics"].([]any)[0].(map[string]any)
	require.Equal(t, Namespace, cw["Namespace"])
	require.Equal(t, []any{[]any{"Function"}, []any{"Function", "Outcome", "Event"}}, cw["Dimensions"])
	require.Equal(t, []any{map[string]any{"Name": "Events", "Unit": "Count"}, map[string]any{"Name": "Latency", "Unit": "Milliseconds"}}, cw["Metrics"])

	require.NoError(t, json.Unmarshal([]byte(lines[1]), &rec))
	cw = rec["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
	require.Equal(t, []any{[]any{"Function"}}, cw["Dimensions"])
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	t.Parallel()
	var r *Recorder
	r.Record(nil, Value{"Events", Count, 1}) // must not panic
}
