package executor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/stackseam/stackseam/internal/message"
)

// FlatOutputs turns the values of a JSON object (Terraform outputs, the object a Lambda returned)
// into flat stack metadata. Strings, numbers and booleans are kept as they are; a list or an
// object becomes its compact JSON text — a string, so nothing is lost and a later Terraform task
// can jsondecode it; null is left out, since metadata cannot hold it. notes says, key by key, what
// was changed or left out.
func FlatOutputs(values map[string]json.RawMessage) (outputs message.Metadata, notes []string, err error) {
	outputs = message.Metadata{}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		raw := bytes.TrimSpace(values[k])
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("output %s is not JSON: %w", k, err)
		}
		switch v.(type) {
		case string, json.Number, bool:
			outputs[k] = v
		case nil:
			notes = append(notes, fmt.Sprintf("output %s is null and was left out", k))
		default:
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				return nil, nil, fmt.Errorf("output %s: %w", k, err)
			}
			outputs[k] = compact.String()
			notes = append(notes, fmt.Sprintf("output %s is %s and was stored as its JSON text", k, message.JSONKind(v)))
		}
	}
	return outputs, notes, nil
}

// DescribeJSON names the kind of a JSON document ("an object", "a list", "a string", "null"…),
// or says it is not JSON; an executor uses it to say what it got instead of an object.
func DescribeJSON(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return "not JSON"
	}
	return message.JSONKind(v)
}

// Shorten keeps the start and the end of s when it is longer than max bytes — the end of a
// Terraform error is usually the part that says what went wrong — and says how much it left out.
func Shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	head, tail := max/4, max-max/4
	cut := len(s) - head - tail
	out := s[:head] + fmt.Sprintf("\n…(%d bytes left out; the full text is in the log)…\n", cut) + s[len(s)-tail:]
	return strings.ToValidUTF8(out, "")
}
