package store

import (
	"context"
	"fmt"
	"time"
)

// PruneProcessedEvents deletes at most limit keys of events processed before before, oldest first,
// and returns how many it deleted. A key only has to outlive every redelivery of its message; the
// caller picks before accordingly (README.md, "Running the state manager"). One statement, so each
// batch holds its locks only briefly; the sweep calls it again while batches come back full.
func (s *Store) PruneProcessedEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM processed_events WHERE key IN (
		SELECT key FROM processed_events WHERE processed_at < $1 ORDER BY processed_at LIMIT $2)`, before, limit)
	if err != nil {
		return 0, s.noteErr(fmt.Errorf("error pruning processed event keys: %w", err))
	}
	return int(tag.RowsAffected()), nil
}

// PruneRejections deletes at most limit rejections recorded before before, oldest first, and
// returns how many it deleted. A rejection also written to a stack's history stays there: history
// is never pruned.
func (s *Store) PruneRejections(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM rejections WHERE id IN (
		SELECT id FROM rejections WHERE at < $1 ORDER BY at, id LIMIT $2)`, before, limit)
	if err != nil {
		return 0, s.noteErr(fmt.Errorf("error pruning rejections: %w", err))
	}
	return int(tag.RowsAffected()), nil
}
