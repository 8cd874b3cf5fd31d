package machine

// Plan, approve, apply (README.md, "Plan, approve, apply"): what the format gained for it beyond
// an executor's own config — a task's `events` (what it found → the event to raise), the
// machine's `approvals` (events only an approver may send), and the cross-reference of a config
// that names another task (a terraform apply's `plan: <task>`; the executor's Kind says which
// key, and what the named task must be, through Linker). All of it is optional: a file without
// these keys means what it always meant.

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Outcomes a task may report, and so name under its `events` (message.Outcome…).
const (
	OutcomeChanges   = "changes"
	OutcomeNoChanges = "noChanges"
	OutcomeDrift     = "drift"
	OutcomeNoDrift   = "noDrift"
)

// Outcomer is a Kind whose tasks report outcomes (OutcomeChanges…) with their results: a task's
// `events` may map those to events.
type Outcomer interface {
	// Outcomes lists the outcomes a task with this config reports; none for most.
	Outcomes(config map[string]any) []string
}

// Linker is a Kind whose task configs may name another task of the machine (a terraform apply
// names the plan task whose saved plan it applies).
type Linker interface {
	// Link returns the config key that names another task, and the task it names; "" when the
	// config names none.
	Link(config map[string]any) (key, task string)
	// CheckLink says what is wrong with target as the task self's config names it, "" when
	// nothing is.
	CheckLink(self, target *Task) string
}

// outcomesOf lists the outcomes a task of this kind and config can report.
func outcomesOf(kind Kind, config map[string]any) []string {
	if o, ok := kind.(Outcomer); ok {
		return o.Outcomes(config)
	}
	return nil
}

// reviewRefs are the references the plan additions make to other parts of the file, checked once
// everything is read (checkReview).
type reviewRefs struct {
	// raised are a task's `events` entries: task → outcome → the event's node.
	raised []raisedEvent
	// plans are `plan: <task>` references of apply tasks.
	plans []planRef
	// approvals are the machine's approval events.
	approvals []string
}

type raisedEvent struct {
	task, outcome, event string
	node                 *yaml.Node
}

type planRef struct {
	task, target, rule string
	node               *yaml.Node
	linker             Linker
}

// taskEvents reads a task's `events: {changes: EVENT, noChanges: EVENT, drift: EVENT, noDrift:
// EVENT}`: the event the task raises when it reports that outcome.
func (p *parser) taskEvents(kv *pair, t *Task, sc *scope) {
	fields, ok := p.mapping(kv.Value, "events of task "+t.Name, RuleTaskEvents)
	if !ok {
		return
	}
	var can []string
	if kind := p.kinds.Lookup(t.Executor); kind != nil {
		can = outcomesOf(kind, t.Config)
	}
	t.Events = map[string]string{}
	for _, f := range fields {
		outcome := f.Key.Value
		if !slices.Contains(can, outcome) {
			if len(can) == 0 {
				p.problem(f.Key, RuleTaskEvents, "task %s reports no outcome to raise an event on; a terraform task with action plan reports changes or noChanges, with action drift drift or noDrift", t.Name)
			} else {
				p.problem(f.Key, RuleTaskEvents, "task %s reports %s, not %q", t.Name, strings.Join(can, " or "), outcome)
			}
			continue
		}
		ev, ok := p.name(f.Value, "events."+outcome, RuleTaskEvents)
		if !ok {
			continue
		}
		switch {
		case ev == EventNext:
			p.problem(f.Value, RuleTaskEvents, "a task cannot raise NEXT; NEXT is fired when a state's tasks are done")
			continue
		case !sc.eventsOK:
		case sc.events[ev] == nil:
			p.problem(f.Value, RuleUndeclaredEvent, "event %s is not declared under events%s", ev, p.suggest(ev, sc.events))
			continue
		}
		t.Events[outcome] = ev
		p.review.raised = append(p.review.raised, raisedEvent{task: t.Name, outcome: outcome, event: ev, node: f.Value})
	}
}

// planReference records the task a config names (Linker), with where the name is written, to be
// checked once every task is read.
func (p *parser) planReference(config *pair, t *Task, rule string) {
	linker, ok := p.kinds.Lookup(t.Executor).(Linker)
	if !ok || t.Config == nil {
		return
	}
	key, target := linker.Link(t.Config)
	if key == "" {
		return
	}
	node := config.Value
	if n := resolve(config.Value); n != nil && n.Kind == yaml.MappingNode {
		for _, f := range p.pairs(n, RuleDuplicateKey, "key") {
			if f.Key.Value == key {
				node = f.Value
			}
		}
	}
	p.review.plans = append(p.review.plans, planRef{task: t.Name, target: target, rule: rule, node: node, linker: linker})
}

