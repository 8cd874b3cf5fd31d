package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-graphviz"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/machine"
)

var graphCommand = &command{
	name:    "graph",
	args:    "MACHINE",
	summary: "draw a machine: states, the events that move between them, tasks and terminal states",
	help: `
MACHINE is a machine file (feature-env.yml) or a machine name, looked up as
NAME.yml or NAME.yaml in --dir. Each state is a box listing its tasks, no-op
events and time-to-live; each edge is labelled with the events that take it;
dashed edges are NEXT, which fires once a state's tasks are all done; INIT has
a thick border and terminal states are drawn as rounded pills.

Formats:
  mermaid  (default) a Mermaid flowchart: paste it into a Markdown file in a
           "mermaid" code block (GitHub, GitLab and most wikis draw it), or
           render it with the Mermaid CLI: mmdc -i graph.mmd -o graph.svg
  dot      Graphviz DOT: dot -Tsvg -o graph.svg graph.dot
  svg      an SVG image, drawn from the DOT output by Graphviz built into
           stackseam (no installation needed)

examples:
  stackseam graph feature-env
  stackseam graph --format svg machines/qa-env.yml > qa-env.svg`,
	run: runGraph,
}

func runGraph(_ context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	format := fs.String("format", "mermaid", "output `FORMAT`: mermaid, dot or svg")
	dir := fs.String("dir", "", "the `FOLDER` holding machines named without a path (default $MACHINES_DIR, else machines)")
	pos, code, done := parseFlags(fs, args, c.stdout, c.stderr)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(c, fs, "name one machine (a file, or a name found in --dir)")
	}
	if *format != "mermaid" && *format != "dot" && *format != "svg" {
		return usageError(c, fs, "unknown format %q: use mermaid, dot or svg", *format)
	}
	path, err := machinePath(pos[0], first(*dir, c.getenv("MACHINES_DIR"), "machines"))
	if err != nil {
		return fail(c, cmd, err)
	}
	m, err := catalog.ParseFile(path)
	if err != nil {
		var verr *machine.ValidationError
		if errors.As(err, &verr) {
			fmt.Fprintf(c.stderr, "stackseam graph: %s is not a valid machine:\n%v\n", path, verr)
			return exitFail
		}
		return fail(c, cmd, err)
	}
	g := buildGraph(m)
	switch *format {
	case "dot":
		_, err = io.WriteString(c.stdout, g.dot())
	case "svg":
		err = renderSVG(c.stdout, g.dot())
	default:
		_, err = io.WriteString(c.stdout, g.mermaid())
	}
	if err != nil {
		return fail(c, cmd, err)
	}
	return exitOK
}

