package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits on what an event may carry. They keep one bad publisher from
// bloating a stack row that every later event reads.
const (
	maxMetadataKeys     = 200
	maxMetadataKeyLen   = 128
	maxMetadataValueLen = 8192
	maxDescriptionLen   = 16384
)

var (
	eventNamePattern = regexp.MustCompile(`^[A-Z0-9_-]+$`)
)

// ValidEventName reports whether s matches eventNamePattern (event and state names), without
// the regular expression machine (every event is checked); every check of a name goes through it,
// and the pattern stays as the rule's spelling in messages (FuzzNamePatterns keeps both equal).
func ValidEventName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidMachineName reports whether s matches MachineNamePattern, without the regular expression
// machine (every event naming a machine is checked); the machine parser and broadcasts check
// through it too.
func ValidMachineName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// MachineNamePattern is what an event's `machine` may say; the machine parser refuses a file whose
// name does not match it, so every machine a file defines can be named in events.
var MachineNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ReservedMachineNames are the bucket's own top-level prefixes (fences/, plans/, logs/, handovers/ and the
// default machines/): a machine's Terraform state lives under `<machine>/`, so a machine with one
// of these names would write state over other stacks' fences, plans or logs. The machine parser
// refuses them.
var ReservedMachineNames = []string{"fences", "plans", "logs", "machines", "handovers"}

// CutUTF8 returns s cut to at most max bytes on a character boundary: half a UTF-8 sequence is
// not storable text.
func CutUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// MaxStackIDLen is the longest stack id: the longest SQS FIFO message group id, which the stack id
// is.
const MaxStackIDLen = 128

// StackIDRule says in words what CheckStackID accepts; errors and the CLI's help quote it.
const StackIDRule = "1 to 128 characters: one or more segments of letters, digits, '.', '_' and '-', " +
	"each starting with a letter or digit, separated by single '/' (e.g. feature/login)"

// CheckStackID checks a stack id against the one rule every part of stackseam relies on. A stack
// id becomes an S3 key segment (fences/<stackId>, logs/<machine>/<stackId>/…, the Terraform state
// <machine>/<stackId>/<source>), a FIFO message group and a Terraform variable, so it may contain
// '/' (CloudSeam's branch-named stacks, feature/login) but nothing that could make a key mean
// another place: no empty segment (a leading or trailing '/', "//"), no "." or ".." segment (each
// segment starts with a letter or digit), no control character, space or backslash.
func CheckStackID(id string) error {
	if id == "" {
		return errors.New("stackId is required")
	}
	if len(id) > MaxStackIDLen {
		return fmt.Errorf("stackId is %d characters; a stack id is %s", len(id), StackIDRule)
	}
	for seg := range strings.SplitSeq(id, "/") {
		if !stackIDSegment(seg) {
			return fmt.Errorf("stackId %q is not a valid stack id: a stack id is %s", id, StackIDRule)
		}
	}
	return nil
}

