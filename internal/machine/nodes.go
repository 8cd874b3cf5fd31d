package machine

import (
	"fmt"
	"hash/maphash"
	"math"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds how many nodes the aliases of one file may expand to, in
// all: every alias (including the `<<: *name` of a merge) is charged the
// number of nodes the value it names holds once expanded, aliases inside it
// included. A node with text weighs one more for every textBytes bytes of
// it, since reading a long name through many aliases costs its length each
// time. A few hundred lines never come near it; a "billion laughs" file,
// or one that lists a large anchored mapping under every state, is refused
// before anything is expanded.
const maxNodes = 100_000

// textBytes is how many bytes of a node's text weigh as much as a node.
const textBytes = 64

// maxProblems bounds how many problems (and, separately, warnings) one parse
// keeps; past it they are only counted, so a hostile file cannot make the
// report itself huge.
const maxProblems = 1000

// maxMessage bounds one problem's message; a message quoting a long name is
// cut.
const maxMessage = 512

// parser collects the problems of one file while walking its yaml.Node tree.
type parser struct {
	file     string
	kinds    Kinds
	problems []Problem
	warnings []Problem
	// seen drops exact repeats, which appear when one anchored mapping is
	// used in several places.
	seen map[Problem]bool
	// more counts the distinct problems past maxProblems; overflow holds
	// their hashes only, so counting them costs little.
	more     int
	overflow map[uint64]bool
	// suggestions counts the "did you mean" searches done; they compare
	// names pairwise, so only the first few problems get one.
	suggestions int
	// review collects the references of the plan additions (review.go).
	review reviewRefs
}

func (p *parser) problem(n *yaml.Node, rule, format string, args ...any) {
	p.problems = p.keep(p.problems, p.at(n, rule, format, args...), true)
}

func (p *parser) warn(n *yaml.Node, rule, format string, args ...any) {
	p.warnings = p.keep(p.warnings, p.at(n, rule, format, args...), false)
}

// problemSeed seeds the hashes of problems past maxProblems.
var problemSeed = maphash.MakeSeed()

// keep adds pr to list unless it is a repeat or the list is full; count says
// whether problems past the limit are counted in more (warnings are not).
func (p *parser) keep(list []Problem, pr Problem, count bool) []Problem {
	if p.seen == nil {
		p.seen = map[Problem]bool{}
	}
	if p.seen[pr] {
		return list
	}
	if len(list) >= maxProblems {
		if !count {
			return list
		}
		h := maphash.Comparable(problemSeed, pr)
		if !p.overflow[h] {
			if p.overflow == nil {
				p.overflow = map[uint64]bool{}
			}
			p.overflow[h] = true
			p.more++
		}
		return list
	}
	p.seen[pr] = true
	return append(list, pr)
}

func (p *parser) at(n *yaml.Node, rule, format string, args ...any) Problem {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "…"
	}
	return Problem{File: p.file, Line: line, Column: col, Rule: rule, Message: msg}
}

// pos formats where a node is, as line:column.
func pos(n *yaml.Node) string {
	return fmt.Sprintf("%d:%d", n.Line, n.Column)
}

// chargeAliases walks the document as written, before anything reads it
// through aliases, and charges every alias the size of the value it names
// once fully expanded (aliases within counted again, recursively). It
// reports false, with a problem at the alias that crossed the line, when the
// total passes maxNodes or an alias names a value that contains it. The walk
// visits each written node once and the sizes are memoised, so this costs
// what the file weighs, whatever the aliases would expand to.
func (p *parser) chargeAliases(root *yaml.Node) bool {
	const open = -1 // size of a node whose walk has not finished
	sizes := map[*yaml.Node]int{}
	budget := maxNodes
	ok := true
	var walk func(n *yaml.Node) int
	walk = func(n *yaml.Node) int {
		if n.Kind == yaml.AliasNode {
			size, done := sizes[n.Alias]
			switch {
			case n.Alias == nil || !done:
				// Anchors precede their aliases, so an unwalked target
				// cannot occur; stay safe rather than recurse.
				p.problem(n, RuleAliases, "alias *%s names nothing usable", n.Value)
				ok = false
				return 1
			case size == open:
				p.problem(n, RuleAliases, "alias *%s refers to a value that contains it", n.Value)
				ok = false
				return 1
			}
			budget -= size
			if budget < 0 && ok {
				p.problem(n, RuleAliases, "alias *%s expands to %d nodes; with the aliases and merge keys before it the file expands to more than %d nodes",
					n.Value, size, maxNodes)
				ok = false
			}
			return size
		}
		sizes[n] = open
		size := 1 + len(n.Value)/textBytes
		for _, c := range n.Content {
			if !ok {
				break
			}
			size = min(size+walk(c), maxNodes+1)
		}
		sizes[n] = size
		return size
	}
	walk(root)
	return ok
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// kindName names a node's type the way a reader of the file thinks of it.
func kindName(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a decimal number"
		}
		return "a string"
	}
	return "nothing"
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

