package stackseam

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
)

// Every top-level prefix the construct gives the bucket is a machine name the parser refuses: a
// machine's Terraform state lives under `<machine>/`, and a machine named like one of these would
// write its state among fences, plans, logs or hand-over records.
func TestBucketPrefixesAreReservedMachineNames(t *testing.T) {
	for _, prefix := range []string{MachinesPrefix, LogsPrefix, FencesPrefix, PlansPrefix, HandoversPrefix} {
		require.Contains(t, message.ReservedMachineNames, strings.TrimSuffix(prefix, "/"), prefix)
	}
}
