package store

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/stackseam/stackseam/internal/message"
)

// The rows an event writes (history, outbox) go to PostgreSQL as one jsonb array per statement
// (jsonb_to_recordset). They are written by hand here rather than with encoding/json, which
// reflects over every field of every row on every event: PostgreSQL reads the values, not the
// bytes, so any valid JSON for the same values stores the same rows. Values encoding/json would
// refuse (a time outside years 0–9999) are refused the same way, and a history detail holding a
// value the engine does not put there goes through encoding/json.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Like encoding/json it writes invalid UTF-8 as
// U+FFFD, and it escapes what JSON requires (quote, backslash, control characters); PostgreSQL
// decodes the string to the same text either way.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONTime appends t as encoding/json writes a time.Time (RFC 3339 with nanoseconds), and
// refuses the years encoding/json refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y >= 10000 {
		// encoding/json's own error, word for word.
		_, err := t.MarshalJSON()
		return b, err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// jsonObject appends the members of one JSON object: each key is a constant of this file, so it
// is written as it is.
type jsonObject struct {
	b     []byte
	first bool
	err   error
}

func (o *jsonObject) key(k string) {
	if o.first {
		o.first = false
	} else {
		o.b = append(o.b, ',')
	}
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObject) str(k, v string) { o.key(k); o.b = appendJSONString(o.b, v) }
func (o *jsonObject) int(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}
func (o *jsonObject) time(k string, t time.Time) {
	o.key(k)
	if o.err == nil {
		o.b, o.err = appendJSONTime(o.b, t)
	}
}

// appendObjectArray appends items to b as a JSON array, each an object whose members fields
// writes; the first error a member meets ends it.
func appendObjectArray[T any](b []byte, items []T, fields func(o *jsonObject, item *T)) ([]byte, error) {
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		o := jsonObject{b: append(b, '{'), first: true}
		fields(&o, &items[i])
		if o.err != nil {
			return nil, o.err
		}
		b = append(o.b, '}')
	}
	return append(b, ']'), nil
}

// historyRowsJSON is historyJSON's array, written by hand (see above); the same values as
// json.Marshal of the historyRow values, and the same errors.
func historyRowsJSON(rows []historyRow) ([]byte, error) {
	b := make([]byte, 0, 256*len(rows))
	return appendObjectArray(b, rows, func(o *jsonObject, r *historyRow) {
		o.int("ord", int64(r.Ord))
		o.str("stack_id", r.StackID)
		o.str("machine", r.Machine)
		o.time("at", r.At)
		o.str("kind", r.Kind)
		o.str("event", r.Event)
		o.str("from_state", r.FromState)
		o.str("to_state", r.ToState)
		o.str("task", r.Task)
		o.str("task_run_id", r.TaskRunID)
		o.key("duration_ms")
		if r.DurationMS == nil {
			o.b = append(o.b, "null"...)
		} else {
			o.b = strconv.AppendInt(o.b, *r.DurationMS, 10)
		}
		o.str("reason", r.Reason)
		if len(r.Detail) > 0 {
			o.key("detail")
			var ok bool
			if o.b, ok = appendJSONDetail(o.b, r.Detail); !ok {
				detail, err := json.Marshal(r.Detail)
				if err != nil {
					o.err = err
					return
				}
				o.b = append(o.b, detail...)
			}
		}
		o.str("message_id", r.MessageID)
	})
}

// outboxRow is one row of an INSERT … jsonb_to_recordset into the outbox.
type outboxRow struct {
	StackID      string
	Destination  string
	Body         string
	DelaySeconds int
	CreatedAt    time.Time
}

// outboxRowsJSON writes the rows as insertOutbox reads them (see above).
func outboxRowsJSON(rows []outboxRow) ([]byte, error) {
	n := 2
	for _, r := range rows {
		n += len(r.Body) + len(r.Body)/8 + 160
	}
	b := make([]byte, 0, n)
	return appendObjectArray(b, rows, func(o *jsonObject, r *outboxRow) {
		o.str("stack_id", r.StackID)
		o.str("destination", r.Destination)
		o.str("body", r.Body)
		o.int("delay_seconds", int64(r.DelaySeconds))
		o.time("created_at", r.CreatedAt)
	})
}

// sameMetadata reports whether a and b hold the same keys with equal values, for values as
// stored metadata holds them (strings, json.Number, booleans); any other value counts as a
// difference, so the caller encodes the metadata again rather than trust a comparison it cannot
// make.
func sameMetadata(a, b message.Metadata) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) { // nil encodes as null, not {}
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok {
			return false
		}
		switch av := av.(type) {
		case string:
			if bv, ok := bv.(string); !ok || bv != av {
				return false
			}
		case json.Number:
			if bv, ok := bv.(json.Number); !ok || bv != av {
				return false
			}
		case bool:
			if bv, ok := bv.(bool); !ok || bv != av {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// appendJSONDetail appends a history detail: the values the engine puts there (strings, ints,
// booleans, json.Number, lists of strings, and flat maps of those, as event metadata is) are
// written by hand; ok is false, and nothing is appended, for anything else, which the caller
// then leaves to encoding/json.
func appendJSONDetail(b []byte, m map[string]any) (_ []byte, ok bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	start := len(b)
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		if b, ok = appendJSONValue(b, v); !ok {
			return b[:start], false
		}
	}
	return append(b, '}'), true
}

func appendJSONValue(b []byte, v any) (_ []byte, ok bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendJSONString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case json.Number:
		if v == "" {
			return append(b, '0'), true // as encoding/json writes it
		}
		if !validNumber(string(v)) {
			return b, false // encoding/json refuses it, with its own words
		}
		return append(b, v...), true
	case []string:
		if v == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		return append(b, ']'), true
	case map[string]any:
		return appendJSONDetail(b, v)
	case message.Metadata:
		return appendJSONDetail(b, v)
	}
	return b, false
}

// validNumber reports whether s is a JSON number (RFC 8259), as encoding/json requires of a
// json.Number it writes.
func validNumber(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// tasksJSON is json.Marshal(tasks) written by hand (see above): the same values, the same
// errors.
func tasksJSON(tasks []message.StackTask) ([]byte, error) {
	if tasks == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+200*len(tasks))
	return appendObjectArray(b, tasks, func(o *jsonObject, t *message.StackTask) {
		o.str("name", t.Name)
		o.str("status", string(t.Status))
		o.str("runId", t.RunID)
		o.int("attempt", int64(t.Attempt))
		o.time("dispatchedAt", t.DispatchedAt)
		if t.Deadline != nil {
			o.time("deadline", *t.Deadline)
		}
		if t.FinishedAt != nil {
			o.time("finishedAt", *t.FinishedAt)
		}
		if t.Description != "" {
			o.str("description", t.Description)
		}
		if t.Log != "" {
			o.str("log", t.Log)
		}
	})
}
