package machine

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var stateKeys = []string{"terminal", "tasks", "on", "ttl"}

// states reads the top-level `states` mapping into m and checks the rules
// that span states: INIT exists, something is terminal, everything is
// reachable.
func (p *parser) states(kv *pair, m *Machine, sc *scope) {
	n := resolve(kv.Value)
	if n == nil || n.Kind != yaml.MappingNode {
		p.problem(kv.Value, RuleType, "states must be a mapping of state names to states, not %s", kindName(kv.Value))
		return
	}
	entries := p.pairs(n, RuleDuplicateState, "state")
	// Every name first, so advances can point forwards.
	for _, e := range entries {
		name := e.Key.Value
		if !namePattern.MatchString(name) {
			p.problem(e.Key, RuleStateName, "state name %q must match %s (capitals, digits and -)", name, namePattern)
		}
		sc.states[name] = e.Key
		m.StateOrder = append(m.StateOrder, name)
	}
	terminal := false
	for _, e := range entries {
		st := p.state(e, sc)
		m.States[st.Name] = st
		terminal = terminal || st.Terminal
	}
	if sc.states[StateInit] == nil {
		p.problem(kv.Key, RuleMissingInit, "there is no INIT state; every stack starts in INIT")
	}
	if !terminal {
		// CloudSeam's validator accepted this, and such a machine runs: its stacks are never
		// removed, which is worth a warning rather than refusing every event of existing stacks.
		p.warn(kv.Key, RuleNoTerminal, "no state is `terminal: true`, so stacks of this machine are never removed: "+
			"they rest in the state their last event leads to (DESTROY included) and stay in `stacks`; "+
			"mark the state DESTROY leads to `terminal: true` to remove them there")
	}
	if sc.states[StateInit] != nil {
		p.reachable(m, sc)
	}
	p.nextCycles(m, sc)
}

// nextCycles reports each cycle a stack would go round for ever on its own:
// NEXT fires when a state's tasks are all completed, so from a state with
// tasks whose NEXT ends in a state with tasks, and so on back to the first,
// a stack runs the same tasks again and again without any event from
// outside. (A state without tasks rests until an event arrives, which
// breaks such a chain; a terminal state removes the stack.) Where NEXT
// advances several times the stack ends in the last target, so that is the
// edge followed. Each state has at most one such edge, so following them
// from every state finds every cycle in linear time.
func (p *parser) nextCycles(m *Machine, sc *scope) {
	next := func(name string) (string, bool) {
		st := m.States[name]
		if st == nil || st.Terminal || len(st.Tasks) == 0 {
			return "", false
		}
		target := ""
		for _, a := range st.On[EventNext] {
			if a.Kind == ActionAdvance {
				target = a.State
			}
		}
		return target, target != ""
	}
	const (
		unseen = iota
		onPath
		done
	)
	mark := map[string]int{}
	for _, start := range m.StateOrder {
		var path []string
		cur := start
		for mark[cur] == unseen {
			mark[cur] = onPath
			path = append(path, cur)
			nxt, ok := next(cur)
			if !ok {
				break
			}
			cur = nxt
		}
		if mark[cur] == onPath && len(path) > 0 {
			if _, ok := next(cur); ok {
				i := slices.Index(path, cur)
				cycle := append(slices.Clone(path[i:]), cur)
				p.problem(sc.states[cur], RuleNextCycle,
					"NEXT leads round %s for ever: each state has tasks and its NEXT advances to the next, so a stack would run their tasks again and again with no event from outside; end the cycle in a state without tasks or a terminal state",
					strings.Join(cycle, " → "))
			}
		}
		for _, name := range path {
			mark[name] = done
		}
	}
}