// machinePath finds the file of a machine given as a path or as a name; a name is looked up
// among the files of dir the state manager would load.
func machinePath(arg, dir string) (string, error) {
	if _, ok := machine.NameFromFile(arg); ok || strings.ContainsRune(arg, filepath.Separator) {
		return arg, nil
	}
	files, _ := catalog.DirFiles(dir) // a folder that cannot be read holds no machine: said below
	var found []string
	for _, f := range files {
		if f.Name == arg {
			found = append(found, f.Path)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("machine %s: no %s.yml or %s.yaml in %s (set --dir or MACHINES_DIR, or give the file's path)", arg, arg, arg, dir)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("machine %s is defined twice, by %s and %s: give the file's path", arg, found[0], found[1])
	}
}

// graph is a machine reduced to what a drawing shows.
type graph struct {
	name  string
	nodes []graphNode
	edges []graphEdge
}

type graphNode struct {
	state    string
	details  []string // lines under the name: tasks, no-ops, ttl
	initial  bool
	terminal bool
}

// graphEdge is every event that takes the stack from one state to another;
// NEXT edges are kept apart from the others since they are drawn dashed.
type graphEdge struct {
	from, to string
	events   []string
	next     bool
}

func buildGraph(m *machine.Machine) *graph {
	g := &graph{name: m.Name}
	// Declared events in file order, then NEXT: the order edges and no-op
	// lists are written in, so the output is stable.
	events := append(append([]string{}, m.Events...), machine.EventNext)
	for _, name := range m.StateOrder {
		st := m.States[name]
		n := graphNode{state: name, initial: name == machine.StateInit, terminal: st.Terminal}
		if len(st.Tasks) > 0 {
			n.details = append(n.details, "tasks: "+strings.Join(st.Tasks, ", "))
		}
		var noops []string
		for _, ev := range events {
			actions, ok := st.On[ev]
			if !ok {
				continue
			}
			// Only the last advance decides where the stack goes.
			target := ""
			for _, a := range actions {
				if a.Kind == machine.ActionAdvance {
					target = a.State
				}
			}
			if target == "" {
				noops = append(noops, ev)
				continue
			}
			g.addEdge(name, target, ev)
		}
		if len(noops) > 0 {
			n.details = append(n.details, "no-op: "+strings.Join(noops, ", "))
		}
		if st.TTL != nil {
			n.details = append(n.details, fmt.Sprintf("idle %s → %s", shortDuration(st.TTL.AfterSeconds), st.TTL.Event))
		}
		g.nodes = append(g.nodes, n)
	}
	return g
}

func (g *graph) addEdge(from, to, event string) {
	next := event == machine.EventNext
	for i := range g.edges {
		e := &g.edges[i]
		if e.from == from && e.to == to && e.next == next {
			e.events = append(e.events, event)
			return
		}
	}
	g.edges = append(g.edges, graphEdge{from: from, to: to, events: []string{event}, next: next})
}

// shortDuration writes seconds as a Go duration without zero tails: 72h,
// 1h30m, 90s.
func shortDuration(seconds int) string {
	s := (time.Duration(seconds) * time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// mermaid writes the graph as a Mermaid flowchart. Node ids are s0, s1… in
// file order because state names may hold "-", which Mermaid would read as
// part of an arrow; the names themselves are in the (quoted) labels.
func (g *graph) mermaid() string {
	var b strings.Builder
	ids := map[string]string{}
	fmt.Fprintln(&b, "flowchart LR")
	fmt.Fprintf(&b, "  %%%% stackseam machine %s: edges are events; dashed edges are NEXT (all tasks of the state done)\n", g.name)
	for i, n := range g.nodes {
		id := fmt.Sprintf("s%d", i)
		ids[n.state] = id
		lines := []string{mermaidText(n.state)}
		for _, d := range n.details {
			lines = append(lines, mermaidText(d))
		}
		open, closing := "(\"", "\")"
		if n.terminal {
			open, closing = "([\"", "\"])"
		}
		fmt.Fprintf(&b, "  %s%s%s%s\n", id, open, strings.Join(lines, "<br/>"), closing)
	}
	for _, e := range g.edges {
		arrow := "-->"
		if e.next {
			arrow = "-.->"
		}
		fmt.Fprintf(&b, "  %s %s|\"%s\"| %s\n", ids[e.from], arrow, mermaidText(strings.Join(e.events, ", ")), ids[e.to])
	}
	fmt.Fprintln(&b, "  classDef initial stroke-width:3px")
	fmt.Fprintln(&b, "  classDef terminal stroke-width:3px,stroke-dasharray:0")
	for _, n := range g.nodes {
		if n.initial {
			fmt.Fprintf(&b, "  class %s initial\n", ids[n.state])
		}
		if n.terminal {
			fmt.Fprintf(&b, "  class %s terminal\n", ids[n.state])
		}
	}
	return b.String()
}

// mermaidText escapes text for a quoted Mermaid label with its entity codes.
var mermaidText = strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;").Replace

// dot writes the graph in Graphviz's DOT language.
func (g *graph) dot() string {
	var b strings.Builder
	fmt.Fprintf(&b, "// stackseam machine %s: edges are events; dashed edges are NEXT (all tasks of the state done)\n", g.name)
	fmt.Fprintf(&b, "digraph %s {\n", dotString(g.name))
	fmt.Fprintln(&b, "  rankdir=LR;")
	fmt.Fprintln(&b, `  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];`)
	fmt.Fprintln(&b, `  edge [fontname="Helvetica", fontsize=10];`)
	for _, n := range g.nodes {
		label := dotString(strings.Join(append([]string{n.state}, n.details...), "\n"))
		attrs := "label=" + label
		if n.initial {
			attrs += ", penwidth=2.5"
		}
		if n.terminal {
			attrs += `, style="rounded,bold", peripheries=2`
		}
		fmt.Fprintf(&b, "  %s [%s];\n", dotString(n.state), attrs)
	}
	for _, e := range g.edges {
		attrs := "label=" + dotString(strings.Join(e.events, ", "))
		if e.next {
			attrs += ", style=dashed"
		}
		fmt.Fprintf(&b, "  %s -> %s [%s];\n", dotString(e.from), dotString(e.to), attrs)
	}
	fmt.Fprintln(&b, "}")
	return b.String()
}

// dotString quotes s as a DOT string; "\n" in s becomes a centred line
// break.
func dotString(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
	return `"` + s + `"`
}

// renderSVG draws DOT source with Graphviz compiled to WebAssembly
// (goccy/go-graphviz runs it on wazero: pure Go, nothing to install).
func renderSVG(w io.Writer, src string) error {
	ctx := context.Background()
	g, err := graphviz.ParseBytes([]byte(src))
	if err != nil {
		return fmt.Errorf("error parsing the DOT graph: %w", err)
	}
	defer g.Close()
	gv, err := graphviz.New(ctx)
	if err != nil {
		return fmt.Errorf("error starting Graphviz: %w", err)
	}
	defer gv.Close()
	var buf bytes.Buffer
	if err := gv.Render(ctx, g, graphviz.SVG, &buf); err != nil {
		return fmt.Errorf("error rendering SVG: %w", err)
	}
	_, err = buf.WriteTo(w)
	return err
}