// stackIDSegment reports whether seg is one segment of a stack id: [A-Za-z0-9][A-Za-z0-9._-]*.
func stackIDSegment(seg string) bool {
	if seg == "" || !isAlnum(seg[0]) {
		return false
	}
	for i := 1; i < len(seg); i++ {
		if c := seg[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidStackID reports whether id is a stack id events may name (CheckStackID).
func ValidStackID(id string) bool { return CheckStackID(id) == nil }

// ErrInvalid is wrapped by every error ParseEvent returns: the message is
// permanently bad and must be rejected, not retried.
var ErrInvalid = errors.New("invalid event")

// Metadata is a flat map of string, number (json.Number) or boolean values.
type Metadata map[string]any

// Validate checks that m is flat: every value is a string, number or boolean.
// field names the JSON field for the error text ("metadata", "outputs").
func (m Metadata) Validate(field string) error { return m.validate(field, false) }

// ValidateChanges checks metadata that is to be merged into a stack's (an event's
// `metadata`): flat like Validate, and a value may also be null, which removes
// that key when merged (see Merge). CloudSeam accepted nulls there.
func (m Metadata) ValidateChanges(field string) error { return m.validate(field, true) }

// Merge merges changes into m: each key of changes replaces m's, and a null (nil)
// value removes the key.
func (m Metadata) Merge(changes Metadata) {
	for k, v := range changes {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
}

func (m Metadata) validate(field string, nullRemoves bool) error {
	if len(m) > maxMetadataKeys {
		return fmt.Errorf("%s has %d keys; at most %d are allowed", field, len(m), maxMetadataKeys)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if n := m.Bytes(); n > MaxMetadataBytes {
		return fmt.Errorf("%s is %d bytes (keys and values); at most %d are allowed", field, n, MaxMetadataBytes)
	}
	for _, k := range keys {
		if k == "" || len(k) > maxMetadataKeyLen {
			return fmt.Errorf("%s key %q must be 1 to %d characters", field, k, maxMetadataKeyLen)
		}
		switch v := m[k].(type) {
		case string:
			if len(v) > maxMetadataValueLen {
				return fmt.Errorf("%s.%s is %d bytes; at most %d are allowed", field, k, len(v), maxMetadataValueLen)
			}
		case json.Number, bool:
		case float64, int, int64:
			// Values built in Go rather than decoded from JSON.
		case nil:
			if nullRemoves {
				continue
			}
			return fmt.Errorf("%s.%s is null; values must be strings, numbers or booleans", field, k)
		default:
			return fmt.Errorf("%s.%s is %s; metadata must be flat (strings, numbers or booleans)", field, k, JSONKind(v))
		}
	}
	return nil
}

// Bytes is the size of m as the limits count it: every key and every value's text.
func (m Metadata) Bytes() int {
	n := 0
	for k, v := range m {
		n += encodedLen(k) + valueBytes(v)
	}
	return n
}

// encodedLen is the length of s as encoding/json writes it inside a message (escapes included,
// quotes not): what a value costs in every task message that carries it, so that escaping can
// not make a message larger than the limits promise.
func encodedLen(s string) int {
	b, err := json.Marshal(s)
	if err != nil {
		return len(s)
	}
	return len(b) - 2
}

// MergedBytes is the size of base after merging add into it (add's keys replace base's, and a
// null value removes the key), as Merge does.
func MergedBytes(base, add Metadata) int {
	n := base.Bytes()
	for k, v := range add {
		if old, ok := base[k]; ok {
			n -= encodedLen(k) + valueBytes(old)
		}
		if v != nil {
			n += encodedLen(k) + valueBytes(v)
		}
	}
	return n
}

func valueBytes(v any) int {
	switch v := v.(type) {
	case string:
		return encodedLen(v)
	case json.Number:
		return len(v)
	case bool:
		if v {
			return 4
		}
		return 5
	case nil:
		return len("null")
	default:
		return len(fmt.Sprint(v))
	}
}

// JSONKind names the kind of a decoded JSON value (UseNumber: numbers are json.Number), as a
// person would: "an object", "a list", "a string", "a number", "a boolean", "null".
func JSONKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// wireEvent accepts both `event` and CloudSeam's legacy `action`.
type wireEvent struct {
	Event
	Action string `json:"action,omitempty"`
}

// eventNested are the keys allowed in an event's nested objects (strictJSON's nested).
var eventNested = map[string]map[string]bool{"task": taskFields}

// ParseEvent decodes and validates one event-queue message body. Every error
// wraps ErrInvalid and says what is wrong in words a publisher can act on.
func ParseEvent(body []byte) (Event, error) {
	if !utf8.Valid(body) || !strictFast(body, eventFields, eventNested) {
		// Not judged by the fast check: strictJSON decides, and says why.
		if err := strictJSON(body, eventFields, eventNested); err != nil {
			return Event{}, invalid("%v", err)
		}
	}
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return Event{}, invalid("malformed JSON: %v", err)
	}
	ev := w.Event
	if ev.Event == "" {
		ev.Event = w.Action
	} else if w.Action != "" && w.Action != ev.Event {
		return Event{}, invalid("both event %q and action %q are set and differ", ev.Event, w.Action)
	}
	if err := CheckStackID(ev.StackID); err != nil {
		return Event{}, invalid("%v", err)
	}
	if ev.Event == "" {
		return Event{}, invalid("event is required")
	}
	if !ValidEventName(ev.Event) {
		return Event{}, invalid("event %q must match %s", ev.Event, eventNamePattern)
	}
	if ev.Machine != "" && !ValidMachineName(ev.Machine) {
		return Event{}, invalid("machine %q is not a valid machine name", ev.Machine)
	}
	if ev.EventID != "" {
		if len(ev.EventID) > MaxEventIDLen {
			return Event{}, invalid("eventId is %d characters; at most %d are allowed", len(ev.EventID), MaxEventIDLen)
		}
		if i := strings.IndexFunc(ev.EventID, func(r rune) bool {
			return !(r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(eventIDChars, r)))
		}); i >= 0 {
			return Event{}, invalid("eventId may hold only letters, digits and ASCII punctuation (what SQS deduplication ids accept)")
		}
	}
	if err := ev.Metadata.ValidateChanges("metadata"); err != nil {
		return Event{}, invalid("%v", err)
	}
	if len(ev.Description) > maxDescriptionLen {
		ev.Description = CutUTF8(ev.Description, maxDescriptionLen) + "…(truncated)"
	}
	if len(ev.By) > 256 || len(ev.Comment) > MaxCommentLen {
		return Event{}, invalid("by is at most 256 bytes and comment at most %d", MaxCommentLen)
	}
	if (ev.By != "" || ev.Comment != "") && (ev.IsResult() || IsSystemEvent(ev.Event)) {
		return Event{}, invalid("by and comment belong on approvals only")
	}
	if ev.IsResult() {
		if ev.TaskRunID == "" && (ev.Task == nil || ev.Task.Name == "") {
			// CloudSeam's results, and an operator's result for a manual step, name the task
			// only: they settle the task's current run when it is pending (engine, settling by
			// name). A result must say which task it is about one way or the other.
			return Event{}, invalid("%s needs taskRunId, or task.name to settle the task's current run", ev.Event)
		}
		if err := ev.Outputs.Validate("outputs"); err != nil {
			return Event{}, invalid("%v", err)
		}
		if ev.Outcome != "" && (ev.Event != EventTaskCompleted || !IsOutcome(ev.Outcome)) {
			return Event{}, invalid("outcome %q: a TASK_COMPLETED may report changes, noChanges, drift or noDrift; a TASK_ERROR none", ev.Outcome)
		}
	} else if ev.TaskRunID != "" || len(ev.Outputs) > 0 || ev.Outcome != "" {
		return Event{}, invalid("taskRunId, outputs and outcome belong on TASK_COMPLETED and TASK_ERROR only")
	}
	return ev, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ParseTask decodes and validates one task-queue message body.
func ParseTask(body []byte) (Task, error) {
	var t Task
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&t); err != nil {
		return Task{}, fmt.Errorf("malformed task message: %w", err)
	}
	var missing []string
	if t.TaskRunID == "" {
		missing = append(missing, "taskRunId")
	}
	if t.Task.Name == "" {
		missing = append(missing, "task.name")
	}
	if t.Task.Executor == "" {
		missing = append(missing, "task.executor")
	}
	if t.Stack.ID == "" {
		missing = append(missing, "stack.id")
	}
	if t.Stack.Machine == "" {
		missing = append(missing, "stack.machine")
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("malformed task message: missing %s", strings.Join(missing, ", "))
	}
	return t, nil
}
