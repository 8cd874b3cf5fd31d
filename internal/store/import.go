package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackseam/stackseam/internal/engine"
)

// ImportOutcome says what ImportStack did with one stack.
type ImportOutcome string

// The outcomes of ImportStack.
const (
	// Imported: the stack was stored, with a history row that says where it came from.
	Imported ImportOutcome = "imported"
	// ImportExists: a stack with the id is live in stackseam; nothing changed.
	ImportExists ImportOutcome = "exists"
	// ImportedBefore: the stack was imported once and has since been removed (it reached a
	// terminal state in stackseam); importing it again would bring it back, so nothing changed.
	ImportedBefore ImportOutcome = "imported-before"
)

// ImportStack stores st, a stack brought over from another system (from names it, e.g.
// "cloudseam postgres public.stacks"), unless stackseam already has it or had it from an earlier
// import, so importing the same stacks twice changes nothing. The stack row and a `created` history
// row whose detail holds importedFrom are written in one transaction, under the stack's lock (the
// same advisory lock store.Apply takes), so an event for the stack waits for it. With dryRun nothing
// is written: the outcome says what would happen.
func (s *Store) ImportStack(ctx context.Context, st engine.Stack, from string, dryRun bool) (ImportOutcome, error) {
	metadata, err := json.Marshal(st.Metadata)
	if err != nil {
		return "", fmt.Errorf("error encoding the metadata of stack %s: %w", st.ID, err)
	}
	tasks, err := json.Marshal(st.Tasks)
	if err != nil {
		return "", fmt.Errorf("error encoding the tasks of stack %s: %w", st.ID, err)
	}
	detail, err := json.Marshal(map[string]any{"machine": st.Machine, "importedFrom": from, "state": st.State})
	if err != nil {
		return "", fmt.Errorf("error encoding the history of stack %s: %w", st.ID, err)
	}
	now := time.Now().UTC()
	var outcome ImportOutcome
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", st.ID); err != nil {
			return err
		}
		var live, before bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stacks WHERE id = $1),
			EXISTS (SELECT 1 FROM history WHERE stack_id = $1 AND kind = $2 AND detail ? 'importedFrom')`,
			st.ID, engine.KindCreated).Scan(&live, &before)
		switch {
		case err != nil:
			return err
		case live:
			outcome = ImportExists
			return nil
		case before:
			outcome = ImportedBefore
			return nil
		}
		outcome = Imported
		if dryRun {
			return nil
		}
		if _, err := tx.Exec(ctx, insertStack, st.ID, st.Machine, st.State, st.PreviousState, metadata, tasks, st.Version,
			st.CreatedAt, st.StateEnteredAt, st.LastActivityAt, st.MachineHash, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO history (stack_id, machine, at, kind, to_state, reason, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			st.ID, st.Machine, now, engine.KindCreated, st.State, "imported from "+from, detail)
		return err
	})
	if err != nil {
		return "", s.noteErr(fmt.Errorf("error importing stack %s: %w", st.ID, err))
	}
	return outcome, nil
}
