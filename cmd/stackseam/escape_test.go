package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
)

func TestPrintableEscapesControlsAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain value with spaces = and, commas": "plain value with spaces = and, commas",
		"café ☕ \uFFFD":                         "café ☕ \uFFFD",
		"\x1b[2J\x1b[1;1Hall good":              `\x1b[2J\x1b[1;1Hall good`,
		"FAILED\rok    ":                        `FAILED\rok    `,
		"two\nlines\tand a tab":                 `two\nlines\tand a tab`,
		"bell\a del\x7f":                        `bell\x07 del\u007f`,
		"c1 \u009b31m csi":                      `c1 \u009b31m csi`,
		"bidi \u202egnp.exe":                    `bidi \u202egnp.exe`,
		"bad \xff utf-8":                        `bad \xff utf-8`,
	} {
		require.Equal(t, want, printable(in), "%q", in)
	}
}

func TestControlEscaperLetsNoControlThrough(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	e := &controlEscaper{w: &out}
	// A C1 control split across two writes is still caught.
	in := []byte("line\tcell\n\x1b]0;title\x07 \r\xc2")
	n, err := e.Write(in)
	require.NoError(t, err)
	require.Equal(t, len(in), n)
	_, err = e.Write([]byte("\x9b end\n"))
	require.NoError(t, err)
	require.Equal(t, "line\tcell\n\\u001b]0;title\\u0007 \\u000d\\u009b end\n", out.String())

	// JSON stays JSON: encoding/json leaves DEL and C1 raw, the escaper writes JSON escapes.
	out.Reset()
	data, err := json.Marshal(map[string]string{"v": "a\x7fb\u0085c\u202e"})
	require.NoError(t, err)
	_, err = (&controlEscaper{w: &out}).Write(data)
	require.NoError(t, err)
	var back map[string]string
	require.NoError(t, json.Unmarshal(out.Bytes(), &back))
	require.Equal(t, "a\x7fb\u0085c\u202e", back["v"], "the value decodes unchanged")
	require.NotContains(t, out.String(), "\u0085")
}

// TestShowAndHistoryPrintHostileValuesSafely: values with spaces and "=" are printed whole, and
// no control character a publisher or a script wrote reaches the terminal.
func TestShowAndHistoryPrintHostileValuesSafely(t *testing.T) {
	t.Parallel()
	r := newRecorder(t)
	meta := message.Metadata{
		"title":  "a b=c  d",
		"evil":   "\x1b[2J\x1b[Hall clear\r",
		"c1":     "x\u009b31my",
		"nl":     "one\ntwo",
		"gone":   "soon",
		"number": json.Number("3"),
	}
	s := r.apply(0, message.Event{StackID: "hostile", Event: "LAUNCH", Machine: "feature-env", Metadata: meta})
	r.apply(time.Minute, message.Event{StackID: "hostile", Event: "ACCESS", Metadata: message.Metadata{"gone": nil}})
	r.apply(2*time.Minute, result(s, "provision-infra", message.EventTaskError, "boom\x1b[31m red\nsecond \x1b]8;;http://x\x07line", nil))

	code, stdout, stderr := runEnv(t, r.env(), now, "show", "hostile")
	require.Equal(t, exitOK, code, stderr)
	requireNoControls(t, stdout)
	require.Contains(t, stdout, "  title   a b=c  d\n", "the value is printed whole")
	require.Contains(t, stdout, `  evil    \x1b[2J\x1b[Hall clear\r`+"\n")
	require.Contains(t, stdout, `  c1      x\u009b31my`+"\n")
	require.Contains(t, stdout, `  nl      one\ntwo`+"\n")
	require.Contains(t, stdout, "  number  3\n")
	require.NotContains(t, stdout, "gone", "null removed the key")
	require.Contains(t, stdout, "    boom\\x1b[31m red\n    second \\x1b]8;;http://x\\x07line\n")

	code, stdout, stderr = runEnv(t, r.env(), now, "history", "hostile")
	require.Equal(t, exitOK, code, stderr)
	requireNoControls(t, stdout)
	require.Contains(t, stdout, "gone=null")
	require.Contains(t, stdout, `evil=\x1b[2J\x1b[Hall clear\r`)

	code, stdout, stderr = runEnv(t, r.env(), now, "show", "hostile", "--output", "json")
	require.Equal(t, exitOK, code, stderr)
	requireNoControls(t, stdout)
	var shown struct{ Metadata map[string]any }
	require.NoError(t, json.Unmarshal([]byte(stdout), &shown))
	require.Equal(t, "x\u009b31my", shown.Metadata["c1"], "JSON output keeps the exact value")
	require.Equal(t, "\x1b[2J\x1b[Hall clear\r", shown.Metadata["evil"])
}

func requireNoControls(t *testing.T, s string) {
	t.Helper()
	for _, r := range s {
		if r != '\n' && r != '\t' && controlRune(r) {
			t.Fatalf("output holds the control character %U:\n%s", r, s)
		}
	}
	require.False(t, strings.ContainsRune(s, '\x1b'))
}
