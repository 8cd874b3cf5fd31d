package message

import (
	"bytes"
	"strconv"
	"unsafe"
)

// maxFastDepth bounds how deeply nested a body strictFast walks; deeper bodies (legal up to
// encoding/json's own limit) take strictJSON's path.
const maxFastDepth = 32

// strictFast reports whether strictJSON(body, allowed, nested) would return nil, for the bodies
// publishers and the satisfier actually send, without allocating: strictJSON walks the body with
// encoding/json's Decoder.Token, which allocates for every token (and an error value for every
// scalar), and it runs once for every event.
//
// It answers true only when it has checked every rule strictJSON checks; for anything else —
// invalid JSON, a rule broken, or a body it does not try to judge (a string with an escape,
// nesting deeper than maxFastDepth) — it answers false, and the caller runs strictJSON, which
// decides and words the refusal exactly as before. So a body is accepted or refused, with the
// same reason, whichever path judged it; FuzzStrictFast checks that true implies strictJSON's nil.
func strictFast(body []byte, allowed map[string]bool, nested map[string]map[string]bool) bool {
	s := fastScanner{b: body}
	s.space()
	if !s.object(allowed, nested, 1) {
		return false
	}
	s.space()
	return s.i == len(s.b)
}

// fastScanner is strictFast's position in the body.
type fastScanner struct {
	b []byte
	i int
}

func (s *fastScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object checks the object at s.i: keys storable, none twice, each in allowed (nil: any key),
// and its values; nested (the top level's only) names the keys allowed in the objects that are
// values of the top-level object's keys.
func (s *fastScanner) object(allowed map[string]bool, nested map[string]map[string]bool, depth int) bool {
	if depth > maxFastDepth || s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	// The keys seen so far, as offsets into the body: most objects have a handful, and this
	// array keeps them off the heap.
	var seenBuf [24][2]int
	seen := seenBuf[:0]
	for {
		start, end, ok := s.str()
		if !ok {
			return false
		}
		key := s.b[start:end]
		for _, k := range seen {
			if bytes.Equal(s.b[k[0]:k[1]], key) {
				return false
			}
		}
		seen = append(seen, [2]int{start, end})
		if allowed != nil && !allowed[string(key)] { // a map index by string(bytes) does not allocate
			return false
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		if sub := nested[string(key)]; sub != nil {
			// strictJSON restricts the keys of this value when it is an object; an array there
			// is left to it.
			if s.i < len(s.b) && s.b[s.i] == '{' {
				if !s.object(sub, nil, depth+1) {
					return false
				}
			} else if !s.scalar() {
				return false
			}
		} else if !s.value(depth + 1) {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// value checks any value at s.i; objects inside it may have any keys.
func (s *fastScanner) value(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '{':
		return s.object(nil, nil, depth)
	case '[':
		if depth > maxFastDepth {
			return false
		}
		s.i++
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			s.space()
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case ',':
				s.i++
				s.space()
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	}
	return s.scalar()
}

// scalar checks a string, number, true, false or null at s.i.
func (s *fastScanner) scalar() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return true
		}
	}
	return false
}

// str checks the string at s.i and returns where its text starts and ends. It takes only strings
// without escapes (strictJSON judges the others: an escape may hide a NUL or half a surrogate
// pair); the body is valid UTF-8 (the caller checked), so the text is what the string holds, and
// storableString's rules are checked on its bytes: no control character (none is valid JSON
// unescaped, NUL among them), no U+FFFE or U+FFFF.
func (s *fastScanner) str() (start, end int, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return 0, 0, false
	}
	start = s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return start, j, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		case c == 0xEF && j+2 < len(s.b) && s.b[j+1] == 0xBF && (s.b[j+2] == 0xBE || s.b[j+2] == 0xBF):
			return 0, 0, false // U+FFFE or U+FFFF
		}
	}
	return 0, 0, false
}

// number checks a JSON number at s.i (RFC 8259's grammar) and strictJSON's rules for it: at most
// maxNumberLen characters, a finite float64, at most maxNumberLen digits written out.
func (s *fastScanner) number() bool {
	start, j := s.i, s.i
	digits := func() int {
		n := 0
		for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	switch {
	case j < len(s.b) && s.b[j] == '0':
		j++
	case digits() == 0:
		return false
	}
	if j < len(s.b) && s.b[j] == '.' {
		j++
		if digits() == 0 {
			return false
		}
	}
	if j < len(s.b) && (s.b[j] == 'e' || s.b[j] == 'E') {
		j++
		if j < len(s.b) && (s.b[j] == '+' || s.b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return false
		}
	}
	if j-start > maxNumberLen {
		return false
	}
	// A view of the body's bytes, not a copy: the number's text is only read here.
	num := unsafe.String(&s.b[start], j-start)
	if _, err := strconv.ParseFloat(num, 64); err != nil || expandedLen(num) > maxNumberLen {
		return false
	}
	s.i = j
	return true
}
