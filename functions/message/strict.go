package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits that keep every accepted event storable in PostgreSQL and every task message it leads to
// within SQS's message size (README.md, "Messages"). They are checked before anything is stored,
// so a violation is a rejection with a reason, never a retry.
const (
	// MaxEventIDLen is the longest eventId: the length SQS accepts for a deduplication id.
	MaxEventIDLen = 128
	// maxNumberLen bounds the text of one JSON number; PostgreSQL's jsonb keeps every digit.
	maxNumberLen = 64
	// MaxMetadataBytes bounds the metadata (or outputs) of one event: keys plus values, in bytes.
	MaxMetadataBytes = 32 << 10
	// MaxStackMetadataBytes bounds a stack's merged metadata, so that a task message (which
	// carries it) always fits in an SQS message.
	MaxStackMetadataBytes = 64 << 10
)

// eventIDChars are the characters SQS accepts in a deduplication id: alphanumerics and
// punctuation.
const eventIDChars = `!"#$%&'()*+,-./:;<=>?@[\]^_` + "`" + `{|}~`

// fieldsOf returns the JSON names of t's fields, read from their tags: the one list of the names a
// message may carry, so a new field is accepted where it is declared.
func fieldsOf(t reflect.Type, extra ...string) map[string]bool {
	out := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			for k := range fieldsOf(f.Type) {
				out[k] = true
			}
			continue
		}
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	for _, e := range extra {
		out[e] = true
	}
	return out
}

// eventFields are the keys an event may have (CloudSeam's legacy `action` too); taskFields those
// of its `task` object.
var (
	eventFields = fieldsOf(reflect.TypeFor[Event](), "action")
	taskFields  = fieldsOf(reflect.TypeFor[TaskSpec]())
)

// strictJSON checks what encoding/json lets pass: the body is valid UTF-8; it holds exactly one
// JSON object; no object anywhere has a key twice; no string has a NUL (PostgreSQL text cannot
// hold one); every number is a finite float64 written in at most maxNumberLen characters; and
// the object's keys, and those of the objects named in nested, are exactly (case included) the
// names allowed. encoding/json would take the last of two equal keys, match keys regardless of
// case, ignore unknown keys and replace invalid UTF-8, each a way to smuggle or lose a value.
func strictJSON(body []byte, allowed map[string]bool, nested map[string]map[string]bool) error {
	if !utf8.Valid(body) {
		return errors.New("malformed JSON: the message is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*jsonFrame
	lastKey := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return errors.New("malformed JSON: empty message")
		}
		if err != nil {
			return fmt.Errorf("malformed JSON: %v", err)
		}
		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
			} else {
				key := tok.(string) // the decoder returns only strings in key position
				if strings.IndexByte(key, 0) >= 0 {
					return fmt.Errorf("%skey %q contains a NUL character", top.path, key)
				}
				if top.keys[key] {
					return fmt.Errorf("%skey %q appears twice", top.path, key)
				}
				if top.allowed != nil && !top.allowed[key] {
					return fmt.Errorf("%sunknown field %q (field names are case-sensitive)", top.path, key)
				}
				top.keys[key] = true
				top.wantKey = false
				lastKey = key
				continue
			}
		} else {
			if top == nil && len(stack) == 0 {
				if d, ok := tok.(json.Delim); !ok || d != '{' {
					return errors.New("malformed JSON: the message must be a JSON object")
				}
			}
			if top != nil && top.object {
				top.wantKey = true // this token starts the value; a key comes next
			}
			switch v := tok.(type) {
			case json.Delim:
				switch v {
				case '{', '[':
					f := &jsonFrame{object: v == '{', wantKey: true, keys: map[string]bool{}}
					switch {
					case top == nil:
						f.allowed = allowed
					case top.object && top.allowed != nil && len(stack) == 1:
						f.allowed = nested[lastKey]
						f.path = lastKey + "."
					case top.path != "":
						f.path = top.path
					}
					stack = append(stack, f)
				default:
					stack = stack[:len(stack)-1]
				}
			case string:
				if strings.IndexByte(v, 0) >= 0 {
					return fmt.Errorf("%s%s contains a NUL character", pathOf(top), lastKey)
				}
			case json.Number:
				if len(v) > maxNumberLen {
					return fmt.Errorf("%s%s: number written with %d characters; at most %d are allowed", pathOf(top), lastKey, len(v), maxNumberLen)
				}
				if _, err := strconv.ParseFloat(string(v), 64); err != nil {
					return fmt.Errorf("%s%s: number %s is out of range", pathOf(top), lastKey, v)
				}
			}
		}
		if len(stack) == 0 {
			break // the one top-level object is complete
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: more than one value in the message")
	}
	return nil
}

// jsonFrame is one open object or array of strictJSON's walk.
type jsonFrame struct {
	object  bool
	wantKey bool
	keys    map[string]bool
	allowed map[string]bool // nil: any key
	path    string          // "task." inside the task object; "" at the top
}

func pathOf(f *jsonFrame) string {
	if f == nil {
		return ""
	}
	return f.path
}
