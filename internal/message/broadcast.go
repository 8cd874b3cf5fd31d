package message

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// BroadcastKind is the `stackseam` field of a Broadcast.
const BroadcastKind = "broadcast"

// Broadcast is what a schedule invokes the state manager with to send one event to every stack
// of a machine that is in one of the given states when it fires — a nightly drift check of every
// running stack, say (README.md, "Plan, approve, apply"). Each stack gets the event like a
// time-to-live event: from the state manager itself, conditional on the stack's version.
type Broadcast struct {
	// Stackseam is BroadcastKind.
	Stackseam string `json:"stackseam"`
	// Name is the schedule's name.
	Name string `json:"name"`
	// Machine, States and Event say which stacks get which event.
	Machine string   `json:"machine"`
	States  []string `json:"states"`
	Event   string   `json:"event"`
	// ID identifies the firing (EventBridge's event id): a firing delivered twice is applied
	// once per stack.
	ID string `json:"id"`
}

var broadcastIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ParseBroadcast reads and checks a broadcast payload.
func ParseBroadcast(raw []byte) (Broadcast, error) {
	var b Broadcast
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("the broadcast is malformed: %w", err)
	}
	switch {
	case b.Stackseam != BroadcastKind:
		return b, fmt.Errorf("not a broadcast: stackseam is %q", b.Stackseam)
	case !ValidMachineName(b.Machine):
		return b, fmt.Errorf("the broadcast's machine %q is not a machine name", b.Machine)
	case !ValidEventName(b.Event) || b.Event == EventNext || IsSystemEvent(b.Event):
		return b, fmt.Errorf("the broadcast's event %q cannot be sent (a machine's own event, not NEXT or a system event)", b.Event)
	case len(b.States) == 0:
		return b, fmt.Errorf("the broadcast names no states")
	case !broadcastIDPattern.MatchString(b.ID) || !broadcastIDPattern.MatchString(b.Name):
		return b, fmt.Errorf("the broadcast needs a name and a firing id (letters, digits, '.', '_', ':', '-')")
	}
	for _, s := range b.States {
		if !ValidEventName(s) {
			return b, fmt.Errorf("the broadcast's state %q is not a state name", s)
		}
	}
	return b, nil
}