func (p *parser) state(kv pair, sc *scope) *State {
	st := &State{Name: kv.Key.Value, On: map[string][]Action{}}
	fields, ok := p.mapping(kv.Value, "state "+st.Name, RuleType)
	if !ok {
		return st
	}
	var tasksKey *yaml.Node
	var ttl *pair
	for i, f := range fields {
		switch f.Key.Value {
		case "terminal":
			st.Terminal, _ = p.boolean(f.Value, "terminal")
		case "tasks":
			tasksKey = f.Key
			st.Tasks = p.stateTasks(f.Value, sc)
		case "on":
			p.on(f.Value, st, sc)
		case "ttl":
			ttl = &fields[i]
		default:
			p.unknownKey(f.Key, "state "+st.Name, stateKeys...)
		}
	}
	if ttl != nil {
		st.TTL = p.ttl(ttl, st, sc)
	}
	if !st.Terminal && len(st.Tasks) > 0 && !st.Handles(EventNext) {
		// CloudSeam accepted this too, and it runs: the stack rests there with its tasks done
		// until an event moves it.
		p.warn(tasksKey, RuleNextRequired,
			"state %s has tasks but does not handle NEXT, so a stack stays there once they are done, until an event moves it; add on.NEXT or make the state terminal", st.Name)
	}
	return st
}

func (p *parser) stateTasks(raw *yaml.Node, sc *scope) []string {
	items, ok := p.sequence(raw, "tasks of a state", RuleType)
	if !ok {
		return nil
	}
	var list []string
	seen := map[string]*yaml.Node{}
	for _, it := range items {
		name, ok := p.name(it, "a task", RuleType)
		if !ok {
			continue
		}
		if first := seen[name]; first != nil {
			p.problem(it, RuleDuplicateTask, "task %s is listed twice (first at %s)", name, pos(first))
			continue
		}
		seen[name] = it
		if sc.tasksOK && sc.tasks[name] == nil {
			p.problem(it, RuleUnknownTask, "task %q is not defined under tasks%s", name, p.suggest(name, sc.tasks))
		}
		sc.tasksUsed[name] = true
		list = append(list, name)
	}
	return list
}

// on reads a state's `on` mapping: event → list of actions.
func (p *parser) on(raw *yaml.Node, st *State, sc *scope) {
	entries, ok := p.mapping(raw, "on", RuleType)
	if !ok {
		return
	}
	for _, e := range entries {
		ev := e.Key.Value
		if sc.eventsOK && ev != EventNext && sc.events[ev] == nil {
			p.problem(e.Key, RuleUndeclaredEvent, "event %s is not declared under events%s", ev, p.suggest(ev, sc.events))
		}
		items, _ := p.sequence(e.Value, "on."+ev, RuleType)
		actions := []Action{}
		advances := 0
		for _, it := range items {
			a, ok := p.action(it, sc)
			if !ok {
				continue
			}
			if a.Kind == ActionAdvance {
				advances++
			}
			actions = append(actions, a)
		}
		if advances > 1 {
			p.warn(e.Key, RuleMultipleAdvance, "event %s advances %d times in state %s; the stack ends in the last target", ev, advances, st.Name)
		}
		// Kept even when the list is malformed, so the NEXT rule does not
		// add a second problem about the same lines.
		st.On[ev] = actions
	}
}

func (p *parser) action(raw *yaml.Node, sc *scope) (Action, bool) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.MappingNode {
		p.problem(raw, RuleAction, "an action must be a mapping like {action: advance, state: RUN} or {action: no-op}, not %s", kindName(raw))
		return Action{}, false
	}
	var kind, state *pair
	fields := p.pairs(n, RuleDuplicateKey, "key")
	for i, f := range fields {
		switch f.Key.Value {
		case "action":
			kind = &fields[i]
		case "state":
			state = &fields[i]
		default:
			p.unknownKey(f.Key, "an action", "action", "state")
		}
	}
	if kind == nil {
		p.problem(raw, RuleAction, "an action needs `action: advance` or `action: no-op`")
		return Action{}, false
	}
	k, ok := p.str(kind.Value, "action", RuleAction)
	if !ok {
		return Action{}, false
	}
	switch k {
	case ActionNoop:
		if state != nil {
			p.problem(state.Key, RuleUnknownKey, "a no-op action has no state")
		}
		return Action{Kind: ActionNoop}, true
	case ActionAdvance:
		if state == nil {
			p.problem(kind.Key, RuleAdvanceTarget, "an advance needs the state to go to: add `state: NAME`")
			return Action{}, false
		}
		target, ok := p.name(state.Value, "state", RuleAdvanceTarget)
		if !ok {
			return Action{}, false
		}
		if sc.states[target] == nil {
			p.problem(state.Value, RuleAdvanceTarget, "state %s does not exist%s", target, p.suggest(target, sc.states))
		}
		return Action{Kind: ActionAdvance, State: target}, true
	default:
		p.problem(kind.Value, RuleAction, "unknown action %q: use advance or no-op", k)
		return Action{}, false
	}
}