// pair is one key of a mapping after merge keys are applied. Value is as
// written (possibly an alias) so problems about its type point where the
// reader wrote it.
type pair struct {
	Key   *yaml.Node
	Value *yaml.Node
	// Merged is set when the pair came in through a `<<` merge key.
	Merged bool
}

// pairs returns the entries of mapping n with `<<` merge keys applied, in file
// order (merged entries take the place of their `<<` key). Keys written in n
// override merged ones; among merged mappings the earlier one wins, as the
// YAML merge-key spec says. A repeated written key is reported with dupRule
// and its later occurrences dropped. n must be a resolved mapping node.
func (p *parser) pairs(n *yaml.Node, dupRule, dupWhat string) []pair {
	return p.pairsVisiting(n, dupRule, dupWhat, map[*yaml.Node]bool{})
}

func (p *parser) pairsVisiting(n *yaml.Node, dupRule, dupWhat string, visiting map[*yaml.Node]bool) []pair {
	visiting[n] = true
	defer delete(visiting, n)

	keys := make([]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, keyNode(n.Content[i]))
	}
	written := map[string]*yaml.Node{}
	for _, k := range keys {
		if isMergeKey(k) || k.Kind != yaml.ScalarNode {
			continue
		}
		if first, ok := written[k.Value]; ok {
			p.problem(k, dupRule, "%s %s is defined twice (first at %s)", dupWhat, k.Value, pos(first))
			continue
		}
		written[k.Value] = k
	}

	var out []pair
	seen := map[string]bool{}
	for i, k := range keys {
		v := n.Content[2*i+1]
		switch {
		case isMergeKey(k):
			for _, mp := range p.merged(v, visiting) {
				if written[mp.Key.Value] != nil || seen[mp.Key.Value] {
					continue
				}
				seen[mp.Key.Value] = true
				mp.Merged = true
				out = append(out, mp)
			}
		case k.Kind != yaml.ScalarNode:
			p.problem(k, RuleType, "keys must be strings, not %s", kindName(k))
		default:
			if written[k.Value] != k || seen[k.Value] {
				continue // a duplicate, reported above
			}
			seen[k.Value] = true
			out = append(out, pair{Key: k, Value: v})
		}
	}
	return out
}

// keyNode returns a mapping key, with an alias (`*name: value`) replaced by a
// copy of the scalar it names, placed where the alias is written.
func keyNode(k *yaml.Node) *yaml.Node {
	if k.Kind != yaml.AliasNode {
		return k
	}
	r := resolve(k)
	if r == nil || r.Kind != yaml.ScalarNode {
		return k
	}
	c := *r
	c.Anchor = ""
	c.Line, c.Column = k.Line, k.Column
	return &c
}

// merged returns the pairs a `<<` value brings in: an alias to a mapping, a
// mapping, or a list of those (earlier entries win).
func (p *parser) merged(v *yaml.Node, visiting map[*yaml.Node]bool) []pair {
	var sources []*yaml.Node
	if r := resolve(v); r != nil && r.Kind == yaml.SequenceNode {
		sources = r.Content
	} else {
		sources = []*yaml.Node{v}
	}
	var out []pair
	seen := map[string]bool{}
	for _, s := range sources {
		m := resolve(s)
		if m == nil || m.Kind != yaml.MappingNode {
			p.problem(s, RuleType, "a merge key (<<) needs a mapping or a list of mappings, not %s", kindName(s))
			continue
		}
		if visiting[m] {
			p.problem(s, RuleYAML, "merge key (<<) includes the mapping it is part of")
			continue
		}
		// Duplicates inside the merged mapping are reported where it is
		// defined; only the kept pairs come through.
		for _, mp := range p.pairsVisiting(m, RuleDuplicateKey, "key", visiting) {
			if seen[mp.Key.Value] {
				continue
			}
			seen[mp.Key.Value] = true
			out = append(out, mp)
		}
	}
	return out
}

// mapping resolves raw and returns its pairs, or reports a type problem
// with rule and returns ok=false when raw is not a mapping.
func (p *parser) mapping(raw *yaml.Node, what, rule string) ([]pair, bool) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.MappingNode {
		p.problem(raw, rule, "%s must be a mapping, not %s", what, kindName(raw))
		return nil, false
	}
	return p.pairs(n, RuleDuplicateKey, "key"), true
}

// sequence resolves raw and returns its items, or reports a type problem
// with rule when raw is not a list.
func (p *parser) sequence(raw *yaml.Node, what, rule string) ([]*yaml.Node, bool) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.SequenceNode {
		p.problem(raw, rule, "%s must be a list, not %s", what, kindName(raw))
		return nil, false
	}
	return n.Content, true
}

