package message

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestParseEventAcceptsCloudSeamMessages(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"stackId":"feature-123","machine":"qa-env","action":"LAUNCH","metadata":{"apiImage":"latest","replicas":3,"public":true}}`))
	require.NoError(t, err)
	require.Equal(t, "LAUNCH", ev.Event, "legacy field action is read as event")
	require.Equal(t, "qa-env", ev.Machine)
	require.Equal(t, json.Number("3"), ev.Metadata["replicas"], "numbers keep their exact text")
	require.Equal(t, true, ev.Metadata["public"])
}

func TestNullMetadataRemovesKeys(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"stackId":"a","event":"LAUNCH","metadata":{"owner.email":null,"image":"v2"}}`))
	require.NoError(t, err, "null is accepted in an event's metadata, as CloudSeam did")
	require.Contains(t, ev.Metadata, "owner.email")
	require.Nil(t, ev.Metadata["owner.email"])

	stack := Metadata{"owner.email": "a@b.example", "image": "v1", "kept": true}
	require.Equal(t, len("kept")+4+len("image")+2, MergedBytes(stack, ev.Metadata), "a removed key no longer counts")
	stack.Merge(ev.Metadata)
	require.Equal(t, Metadata{"image": "v2", "kept": true}, stack, "null removes the key, others are replaced")
	stack.Merge(Metadata{"absent": nil})
	require.Equal(t, Metadata{"image": "v2", "kept": true}, stack, "removing a missing key changes nothing")

	require.ErrorContains(t, Metadata{"x": nil}.Validate("outputs"), "outputs.x is null", "outputs never remove keys")
	require.NoError(t, Metadata{"x": nil}.ValidateChanges("metadata"))
}

func TestStackIDsMapToSafeKeys(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "feature-123", "feature/login", "dependabot/npm_and_yarn/lodash-4.17.21",
		"release/v1.2.3", "A.b_c-d/e", strings.Repeat("a", 128), strings.Repeat("ab/", 42) + "ab"} {
		require.NoError(t, CheckStackID(id), id)
		ev, err := ParseEvent([]byte(`{"stackId":"` + id + `","event":"LAUNCH"}`))
		require.NoError(t, err, id)
		require.Equal(t, id, ev.StackID)
	}
	for id, why := range map[string]string{
		"":                        "required",
		strings.Repeat("a", 129):  "129 characters",
		"/feature":                "leading /",
		"feature/":                "trailing /",
		"feature//login":          "empty segment",
		"feature/../master":       "dot-dot segment",
		"..":                      "dot-dot",
		"./x":                     "dot segment",
		"feature/.hidden":         "segment starting with a dot",
		"feature/-x":              "segment starting with a dash",
		"feature/lo gin":          "space",
		"feature\\\\login":        "backslash",
		"feature/\\u0007":         "control character",
		"feature/\\u00e9t\\u00e9": "non-ASCII",
		"feature/login\\n":        "newline",
		"a%2F..":                  "percent",
	} {
		body := `{"stackId":"` + id + `","event":"LAUNCH"}`
		_, err := ParseEvent([]byte(body))
		require.ErrorIs(t, err, ErrInvalid, "%s: %s", why, body)
		require.Contains(t, err.Error(), "stackId", why)
	}
	require.False(t, ValidStackID("a//b"))
	require.True(t, ValidStackID("a/b"))
}

func TestParseEventResultByTaskName(t *testing.T) {
	t.Parallel()
	// CloudSeam's satisfier sends no taskRunId; it names the task.
	ev, err := ParseEvent([]byte(`{"event":"TASK_COMPLETED","stackId":"feature/login","task":{"name":"infra","executor":"terraform","config":{}}}`))
	require.NoError(t, err)
	require.True(t, ev.IsResult())
	require.Empty(t, ev.TaskRunID)
	require.Equal(t, "infra", ev.Task.Name)
	// An operator's result for a manual step: the task's name is enough.
	ev, err = ParseEvent([]byte(`{"action":"TASK_ERROR","stackId":"s","task":{"name":"approve"},"description":"rejected by QA"}`))
	require.NoError(t, err)
	require.Equal(t, "approve", ev.Task.Name)
	require.Equal(t, "TASK_ERROR", ev.Event)
}