// ttl reads a state's `ttl: {after, event}` (a stackseam addition). It runs
// after `on` so it can check that the state handles the event it sends.
func (p *parser) ttl(kv *pair, st *State, sc *scope) *TTL {
	fields, ok := p.mapping(kv.Value, "ttl", RuleTTL)
	if !ok {
		return nil
	}
	t := &TTL{}
	var after, event bool
	for _, f := range fields {
		switch f.Key.Value {
		case "after":
			after = true
			t.AfterSeconds = p.duration(f.Value)
		case "event":
			event = true
			ev, ok := p.name(f.Value, "ttl.event", RuleTTL)
			if !ok {
				continue
			}
			t.Event = ev
			switch {
			case ev == EventNext:
				p.problem(f.Value, RuleTTL, "a ttl cannot send NEXT; NEXT is fired when a state's tasks are done")
			case !sc.eventsOK:
			case sc.events[ev] == nil:
				p.problem(f.Value, RuleUndeclaredEvent, "event %s is not declared under events%s", ev, p.suggest(ev, sc.events))
			case !st.Handles(ev):
				p.problem(f.Value, RuleTTL, "state %s does not handle %s, so the ttl would only send an event that is rejected", st.Name, ev)
			default:
				p.ttlNotReserved(f.Value, ev)
			}
		default:
			p.unknownKey(f.Key, "ttl", "after", "event")
		}
	}
	if !after {
		p.problem(kv.Key, RuleTTL, "ttl needs after: how long a stack may stay idle, like 72h")
	}
	if !event {
		p.problem(kv.Key, RuleTTL, "ttl needs event: the event to send when the time is up")
	}
	return t
}

// duration reads a Go duration of whole seconds, at least one second.
func (p *parser) duration(raw *yaml.Node) int {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.ScalarNode {
		p.problem(raw, RuleTTL, "ttl.after must be a duration like 72h or 30m, not %s", kindName(raw))
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		p.problem(raw, RuleTTL, "ttl.after %q is not a duration like 72h, 90m or 30s", n.Value)
	case d < time.Second:
		p.problem(raw, RuleTTL, "ttl.after must be at least 1s")
	case d%time.Second != 0:
		p.problem(raw, RuleTTL, "ttl.after must be whole seconds")
	default:
		return int(d / time.Second)
	}
	return 0
}

// reachable warns about states no chain of advances from INIT leads to.
func (p *parser) reachable(m *Machine, sc *scope) {
	seen := map[string]bool{StateInit: true}
	queue := []string{StateInit}
	for len(queue) > 0 {
		st := m.States[queue[0]]
		queue = queue[1:]
		if st == nil {
			continue
		}
		for _, actions := range st.On {
			for _, a := range actions {
				if a.Kind == ActionAdvance && !seen[a.State] {
					seen[a.State] = true
					queue = append(queue, a.State)
				}
			}
		}
	}
	for _, name := range m.StateOrder {
		if !seen[name] {
			p.warn(sc.states[name], RuleUnreachable, "state %s cannot be reached from INIT", name)
		}
	}
}

// maxSuggestions bounds how many problems get a "did you mean": each search
// compares the name with every candidate.
const maxSuggestions = 100

// suggest returns ` (did you mean "X"?)` when a name of candidates is a
// likely typo of s.
func (p *parser) suggest(s string, candidates map[string]*yaml.Node) string {
	if p.suggestions >= maxSuggestions {
		return ""
	}
	p.suggestions++
	if c := closest(s, keys(candidates)); c != "" {
		return fmt.Sprintf(" (did you mean %s?)", c)
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out) // so suggestions do not depend on map order
	return out
}
