package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Stack metadata, task descriptions and rejection reasons are written by publishers and scripts,
// so whatever the CLI prints could hold terminal control sequences: an ESC that starts a CSI
// sequence can recolour, move the cursor or rewrite earlier lines (hiding a failure), a CR can
// overwrite a line, and C1 controls act like ESC sequences on some terminals. Every value is
// printed through printable, and stdout and stderr pass through controlEscaper as well, so
// nothing the CLI did not write itself can reach the terminal as a control.

// controlRune reports whether r must not reach a terminal raw: C0 controls, DEL, C1 controls and
// the bidirectional overrides and isolates, which reorder what is displayed.
func controlRune(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// escapeRune writes r as an escape a reader recognises (\n, \t, \r, \x1b, \u009b).
func escapeRune(b *strings.Builder, r rune) {
	switch r {
	case '\n':
		b.WriteString(`\n`)
	case '\t':
		b.WriteString(`\t`)
	case '\r':
		b.WriteString(`\r`)
	default:
		if r < 0x20 {
			fmt.Fprintf(b, `\x%02x`, r)
		} else {
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
}

// printable returns s for one line of output: intact, except that control characters (newlines
// and tabs included, which would break the line or the columns) are written as escapes and bytes
// that are not UTF-8 as \xNN.
func printable(s string) string {
	clean := true
	for i, r := range s {
		if controlRune(r) || (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case controlRune(r):
			escapeRune(&b, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// controlEscaper is the last guard between the CLI and the terminal: it passes newlines and tabs
// (the CLI's own layout) and writes every other control character as an escape. The escapes of
// DEL, C1 and bidirectional controls are JSON escapes (\u007f), so --output json stays valid JSON;
// encoding/json already escapes the C0 controls.
type controlEscaper struct {
	w io.Writer
	// partial holds the start of a UTF-8 sequence that the next Write completes.
	partial []byte
}

func (e *controlEscaper) Write(p []byte) (int, error) {
	data := p
	if len(e.partial) > 0 {
		data = append(e.partial, p...)
		e.partial = nil
	}
	var out strings.Builder
	for i := 0; i < len(data); {
		if !utf8.FullRune(data[i:]) {
			e.partial = append([]byte(nil), data[i:]...)
			break
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == '\n' || r == '\t':
			out.WriteRune(r)
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&out, `\x%02x`, data[i]) // never in JSON: encoding/json writes only UTF-8
		case controlRune(r):
			if r < 0x20 {
				fmt.Fprintf(&out, `\u%04x`, r)
			} else {
				escapeRune(&out, r)
			}
		default:
			out.Write(data[i : i+size])
		}
		i += size
	}
	if _, err := io.WriteString(e.w, out.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}
