package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/stackseam/stackseam/internal/message"
)

// The stack's metadata and tasks are read on every event. PostgreSQL writes jsonb out in one
// plain shape, and for it they are decoded here without encoding/json's reflection; whatever this
// reader does not expect (an escape in a string, a key it does not know, a null) makes it give up,
// and encoding/json decodes the value as before — so the result is always encoding/json's.

// jsonReader walks one JSON value PostgreSQL wrote.
type jsonReader struct {
	b []byte
	i int
}

func (r *jsonReader) space() {
	for r.i < len(r.b) && (r.b[r.i] == ' ' || r.b[r.i] == '\t' || r.b[r.i] == '\n' || r.b[r.i] == '\r') {
		r.i++
	}
}

// consume consumes c (after spaces) when it is next.
func (r *jsonReader) consume(c byte) bool {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// str reads a string without escapes and of valid UTF-8 (encoding/json would change what is not).
func (r *jsonReader) str() ([]byte, bool) {
	r.space()
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return nil, false
	}
	for j := r.i + 1; j < len(r.b); j++ {
		switch c := r.b[j]; {
		case c == '"':
			s := r.b[r.i+1 : j]
			r.i = j + 1
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// number reads a number's text.
func (r *jsonReader) number() ([]byte, bool) {
	r.space()
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			r.i++
			continue
		}
		break
	}
	s := r.b[start:r.i]
	return s, validNumber(string(s))
}

// literal consumes lit when it is next.
func (r *jsonReader) literal(lit string) bool {
	r.space()
	if len(r.b)-r.i >= len(lit) && string(r.b[r.i:r.i+len(lit)]) == lit {
		r.i += len(lit)
		return true
	}
	return false
}

// end reports whether only spaces are left.
func (r *jsonReader) end() bool {
	r.space()
	return r.i == len(r.b)
}

// members reads an object's members, calling member for each key with the reader at its value.
func (r *jsonReader) members(member func(key []byte) bool) bool {
	if !r.consume('{') {
		return false
	}
	if r.consume('}') {
		return true
	}
	for {
		key, ok := r.str()
		if !ok || !r.consume(':') || !member(key) {
			return false
		}
		if r.consume(',') {
			continue
		}
		return r.consume('}')
	}
}

// decodeMetadata decodes stored metadata as json.Decoder with UseNumber does.
func decodeMetadata(b []byte) (message.Metadata, error) {
	if md, ok := readFlatMetadata(b); ok {
		return md, nil
	}
	var md message.Metadata
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep numbers exactly as published
	err := dec.Decode(&md)
	return md, err
}

// readFlatMetadata reads an object of strings, numbers, booleans and nulls.
func readFlatMetadata(b []byte) (message.Metadata, bool) {
	r := jsonReader{b: b}
	md := message.Metadata{}
	ok := r.members(func(key []byte) bool {
		r.space()
		if r.i >= len(r.b) {
			return false
		}
		switch c := r.b[r.i]; {
		case c == '"':
			s, ok := r.str()
			if ok {
				md[string(key)] = string(s)
			}
			return ok
		case c == '-' || c >= '0' && c <= '9':
			n, ok := r.number()
			if ok {
				md[string(key)] = json.Number(n)
			}
			return ok
		case r.literal("true"):
			md[string(key)] = true
		case r.literal("false"):
			md[string(key)] = false
		case r.literal("null"):
			md[string(key)] = nil
		default:
			return false
		}
		return true
	})
	return md, ok && r.end()
}

// decodeTasks decodes stored tasks as json.Unmarshal does.
func decodeTasks(b []byte) ([]message.StackTask, error) {
	if tasks, ok := readTasks(b); ok {
		return tasks, nil
	}
	var tasks []message.StackTask
	err := json.Unmarshal(b, &tasks)
	return tasks, err
}

// readTasks reads the tasks as tasksJSON writes them (PostgreSQL reorders the keys): the keys
// spelled exactly so, no nulls.
func readTasks(b []byte) ([]message.StackTask, bool) {
	r := jsonReader{b: b}
	if !r.consume('[') {
		return nil, false
	}
	tasks := []message.StackTask{}
	if r.consume(']') {
		return tasks, r.end()
	}
	for {
		var t message.StackTask
		ok := r.members(func(key []byte) bool {
			str := func(dst *string) bool {
				s, ok := r.str()
				*dst = string(s)
				return ok
			}
			when := func() (time.Time, bool) {
				r.space()
				start := r.i
				if _, ok := r.str(); !ok {
					return time.Time{}, false
				}
				var at time.Time
				return at, at.UnmarshalJSON(r.b[start:r.i]) == nil
			}
			switch string(key) {
			case "name":
				return str(&t.Name)
			case "status":
				var s string
				ok := str(&s)
				t.Status = message.TaskStatus(s)
				return ok
			case "runId":
				return str(&t.RunID)
			case "description":
				return str(&t.Description)
			case "log":
				return str(&t.Log)
			case "attempt":
				n, ok := r.number()
				if !ok {
					return false
				}
				v, err := strconv.Atoi(string(n))
				t.Attempt = v
				return err == nil
			case "dispatchedAt":
				at, ok := when()
				t.DispatchedAt = at
				return ok
			case "deadline":
				at, ok := when()
				t.Deadline = &at
				return ok
			case "finishedAt":
				at, ok := when()
				t.FinishedAt = &at
				return ok
			}
			return false
		})
		if !ok {
			return nil, false
		}
		tasks = append(tasks, t)
		if r.consume(',') {
			continue
		}
		return tasks, r.consume(']') && r.end()
	}
}
