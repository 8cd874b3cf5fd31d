package harness

import (
	"fmt"
	"strings"
)

// Lifecycle is the shape of machine most tests drive, written out by YAML: LAUNCH takes a new
// stack from INIT to PROVISION, which runs the Up tasks and, once they are done, advances to RUN;
// DESTROY takes it from RUN (and from PROVISION too, with DestroyWhileProvisioning) to TEARDOWN,
// which runs the Down tasks and then ends in the terminal state — or straight to the terminal
// state when there are no Down tasks. Only the tasks differ from test to test.
type Lifecycle struct {
	// Up are the tasks of PROVISION; Down those of TEARDOWN (none: no TEARDOWN state).
	Up, Down []string
	// NoOps are events RUN accepts without moving (ACCESS), declared after LAUNCH.
	NoOps []string
	// DestroyWhileProvisioning lets DESTROY leave PROVISION before its tasks are done.
	DestroyWhileProvisioning bool
	// Terminal names the terminal state. Defaults to DESTROYED.
	Terminal string
	// Tasks is the YAML of the `tasks` mapping: each task's name indented by two spaces.
	Tasks string
}

// YAML is the machine file.
func (l Lifecycle) YAML() string {
	end := l.Terminal
	if end == "" {
		end = "DESTROYED"
	}
	afterRun := end
	if len(l.Down) > 0 {
		afterRun = "TEARDOWN"
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	events := append(append([]string{"LAUNCH"}, l.NoOps...), "DESTROY")
	line("version: 1")
	line("events: [%s]", strings.Join(events, ", "))
	line("states:")
	line("  INIT:")
	line("    on:")
	line("      LAUNCH: [{action: advance, state: PROVISION}]")
	line("  PROVISION:")
	line("    tasks: [%s]", strings.Join(l.Up, ", "))
	line("    on:")
	line("      NEXT: [{action: advance, state: RUN}]")
	if l.DestroyWhileProvisioning {
		line("      DESTROY: [{action: advance, state: %s}]", afterRun)
	}
	line("  RUN:")
	line("    on:")
	for _, ev := range l.NoOps {
		line("      %s: [{action: no-op}]", ev)
	}
	line("      DESTROY: [{action: advance, state: %s}]", afterRun)
	if len(l.Down) > 0 {
		line("  TEARDOWN:")
		line("    tasks: [%s]", strings.Join(l.Down, ", "))
		line("    on:")
		line("      NEXT: [{action: advance, state: %s}]", end)
	}
	line("  %s:", end)
	line("    terminal: true")
	line("tasks:")
	b.WriteString(strings.TrimLeft(l.Tasks, "\n"))
	return b.String()
}

// TerraformTasks is the YAML, for Lifecycle.Tasks, of the Terraform pair most machines have:
// infra applies source (a YAML flow mapping) with variables (a flow mapping, or "" for none), and
// teardown destroys what it built, in the same state.
func TerraformTasks(source, variables string) string {
	var b strings.Builder
	for _, task := range []struct{ name, action string }{{"infra", "apply"}, {"teardown", "destroy"}} {
		fmt.Fprintf(&b, "  %s:\n    executor: terraform\n    config:\n      source: %s\n      action: %s\n", task.name, source, task.action)
		if task.action == "apply" && variables != "" {
			fmt.Fprintf(&b, "      variables: %s\n", variables)
		}
	}
	return b.String()
}