// checkReview checks what the plan additions refer to, once the whole file is read: a raised
// event must be handled by every state that runs the task (otherwise it would only be rejected),
// and `plan:` must name a terraform task with action plan and the same source.
func (p *parser) checkReview(m *Machine, sc *scope) {
	for _, r := range p.review.raised {
		if m.NeedsApproval(r.event) {
			p.problem(r.node, RuleTaskEvents, "a task cannot raise %s: it is an approval event, which only an approver may send", r.event)
			continue
		}
		for _, name := range m.StateOrder {
			st := m.States[name]
			if st == nil || !slices.Contains(st.Tasks, r.task) || st.Handles(r.event) {
				continue
			}
			p.problem(r.node, RuleTaskEvents, "state %s runs task %s but does not handle %s, which the task raises on %s", name, r.task, r.event, r.outcome)
		}
	}
	if !sc.tasksOK {
		return
	}
	for _, r := range p.review.plans {
		target := m.Tasks[r.target]
		if target == nil {
			p.problem(r.node, r.rule, "task %s names task %q, which is not defined under tasks%s", r.task, r.target, p.suggest(r.target, sc.tasks))
			continue
		}
		if self := m.Tasks[r.task]; self != nil {
			if msg := r.linker.CheckLink(self, target); msg != "" {
				p.problem(r.node, r.rule, "%s", msg)
			}
		}
	}
}

// approvals reads the machine's `approvals: [EVENT, ...]`: the events only a principal with
// approval rights may send (through the approvals queue; a publisher's copy is rejected).
func (p *parser) approvals(raw *yaml.Node, m *Machine, sc *scope) {
	n := resolve(raw)
	if n == nil || n.Kind != yaml.SequenceNode {
		p.problem(raw, RuleApprovals, "approvals must be a list of event names, not %s", kindName(raw))
		return
	}
	for _, it := range n.Content {
		ev, ok := p.name(it, "an approval event", RuleApprovals)
		if !ok {
			continue
		}
		switch {
		case ev == EventNext:
			p.problem(it, RuleApprovals, "NEXT cannot be an approval event; it is fired by stackseam")
		case slices.Contains(m.Approvals, ev):
			p.problem(it, RuleApprovals, "event %s is listed twice", ev)
		case sc.eventsOK && sc.events[ev] == nil:
			p.problem(it, RuleUndeclaredEvent, "event %s is not declared under events%s", ev, p.suggest(ev, sc.events))
		default:
			m.Approvals = append(m.Approvals, ev)
			p.review.approvals = append(p.review.approvals, ev)
		}
	}
}

// RaisedBy names the task that raises event by its outcome, "" when no task does. Such an event
// comes only from its task: a publisher's copy is rejected, so nobody can claim that a plan
// found changes (or none) or that a drift check found drift.
func (m *Machine) RaisedBy(event string) string {
	for _, name := range slices.Sorted(maps.Keys(m.Tasks)) {
		for _, ev := range m.Tasks[name].Events {
			if ev == event {
				return name
			}
		}
	}
	return ""
}

// SummaryOwner returns the task whose reported summary the metadata key belongs to — a task that
// reports outcomes owns every key "<task>." starts — or "" when no task owns it. Only that task's
// results may write such a key: an approver reads the plan's summary from the stack's metadata,
// so a publisher who could set "plan.destroy" could show a plan other than the one applied.
func (m *Machine) SummaryOwner(key string) string {
	owner := ""
	for name, t := range m.Tasks {
		// The longest name wins: with tasks plan and plan.b, plan.b.add is plan.b's.
		if len(t.Outcomes) > 0 && strings.HasPrefix(key, name+".") && len(name) > len(owner) {
			owner = name
		}
	}
	return owner
}

// StackIDRefusal says why a new stack of this machine may not be called id, "" when it may: its
// state would share a key with another stack's. With a task's state at `<stackId>/envs/app` and
// another's at `<stackId>/app`, stacks `prod` and `prod/envs` would meet at `prod/envs/app`; so an
// id ending in `/envs` is refused, whichever of the two stacks came first.
func (m *Machine) StackIDRefusal(id string) string {
	type owned struct{ task, path string }
	var paths []owned
	for _, name := range slices.Sorted(maps.Keys(m.Tasks)) {
		for _, p := range m.Tasks[name].StatePaths {
			paths = append(paths, owned{name, p})
		}
	}
	for _, long := range paths {
		for _, short := range paths {
			prefix, ok := strings.CutSuffix(long.path, "/"+short.path)
			if !ok || prefix == "" || !strings.HasSuffix(id, "/"+prefix) {
				continue
			}
			other := strings.TrimSuffix(id, "/"+prefix)
			return fmt.Sprintf("stack id %s would share the Terraform state of its task %s with stack %s's task %s (%s/%s); "+
				"choose a stack id that does not end with /%s", id, short.task, other, long.task, other, long.path, prefix)
		}
	}
	return ""
}

// ttlNotReserved refuses a ttl event that only an approver or a task may send: the sweep's
// event would always be rejected. approvals and tasks are read before states.
func (p *parser) ttlNotReserved(node *yaml.Node, ev string) {
	if slices.Contains(p.review.approvals, ev) {
		p.problem(node, RuleTTL, "a ttl cannot send %s: it is an approval event, which only an approver may send", ev)
	}
	for _, r := range p.review.raised {
		if r.event == ev {
			p.problem(node, RuleTTL, "a ttl cannot send %s: task %s raises it, and only the task may", ev, r.task)
			return
		}
	}
}

// NeedsApproval reports whether event may only come from a principal with approval rights.
func (m *Machine) NeedsApproval(event string) bool {
	return slices.Contains(m.Approvals, event)
}