// str returns the value of a string scalar, or reports a problem with rule.
// Numbers and booleans are refused so `bucket: 2024` does not turn into a
// number the executor has to guess about; quoting it makes it a string.
func (p *parser) str(raw *yaml.Node, what, rule string) (string, bool) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.problem(raw, rule, "%s must be a string, not %s", what, kindName(raw))
		return "", false
	}
	return n.Value, true
}

// name returns the text of a scalar used as a name (event, state, task),
// whatever YAML type it resolved to, so `- 404` is judged by the name rules
// rather than refused as a number.
func (p *parser) name(raw *yaml.Node, what, rule string) (string, bool) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.problem(raw, rule, "%s must be a name, not %s", what, kindName(raw))
		return "", false
	}
	return n.Value, true
}

// integer returns the value of an integer scalar, or reports a problem with
// rule.
func (p *parser) integer(raw *yaml.Node, what, rule string) (int, bool) {
	n := resolve(raw)
	var v int
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		p.problem(raw, rule, "%s must be an integer, not %s", what, kindName(raw))
		return 0, false
	}
	return v, true
}

// boolean returns the value of a true/false scalar, or reports a problem.
func (p *parser) boolean(raw *yaml.Node, what string) (bool, bool) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.problem(raw, RuleType, "%s must be true or false, not %s", what, kindName(raw))
		return false, false
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		p.problem(raw, RuleType, "%s must be true or false", what)
		return false, false
	}
	return v, true
}

// unknownKey reports key k as unknown, suggesting the closest allowed key
// when the difference looks like a typo.
func (p *parser) unknownKey(k *yaml.Node, where string, allowed ...string) {
	msg := fmt.Sprintf("unknown key %q in %s", k.Value, where)
	if s := closest(k.Value, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if len(allowed) > 0 {
		msg += " (allowed: " + strings.Join(allowed, ", ") + ")"
	}
	p.problems = append(p.problems, p.at(k, RuleUnknownKey, "%s", msg))
}

// closest returns the candidate within a small edit distance of s.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	if len(s) > maxSuggestLen {
		return ""
	}
	for _, c := range candidates {
		if len(c) > maxSuggestLen || len(c)-len(s) >= bestD || len(s)-len(c) >= bestD {
			continue // too long to compare, or too far apart to be a typo
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// maxSuggestLen bounds the names closest compares; the edit distance costs
// the product of the lengths, and a typo of a long name is rare.
const maxSuggestLen = 64

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// toJSON converts a node to the values encoding/json produces and accepts:
// map[string]any, []any, string, int, float64, bool and nil. Merge keys and
// aliases are applied. Values JSON cannot carry (.inf, .nan) are reported
// with rule.
func (p *parser) toJSON(raw *yaml.Node, rule string) any {
	return p.toJSONVisiting(raw, rule, map[*yaml.Node]bool{})
}

func (p *parser) toJSONVisiting(raw *yaml.Node, rule string, visiting map[*yaml.Node]bool) any {
	n := resolve(raw)
	if n == nil {
		return nil
	}
	if visiting[n] {
		p.problem(raw, RuleYAML, "alias refers to a value that contains it")
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		visiting[n] = true
		defer delete(visiting, n)
		out := map[string]any{}
		for _, kv := range p.pairs(n, RuleDuplicateKey, "key") {
			out[kv.Key.Value] = p.toJSONVisiting(kv.Value, rule, visiting)
		}
		return out
	case yaml.SequenceNode:
		visiting[n] = true
		defer delete(visiting, n)
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			out = append(out, p.toJSONVisiting(c, rule, visiting))
		}
		return out
	case yaml.ScalarNode:
		return p.scalarJSON(n, rule)
	}
	return nil
}

func (p *parser) scalarJSON(n *yaml.Node, rule string) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		if b, ok := decoded[bool](n); ok {
			return b
		}
	case "!!int":
		if i, ok := decoded[int](n); ok {
			return i
		}
		// Too big for int: keep the digits rather than lose precision.
		if f, ok := decoded[float64](n); ok {
			return f
		}
	case "!!float":
		if f, ok := decoded[float64](n); ok {
			if math.IsInf(f, 0) || math.IsNaN(f) {
				p.problem(n, rule, "%s cannot be represented in JSON", n.Value)
				return nil
			}
			return f
		}
	}
	// Strings, and dates kept as written since JSON has no date type.
	return n.Value
}

// decoded is n's value as a T, and whether it decodes as one.
func decoded[T any](n *yaml.Node) (T, bool) {
	var v T
	err := n.Decode(&v)
	return v, err == nil
}

// sortProblems orders problems by place and drops exact repeats, which
// appear when one anchored mapping is merged into several places.
func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Rule < b.Rule
	})
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, pr := range ps {
		if seen[pr] {
			continue
		}
		seen[pr] = true
		out = append(out, pr)
	}
	return out
}
