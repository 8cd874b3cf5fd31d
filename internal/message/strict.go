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
	if err := checkEscapes(body); err != nil {
		return err
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
				if err := storableString(key); err != nil {
					return fmt.Errorf("%skey %q %v", top.path, key, err)
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
				if err := storableString(v); err != nil {
					return fmt.Errorf("%s%s %v", pathOf(top), lastKey, err)
				}
			case json.Number:
				if len(v) > maxNumberLen {
					return fmt.Errorf("%s%s: number written with %d characters; at most %d are allowed", pathOf(top), lastKey, len(v), maxNumberLen)
				}
				if _, err := strconv.ParseFloat(string(v), 64); err != nil {
					return fmt.Errorf("%s%s: number %s is out of range", pathOf(top), lastKey, v)
				}
				if n := expandedLen(string(v)); n > maxNumberLen {
					// PostgreSQL's jsonb writes a number out in full: 1e-16000 is 16,009 characters
					// in every row and task message that carries it.
					return fmt.Errorf("%s%s: number %s is %d digits written out; at most %d are allowed", pathOf(top), lastKey, v, n, maxNumberLen)
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

// storableString refuses what PostgreSQL text or an SQS message cannot carry: NUL, and the
// noncharacters U+FFFE and U+FFFF, which SQS refuses in a message body (encoding/json writes
// them unescaped, so a task message carrying one could never be sent).
func storableString(s string) error {
	for _, r := range s {
		switch r {
		case 0:
			return errors.New("contains a NUL character")
		case 0xFFFE, 0xFFFF:
			return fmt.Errorf("contains the noncharacter U+%04X, which SQS refuses", r)
		}
	}
	return nil
}

// checkEscapes refuses \u escapes of UTF-16 surrogates that are not a valid pair: encoding/json
// would turn each into U+FFFD, so the value stored would not be the value sent.
func checkEscapes(body []byte) error {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // some other escape: skip the escaped character
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if lo, ok := hex4(i + 6); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11
				continue
			}
			return fmt.Errorf("malformed JSON: \\u%04X at byte %d is half of a surrogate pair", r, i)
		case r >= 0xDC00 && r <= 0xDFFF:
			return fmt.Errorf("malformed JSON: \\u%04X at byte %d is half of a surrogate pair", r, i)
		}
		i += 5
	}
	return nil
}

// expandedLen is how many digits a JSON number has written out without an exponent, as
// PostgreSQL's numeric (and so jsonb) keeps it: 1.5e3 is 4, 1e-5 is 6.
func expandedLen(num string) int {
	mant, exp := num, 0
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		mant = num[:i]
		e, err := strconv.Atoi(num[i+1:])
		if err != nil {
			return len(num)
		}
		exp = e
	}
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	intDigits := len(strings.TrimLeft(intPart, "0"))
	switch {
	case exp >= 0:
		return max(intDigits+exp, len(intPart)) + max(len(frac)-exp, 0)
	default:
		return len(intPart) + len(frac) - exp
	}
}
