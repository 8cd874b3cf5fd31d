package message

import (
	"encoding/json"
	"errors"
	"testing"

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

func TestParseEventResult(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"event":"TASK_COMPLETED","stackId":"s1","taskRunId":"r1","task":{"name":"infra","executor":"terraform","config":{}},"outputs":{"url":"x"}}`))
	require.NoError(t, err)
	require.True(t, ev.IsResult())
	require.Equal(t, "infra", ev.Task.Name)
	require.Equal(t, "x", ev.Outputs["url"])
}

func TestParseEventRejectsWithReasons(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ body, reason string }{
		"malformed":           {`{"stackId":`, "malformed JSON"},
		"not an object":       {`[1,2]`, "malformed JSON"},
		"two values":          {`{"stackId":"a","event":"X"} {}`, "more than one value"},
		"missing stackId":     {`{"event":"LAUNCH"}`, "stackId is required"},
		"bad stackId":         {`{"stackId":"-x y","event":"LAUNCH"}`, "must match"},
		"long stackId":        {`{"stackId":"a234567890123456789012345678901234567890123456789012345678901234","event":"LAUNCH"}`, "must match"},
		"missing event":       {`{"stackId":"a"}`, "event is required"},
		"lowercase event":     {`{"stackId":"a","event":"launch"}`, "must match"},
		"event/action differ": {`{"stackId":"a","event":"LAUNCH","action":"DESTROY"}`, "differ"},
		"nested metadata":     {`{"stackId":"a","event":"LAUNCH","metadata":{"x":{"y":1}}}`, "metadata.x is an object; metadata must be flat"},
		"list metadata":       {`{"stackId":"a","event":"LAUNCH","metadata":{"x":[1]}}`, "metadata.x is a list"},
		"null metadata":       {`{"stackId":"a","event":"LAUNCH","metadata":{"x":null}}`, "metadata.x is null"},
		"result without run":  {`{"stackId":"a","event":"TASK_ERROR"}`, "needs taskRunId"},
		"outputs on LAUNCH":   {`{"stackId":"a","event":"LAUNCH","outputs":{"a":"b"}}`, "belong on TASK_COMPLETED"},
		"nested outputs":      {`{"stackId":"a","event":"TASK_COMPLETED","taskRunId":"r","outputs":{"a":{}}}`, "outputs.a is an object"},
		"bad machine":         {`{"stackId":"a","event":"LAUNCH","machine":"../x"}`, "not a valid machine name"},
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
