// Package executor is what every executor shares: the Executor interface a task run goes
// through, its Outcome, the stale-run error, and helpers that turn what a run returned into
// outputs (outputs.go). Each executor is a sub-package owning its kind (internal/executor/kinds
// lists them); internal/dispatch runs task messages through them.
package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/stackseam/stackseam/internal/message"
)

// Executor runs one kind of task. Run returns the outcome of one run; an error means the task
// failed, and its text becomes the TASK_ERROR description, so it must say what a person can act
// on. Run must stop when ctx is done (the dispatcher's timeout) and may return an Outcome with an
// error (a Terraform log is kept for failed runs too).
type Executor interface {
	Run(ctx context.Context, task message.Task) (Outcome, error)
}

// ErrStale is the error of a run that is no longer current for its stack (an advance left its
// state, a retry superseded it, the stack was removed): it was not run. Its TASK_ERROR carries a
// run id the state manager no longer waits for, so the result is ignored as stale.
var ErrStale = errors.New("stale run")

// Stale is the ErrStale error of task's run.
func Stale(task message.Task) error {
	return fmt.Errorf("%w: run %s of task %s is no longer current for stack %s (its fence names other runs); it was not run",
		ErrStale, task.TaskRunID, task.Task.Name, task.Stack.ID)
}

// Outcome is what one run produced.
type Outcome struct {
	// Outputs are merged into the stack's metadata on success.
	Outputs message.Metadata
	// Log is where the run's full log is stored (s3://bucket/key), "" when none was kept.
	Log string
	// Notes tell a person about a successful run what the outputs left out or changed.
	Notes []string
	// Outcome says what a successful run found (message.OutcomeChanges…), "" for nothing to
	// report; the machine may map it to an event.
	Outcome string
}