func TestParseEventResult(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"event":"TASK_COMPLETED","stackId":"s1","taskRunId":"r1","task":{"name":"infra","executor":"terraform","config":{}},"outputs":{"url":"x"}}`))
	require.NoError(t, err)
	require.True(t, ev.IsResult())
	require.Equal(t, "infra", ev.Task.Name)
	require.Equal(t, "x", ev.Outputs["url"])

	ev, err = ParseEvent([]byte(`{"event":"TASK_COMPLETED","stackId":"s1","taskRunId":"r1","outcome":"changes"}`))
	require.NoError(t, err)
	require.Equal(t, OutcomeChanges, ev.Outcome)
}

func TestParseEventRejectsWithReasons(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ body, reason string }{
		"malformed":           {`{"stackId":`, "malformed JSON"},
		"not an object":       {`[1,2]`, "malformed JSON"},
		"two values":          {`{"stackId":"a","event":"X"} {}`, "more than one value"},
		"missing stackId":     {`{"event":"LAUNCH"}`, "stackId is required"},
		"bad stackId":         {`{"stackId":"-x y","event":"LAUNCH"}`, "is not a valid stack id"},
		"long stackId":        {`{"stackId":"` + strings.Repeat("a", 129) + `","event":"LAUNCH"}`, "stackId is 129 characters"},
		"missing event":       {`{"stackId":"a"}`, "event is required"},
		"lowercase event":     {`{"stackId":"a","event":"launch"}`, "must match"},
		"event/action differ": {`{"stackId":"a","event":"LAUNCH","action":"DESTROY"}`, "differ"},
		"nested metadata":     {`{"stackId":"a","event":"LAUNCH","metadata":{"x":{"y":1}}}`, "metadata.x is an object; metadata must be flat"},
		"list metadata":       {`{"stackId":"a","event":"LAUNCH","metadata":{"x":[1]}}`, "metadata.x is a list"},
		"null outputs":        {`{"stackId":"a","event":"TASK_COMPLETED","taskRunId":"r","outputs":{"x":null}}`, "outputs.x is null"},
		"result without run":  {`{"stackId":"a","event":"TASK_ERROR"}`, "needs taskRunId, or task.name"},
		"result, empty task":  {`{"stackId":"a","event":"TASK_ERROR","task":{"name":""}}`, "needs taskRunId, or task.name"},
		"outputs on LAUNCH":   {`{"stackId":"a","event":"LAUNCH","outputs":{"a":"b"}}`, "belong on TASK_COMPLETED"},
		"outcome on LAUNCH":   {`{"stackId":"a","event":"LAUNCH","outcome":"changes"}`, "belong on TASK_COMPLETED"},
		"outcome on an error": {`{"stackId":"a","event":"TASK_ERROR","taskRunId":"r","outcome":"changes"}`, "a TASK_ERROR none"},
		"unknown outcome":     {`{"stackId":"a","event":"TASK_COMPLETED","taskRunId":"r","outcome":"maybe"}`, `outcome "maybe"`},
		"nested outputs":      {`{"stackId":"a","event":"TASK_COMPLETED","taskRunId":"r","outputs":{"a":{}}}`, "outputs.a is an object"},
		"bad machine":         {`{"stackId":"a","event":"LAUNCH","machine":"../x"}`, "not a valid machine name"},
		// What encoding/json lets pass and PostgreSQL or SQS would refuse on every retry.
		"NUL in a value":         {`{"stackId":"a","event":"LAUNCH","metadata":{"x":"a\u0000b"}}`, "metadata.x contains a NUL character"},
		"NUL in a key":           {`{"stackId":"a","event":"LAUNCH","metadata":{"x\u0000":"b"}}`, "contains a NUL character"},
		"huge exponent":          {`{"stackId":"a","event":"LAUNCH","metadata":{"x":1e131071}}`, "number 1e131071 is out of range"},
		"exponent past float64":  {`{"stackId":"a","event":"LAUNCH","metadata":{"x":1e1000000}}`, "out of range"},
		"number with 80 digits":  {`{"stackId":"a","event":"LAUNCH","metadata":{"x":` + strings.Repeat("9", 80) + `}}`, "written with 80 characters"},
		"long eventId":           {`{"stackId":"a","event":"LAUNCH","eventId":"` + strings.Repeat("e", 4000) + `"}`, "eventId is 4000 characters"},
		"eventId with a space":   {`{"stackId":"a","event":"LAUNCH","eventId":"a b"}`, "eventId may hold only"},
		"duplicate key":          {`{"stackId":"a","event":"LAUNCH","stackId":"b"}`, `key "stackId" appears twice`},
		"duplicate metadata key": {`{"stackId":"a","event":"LAUNCH","metadata":{"k":"1","k":"2"}}`, `metadata.key "k" appears twice`},
		"case variant":           {`{"stackId":"a","event":"LAUNCH","StackID":"b"}`, `unknown field "StackID"`},
		"unknown field":          {`{"stackId":"a","event":"LAUNCH","colour":"red"}`, `unknown field "colour"`},
		"task case variant":      {`{"stackId":"a","event":"TASK_ERROR","taskRunId":"r","task":{"Name":"x"}}`, `task.unknown field "Name"`},
		"metadata too big": {`{"stackId":"a","event":"LAUNCH","metadata":{` + bigMetadata(5, 8000) + `}}`,
			"bytes (keys and values); at most 32768"},
		"empty": {``, "malformed JSON"},
		// What would grow past the limits on the way: jsonb writes numbers out in full, and a
		// value's escapes are paid in every task message.
		"tiny exponent":     {`{"stackId":"a","event":"LAUNCH","metadata":{"x":1e-16000}}`, "is 16001 digits written out"},
		"large exponent":    {`{"stackId":"a","event":"LAUNCH","metadata":{"x":1e300}}`, "is 301 digits written out"},
		"lone surrogate":    {`{"stackId":"a","event":"LAUNCH","metadata":{"x":"\ud800"}}`, "half of a surrogate pair"},
		"low surrogate":     {`{"stackId":"a","event":"LAUNCH","metadata":{"x":"a\udc00"}}`, "half of a surrogate pair"},
		"noncharacter":      {`{"stackId":"a","event":"LAUNCH","metadata":{"x":"\uffff"}}`, "noncharacter U+FFFF, which SQS refuses"},
		"escapes are bytes": {`{"stackId":"a","event":"LAUNCH","metadata":{"x":"` + strings.Repeat("<", 6000) + `"}}`, "at most 32768"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseEvent([]byte(tc.body))
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalid))
			require.Contains(t, err.Error(), tc.reason)
		})
	}
}

// bigMetadata is n metadata entries of size bytes each, as JSON object members.
func bigMetadata(n, size int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":%q`, i, strings.Repeat("v", size))
	}
	return strings.Join(parts, ",")
}

