package machine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Kind is one executor as the machine format knows it. Each executor package exports its Kind, and
// internal/executor/kinds lists them; Parse takes that list, so this package names no executor and
// imports none.
type Kind interface {
	// Name is what a task's `executor` says: "terraform".
	Name() string
	// Rule is the rule id of every problem in the config of a task of this kind, and of a missing
	// config: "terraform-config".
	Rule() string
	// CheckConfig judges a task's `config: …` entry (the key, and the value as written), reporting
	// each problem where it is.
	CheckConfig(config Field)
	// Schema is the JSON Schema of the config, as an object of named definitions; the one named
	// Name()+"Config" is the config itself. machines/machine.schema.json holds them under
	// `definitions` (a test in internal/machine checks that it does).
	Schema() []byte
}

// StateKeyer is a Kind whose tasks keep state in the bucket under `<machine>/<stackId>/<path>`
// (a terraform task's state). Stack ids may hold '/', so two paths of one machine where one ends
// with the other (`envs/app` and `app`) would give two stacks (`prod` and `prod/envs`) one key:
// Machine.StackIDRefusal refuses the ids that could.
type StateKeyer interface {
	// StatePaths lists the paths that follow `<machine>/<stackId>/` in the keys of the state a
	// task with this config reads or writes (the one it uses, and an older one it adopts).
	StatePaths(config map[string]any) []string
}

// Kinds is the executors a parse knows, in the order messages name them.
type Kinds []Kind

// Lookup returns the kind called name, or nil.
func (ks Kinds) Lookup(name string) Kind {
	for _, k := range ks {
		if k.Name() == name {
			return k
		}
	}
	return nil
}

// Names lists the kinds' names.
func (ks Kinds) Names() []string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name()
	}
	return names
}

// or lists the names for a message: "terraform or lambda".
func (ks Kinds) or() string {
	names := ks.Names()
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Node is one value of a task's config as a Kind's CheckConfig sees it: where it is written, and
// ways to read it that report a problem there, under the kind's rule, when it is not what it must be.
type Node struct {
	p    *parser
	n    *yaml.Node
	rule string
}

// Field is one key of a mapping in a task's config, merge keys applied.
type Field struct {
	// Name is the key's text.
	Name string
	// Key is the key as written (problems about the key, or about what the value lacks, go here).
	Key Node
	// Value is the value as written.
	Value Node
}

// Problem reports a problem at n under the kind's rule.
func (n Node) Problem(format string, args ...any) {
	n.p.problem(n.n, n.rule, format, args...)
}

// Mapping returns the fields of a mapping, or reports that n is not one ("WHAT must be a mapping,
// not …").
func (n Node) Mapping(what string) ([]Field, bool) {
	pairs, ok := n.p.mapping(n.n, what, n.rule)
	if !ok {
		return nil, false
	}
	fields := make([]Field, len(pairs))
	for i, kv := range pairs {
		fields[i] = Field{Name: kv.Key.Value, Key: n.at(kv.Key), Value: n.at(kv.Value)}
	}
	return fields, true
}

// Text returns the text of a string, or reports that n is not one ("WHAT must be a string, not
// …"). Numbers and booleans are not strings: `bucket: 2024` must be quoted.
func (n Node) Text(what string) (string, bool) {
	return n.p.str(n.n, what, n.rule)
}

// IsMapping reports whether n is a mapping (aliases followed).
func (n Node) IsMapping() bool {
	r := resolve(n.n)
	return r != nil && r.Kind == yaml.MappingNode
}

// IsFlat reports whether n is a string, a number or a boolean: a value JSON carries as it is.
func (n Node) IsFlat() bool {
	r := resolve(n.n)
	if r == nil || r.Kind != yaml.ScalarNode {
		return false
	}
	switch r.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool":
		return true
	}
	return false
}

// Describe names what n is as a reader of the file would: "a mapping", "a list", "a string"…
func (n Node) Describe() string { return kindName(n.n) }

// UnknownKey reports the field's key as one the config does not define, suggesting the closest
// allowed key when it looks like a typo. It carries the rule unknown-key, like every unknown key.
func (f Field) UnknownKey(where string, allowed ...string) {
	f.Key.p.unknownKey(f.Key.n, where, allowed...)
}

func (n Node) at(y *yaml.Node) Node { return Node{p: n.p, n: y, rule: n.rule} }

// CheckConfig judges a config that did not come from a machine file — a task message, which may
// come from anywhere — by the rules the parser applies to k's tasks, so the satisfier and the
// state manager refuse the same configs. The error lists every problem, without places.
func CheckConfig(k Kind, config map[string]any) error {
	var value yaml.Node
	if err := value.Encode(config); err != nil {
		return fmt.Errorf("the %s task's config cannot be read: %w", k.Name(), err)
	}
	p := &parser{}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "config"}
	k.CheckConfig(Field{Name: "config", Key: Node{p: p, n: key, rule: k.Rule()}, Value: Node{p: p, n: &value, rule: k.Rule()}})
	if len(p.problems) == 0 {
		return nil
	}
	msgs := make([]string, len(p.problems))
	for i, pr := range p.problems {
		msgs[i] = pr.Message
	}
	return errors.New("the " + k.Name() + " task's config is invalid: " + strings.Join(slices.Compact(msgs), "; "))
}
