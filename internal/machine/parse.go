package machine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/stackseam/stackseam/internal/message"
	"go.yaml.in/yaml/v3"
)

// ValidationError is what Parse returns for a file that breaks the rules. It
// holds every problem found, not only the first, so one run of `stackseam
// validate` shows everything to fix.
type ValidationError struct {
	// File is the path the problems refer to.
	File string
	// Problems is sorted by line and column.
	Problems []Problem
	// More counts the problems found past the first maxProblems, which are
	// not kept.
	More int
}

// Error prints one problem per line as "file:line:col: message [rule]".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if e.More > 0 {
		lines = append(lines, fmt.Sprintf("%s: and %d more problems", e.File, e.More))
	}
	return strings.Join(lines, "\n")
}

var (
	// namePattern is what event and state names look like (docs/design.md §"Machine files").
	namePattern      = regexp.MustCompile(`^[A-Z0-9-]+$`)
	yamlErrorPattern = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// MaxFileSize bounds a machine file: loaders read no more, and the parser's costs are measured
// up to it. Real machines are a few KiB.
const MaxFileSize = 1 << 20

var topLevelKeys = []string{"version", "events", "states", "tasks", "approvals"}

// NameFromFile returns the machine name of a file name ("feature-env.yml" →
// "feature-env") and whether the name ends in .yml or .yaml at all.
func NameFromFile(file string) (string, bool) {
	base := filepath.Base(file)
	for _, ext := range []string{".yml", ".yaml"} {
		if name, ok := strings.CutSuffix(base, ext); ok && name != "" {
			return name, true
		}
	}
	return "", false
}

// IsMachineFile reports the machine name of a file name the catalogs load (and `stackseam
// validate` checks, so both judge the same files). Dot-files are skipped: editors and sync tools
// leave them next to real ones.
func IsMachineFile(base string) (string, bool) {
	if strings.HasPrefix(base, ".") {
		return "", false
	}
	return NameFromFile(base)
}

// Parse validates a machine file's contents. name is the machine name (the
// file name without extension); file is the path problems are reported
// against; kinds are the executors a task may name, which judge their tasks'
// configs (internal/executor/kinds.All). A file that breaks any rule gives a
// *ValidationError listing every problem; warnings (such as unreachable
// states) land in Machine.Warnings.
func Parse(name, file string, data []byte, kinds Kinds) (*Machine, error) {
	p := &parser{file: file, kinds: kinds}
	m := p.machine(name, data)
	if len(p.problems) > 0 {
		return nil, &ValidationError{File: file, Problems: sortProblems(p.problems), More: p.more}
	}
	m.Warnings = sortProblems(p.warnings)
	sum := sha256.Sum256(data)
	m.Hash = hex.EncodeToString(sum[:])
	m.Body = data
	return m, nil
}

// scope is what the state rules need to know about the rest of the file.
type scope struct {
	events    map[string]*yaml.Node // declared events → where
	states    map[string]*yaml.Node // state names → key
	tasks     map[string]*yaml.Node // task names → key
	tasksUsed map[string]bool
	// eventsOK and tasksOK are false when `events` or `tasks` itself is
	// broken; references to them are then not judged, since that would
	// only repeat the one problem many times.
	eventsOK, tasksOK bool
}

func (p *parser) machine(name string, data []byte) *Machine {
	m := &Machine{
		Name:   name,
		Source: p.file,
		States: map[string]*State{},
		Tasks:  map[string]*Task{},
	}
	if !message.ValidMachineName(name) {
		p.problem(nil, RuleMachineName, "the machine name %q (from the file name) cannot be used in events: it must match %s",
			name, message.MachineNamePattern)
	} else if slices.Contains(message.ReservedMachineNames, name) {
		p.problem(nil, RuleMachineName, "the machine name %q (from the file name) is a prefix of the bucket's own (%s): "+
			"the machine's Terraform state, kept under %s/, would mix with them; rename the file",
			name, strings.Join(message.ReservedMachineNames, ", "), name)
	}
	root := p.document(data)
	if root == nil || !p.chargeAliases(root) {
		return m
	}
	top, ok := p.mapping(root, "a machine file", RuleType)
	if !ok {
		return m
	}
	var version, events, states, tasks, approvals *pair
	for i := range top {
		kv := &top[i]
		switch kv.Key.Value {
		case "version":
			version = kv
		case "events":
			events = kv
		case "states":
			states = kv
		case "tasks":
			tasks = kv
		case "approvals":
			approvals = kv
		default:
			if !strings.HasPrefix(kv.Key.Value, "x-") {
				p.unknownKey(kv.Key, "the machine (extension keys start with x-)", topLevelKeys...)
			}
		}
	}

	if version == nil {
		p.problem(root, RuleVersion, "missing version: write `version: 1`")
	} else {
		m.Version = p.version(version.Value)
	}

	sc := &scope{
		events:    map[string]*yaml.Node{},
		states:    map[string]*yaml.Node{},
		tasks:     map[string]*yaml.Node{},
		tasksUsed: map[string]bool{},
		tasksOK:   true,
	}
	if events == nil {
		p.problem(root, RuleRequired, "missing events: a list of the event names the machine accepts (it may be empty: events: [])")
	} else {
		m.Events = p.events(events.Value, sc)
	}
	if approvals != nil {
		p.approvals(approvals.Value, m, sc)
	}
	if tasks != nil {
		p.tasks(tasks.Value, m, sc)
	}
	if states == nil {
		p.problem(root, RuleRequired, "missing states: a mapping of state names to states")
	} else {
		p.states(states, m, sc)
	}
	p.checkReview(m, sc)
	p.unused(m, sc)
	return m
}

// document parses data and returns its root node, or nil after reporting
// why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	if len(bytes.TrimSpace(data)) == 0 {
		p.problem(nil, RuleEmpty, "the file is empty")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.problem(nil, RuleEmpty, "the file holds no YAML document (only comments)")
		} else {
			p.yamlError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		at := &extra
		if len(extra.Content) > 0 {
			at = extra.Content[0]
		}
		p.problem(at, RuleYAML, "a machine file holds one YAML document; this is a second one")
	case !errors.Is(err, io.EOF):
		p.yamlError(err, data)
	}
	if len(doc.Content) == 0 {
		p.problem(nil, RuleEmpty, "the file holds no YAML document")
		return nil
	}
	root := doc.Content[0]
	if r := resolve(root); r.Kind == yaml.ScalarNode && r.ShortTag() == "!!null" {
		p.problem(root, RuleEmpty, "the document is empty")
		return nil
	}
	return root
}

