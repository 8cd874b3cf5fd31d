package catalog

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRefreshIfDueListsWhenNamesWould: RefreshIfDue lists the source exactly when Names would
// (the first time, then once the refresh interval passed), and a machine added meanwhile is then
// known.
func TestRefreshIfDueListsWhenNamesWould(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})

	require.NoError(t, b.catalog.RefreshIfDue(ctx))
	require.Equal(t, Stats{Lists: 1, Reads: 1}, b.catalog.Stats())

	b.write(t, "b.yml", validMachine)
	b.clock.Add(29 * time.Second)
	require.NoError(t, b.catalog.RefreshIfDue(ctx))
	require.Equal(t, Stats{Lists: 1, Reads: 1}, b.catalog.Stats())

	b.clock.Add(time.Second)
	require.NoError(t, b.catalog.RefreshIfDue(ctx))
	require.Equal(t, Stats{Lists: 2, Reads: 2}, b.catalog.Stats())
	names, err := b.catalog.Names(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, names)
	require.Equal(t, Stats{Lists: 2, Reads: 2}, b.catalog.Stats())
}
