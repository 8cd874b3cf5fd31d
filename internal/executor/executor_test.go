package executor_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/message"
)

func TestFlatOutputs(t *testing.T) {
	t.Parallel()
	in := map[string]json.RawMessage{
		"s": json.RawMessage(`"text with \"quotes\""`),
		"n": json.RawMessage(`1.50`),
		"b": json.RawMessage(`false`),
		"z": json.RawMessage(`null`),
		"l": json.RawMessage(`[ "a", 1 ]`),
		"o": json.RawMessage(`{ "x" : { "y": true } }`),
	}
	out, notes, err := executor.FlatOutputs(in)
	require.NoError(t, err)
	require.Equal(t, message.Metadata{"s": `text with "quotes"`, "n": json.Number("1.50"), "b": false,
		"l": `["a",1]`, "o": `{"x":{"y":true}}`}, out)
	require.Equal(t, []string{
		"output l is a list and was stored as its JSON text",
		"output o is an object and was stored as its JSON text",
		"output z is null and was left out",
	}, notes)
	require.NoError(t, out.Validate("outputs"), "always flat")

	_, _, err = executor.FlatOutputs(map[string]json.RawMessage{"bad": json.RawMessage(`{`)})
	require.ErrorContains(t, err, "output bad is not JSON")
}

func TestDescribeJSON(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{`{}`: "an object", ` [1] `: "a list", `"s"`: "a string", `1`: "a number",
		`true`: "a boolean", `null`: "null", ``: "empty", `{`: "not JSON", `1 2`: "not JSON"} {
		require.Equal(t, want, executor.DescribeJSON([]byte(raw)), raw)
	}
}

func TestShorten(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", executor.Shorten("short", 100))
	long := strings.Repeat("é", 1000) // 2000 bytes
	out := executor.Shorten(long, 100)
	require.True(t, utf8.ValidString(out))
	require.Contains(t, out, "bytes left out; the full text is in the log")
	require.Less(t, len(out), 200)
}
