package store

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/message"
)

// FuzzStoreEvent: whatever a message body is, what the state manager does with it can be stored.
// An event ParseEvent accepts goes through Apply (created, merged, decided, dispatched) without a
// database error, and a body it refuses is recorded as a rejection, with the body and even the
// body as its stack id and event name, without one. A database error here would be a message
// retried until the dead-letter queue instead of applied or rejected (README.md, "Messages").
func FuzzStoreEvent(f *testing.F) {
	for _, s := range []string{
		`{"stackId":"s1","event":"LAUNCH","machine":"env","metadata":{"a":"b","n":1.5e300,"t":true}}`,
		`{"stackId":"s1","event":"TOUCH","metadata":{"x":"é…\u2028"}}`,
		`{"stackId":"s1","event":"TASK_COMPLETED","taskRunId":"r","outputs":{"url":"x"}}`,
		`{"stackId":"s1","event":"LAUNCH","metadata":{"x":"a\u0000b"}}`,
		`{"stackId":"s1","event":"LAUNCH","metadata":{"x":1e131071}}`,
		`{"stackId":"s1","event":"LAUNCH","eventId":"` + string(make([]byte, 200)) + `"}`,
		"{\"stackId\":\"s1\",\"event\":\"X\xc3",
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	b := setup(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, body []byte) {
		key := fmt.Sprintf("fuzz:%d:%d", time.Now().UnixNano(), n.Add(1))
		ev, err := message.ParseEvent(body)
		if err != nil {
			require.NoError(t, b.store.RecordRejection(b.ctx, Rejection{Key: key, MessageID: key,
				StackID: string(body), Event: string(body), Reason: err.Error(), Body: string(body)}))
			return
		}
		_, err = b.store.Apply(b.ctx, ApplyInput{Key: key, StackID: ev.StackID, MessageID: key, Event: ev},
			func(cur *engine.Stack) (engine.Decision, error) {
				return engine.Apply(engine.Input{Stack: cur, Machine: b.m, Event: ev, Now: time.Now().UTC(),
					NewRunID: func() string { return fmt.Sprintf("run-%d", n.Add(1)) }}), nil
			})
		require.NoError(t, err, "an accepted event must be storable: %q", body)
	})
}