func TestParseEventRejectsInvalidUTF8(t *testing.T) {
	t.Parallel()
	// A body cut in the middle of a two-byte character.
	body := append([]byte(`{"stackId":"a","event":"LAUNCH","metadata":{"x":"caf`), 0xc3, '"', '}', '}')
	_, err := ParseEvent(body)
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "not valid UTF-8")
}

func TestParseEventTruncatesDescriptionsOnCharacterBoundaries(t *testing.T) {
	t.Parallel()
	desc := strings.Repeat("é", maxDescriptionLen) // two bytes each: the limit falls inside none or all
	body, err := json.Marshal(map[string]any{"stackId": "a", "event": "TASK_ERROR", "taskRunId": "r", "description": "x" + desc})
	require.NoError(t, err)
	ev, err := ParseEvent(body)
	require.NoError(t, err)
	require.True(t, utf8.ValidString(ev.Description))
	require.True(t, strings.HasSuffix(ev.Description, "…(truncated)"))
}

func TestParseEventAcceptsOrdinaryNumbersAndEscapes(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"stackId":"a","event":"LAUNCH","metadata":{"a":1.5e3,"b":12345678901234567890,"c":-0.25,"d":"\ud83d\ude00","e":"\\ud800","f":"tab\tnew\nline"}}`))
	require.NoError(t, err)
	require.Equal(t, "😀", ev.Metadata["d"], "a surrogate pair is one character")
	require.Equal(t, `\ud800`, ev.Metadata["e"], "an escaped backslash is not an escape")
}

func TestParseEventAcceptsEveryDeclaredField(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"stackId":"a","event":"TASK_COMPLETED","machine":"m","metadata":{"k":1.5e3},"eventId":"id-1:x",
		"ifVersion":3,"taskRunId":"r","task":{"name":"t","executor":"lambda","config":{"Any":{"Nested":[1,{"a":null}]}},"timeoutSeconds":5},
		"description":"d","outputs":{"o":true},"log":"s3://b/logs/x"}`))
	require.NoError(t, err)
	require.Equal(t, "id-1:x", ev.EventID)
	require.Equal(t, map[string]any{"Any": map[string]any{"Nested": []any{json.Number("1"), map[string]any{"a": nil}}}}, ev.Task.Config,
		"a task's config is the machine's own: any keys")
}

func TestParseTask(t *testing.T) {
	t.Parallel()
	body, err := json.Marshal(Task{Task: TaskSpec{Name: "infra", Executor: "terraform", Config: map[string]any{"action": "apply"}},
		Stack: Stack{ID: "s1", Machine: "m", State: "PROVISION", Metadata: Metadata{}}, TaskRunID: "r1"})
	require.NoError(t, err)
	task, err := ParseTask(body)
	require.NoError(t, err)
	require.Equal(t, "r1", task.TaskRunID)
	require.Equal(t, "apply", task.Task.Config["action"])

	_, err = ParseTask([]byte(`{"task":{"name":"x"}}`))
	require.ErrorContains(t, err, "missing taskRunId, task.executor, stack.id, stack.machine")
	_, err = ParseTask([]byte(`nope`))
	require.ErrorContains(t, err, "malformed task message")
}

// FuzzNamePatterns: the hand-written checks ParseEvent uses accept exactly what the patterns
// the error messages quote accept.
func FuzzNamePatterns(f *testing.F) {
	for _, s := range []string{"", "LAUNCH", "TASK_COMPLETED", "a-b", "launch", "A B", "A\n", "env", "env.v2", ".env",
		"_x", "x_", strings.Repeat("a", 128), strings.Repeat("a", 129), "é", "A\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidEventName(s), eventNamePattern.MatchString(s); got != want {
			t.Fatalf("ValidEventName(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := ValidMachineName(s), MachineNamePattern.MatchString(s); got != want {
			t.Fatalf("ValidMachineName(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
