// Package kinds is the one list of executors: the machine parser judges tasks by it (the state
// manager's catalog, `stackseam validate`), the satisfier runs only these, and the schema test
// checks machines/machine.schema.json against their fragments. Adding an executor is its own
// package under internal/executor and one line here.
package kinds

import (
	"github.com/stackseam/stackseam/internal/executor/lambdainvoke"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/machine"
)

// All is every executor a task may name, in the order messages list them.
var All = machine.Kinds{
	terraform.Kind,
	lambdainvoke.Kind,
}