// yamlParserProblems are the messages of the yaml library's parser (as
// opposed to its scanner). For these the library prints a zero-based line
// number (a long-standing go-yaml bug), so yamlError adds one.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

var unknownAnchorPattern = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// yamlError turns a syntax error of the yaml library into a problem on the
// line it names (line 1 when it names none: the library omits line 1).
func (p *parser) yamlError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, col := 1, 1
	if m := yamlErrorPattern.FindStringSubmatch(err.Error()); m != nil {
		msg = m[2]
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line = n
			if yamlParserProblems[msg] {
				line++
			}
		}
	} else if m := unknownAnchorPattern.FindStringSubmatch(msg); m != nil {
		// The library gives no place for this one; the first use of the
		// alias is where the reader has to look.
		line, col = findAlias(data, m[1])
	}
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Column: col, Rule: RuleYAML, Message: msg})
}

// findAlias returns the line and column of the first "*name" in data, or 1:1.
func findAlias(data []byte, name string) (int, int) {
	re := regexp.MustCompile(`\*` + regexp.QuoteMeta(name) + `($|[\s,\]}])`)
	for i, l := range strings.Split(string(data), "\n") {
		if loc := re.FindStringIndex(l); loc != nil {
			return i + 1, loc[0] + 1
		}
	}
	return 1, 1
}

// version accepts 1 and 1.0 (CloudSeam's docs write the latter) and returns
// it as written.
func (p *parser) version(raw *yaml.Node) string {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.ScalarNode {
		p.problem(raw, RuleVersion, "version must be 1, not %s", kindName(raw))
		return ""
	}
	if n.Value != "1" && n.Value != "1.0" {
		p.problem(raw, RuleVersion, "unsupported version %q: this is version 1 of the machine format (write 1 or 1.0)", n.Value)
		return ""
	}
	return n.Value
}

func (p *parser) events(raw *yaml.Node, sc *scope) []string {
	items, ok := p.sequence(raw, "events", RuleType)
	if !ok {
		return nil
	}
	sc.eventsOK = true
	list := []string{}
	for _, it := range items {
		ev, ok := p.name(it, "an event", RuleEventName)
		if !ok {
			continue
		}
		if ev == EventNext {
			p.warn(it, RuleImplicitNext, "NEXT is an event of every machine; it need not be declared")
			continue
		}
		if first, dup := sc.events[ev]; dup {
			p.problem(it, RuleDuplicateEvent, "event %s is declared twice (first at %s)", ev, pos(first))
			continue
		}
		// Remembered even when badly named so `on` entries using it do not
		// add a second, misleading problem.
		sc.events[ev] = it
		if !namePattern.MatchString(ev) {
			p.problem(it, RuleEventName, "event name %q must match %s (capitals, digits and -)", ev, namePattern)
			continue
		}
		list = append(list, ev)
	}
	return list
}

// unused warns about tasks no state lists and events no state handles.
func (p *parser) unused(m *Machine, sc *scope) {
	for name, key := range sc.tasks {
		if !sc.tasksUsed[name] {
			p.warn(key, RuleUnusedTask, "task %s is defined but no state lists it", name)
		}
	}
	handled := map[string]bool{}
	for _, st := range m.States {
		for ev := range st.On {
			handled[ev] = true
		}
	}
	for ev, at := range sc.events {
		if !handled[ev] {
			p.warn(at, RuleUnusedEvent, "event %s is declared but no state handles it, so sending it is always rejected", ev)
		}
	}
}
