package applier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/internal/store"
)

// Broadcast sends b's event to every stack of its machine that is in one of its states now, and
// returns how many stacks it was sent to. The events are the state manager's own, like
// time-to-live events: an eventId with the reserved prefix (signed as they are sent, so no
// publisher can take the key first), one per firing, and the stack's version as ifVersion, so a
// stack that moved on meanwhile ignores it. Rows that cannot be sent now stay in the outbox for
// the sweep.
func (a *Applier) Broadcast(ctx context.Context, b message.Broadcast) (int, error) {
	sum := sha256.Sum256([]byte(b.Name + "\x00" + b.ID))
	eventID := store.SystemEventIDPrefix + "b-" + hex.EncodeToString(sum[:16])
	rows, err := a.Store.EnqueueBroadcast(ctx, b.Machine, b.States, b.Event, eventID)
	if err != nil {
		return 0, fmt.Errorf("error broadcasting %s: %w", b.Name, err)
	}
	a.logger().Info("broadcast", "broadcast", b.Name, "machine", b.Machine, "states", b.States, "event", b.Event,
		"outcome", "enqueued", "stacks", len(rows))
	if err := a.flush(ctx, rows); err != nil {
		a.logger().Warn("broadcast events not sent yet; the sweep sends them", "broadcast", b.Name, "error", err.Error())
	}
	return len(rows), nil
}
