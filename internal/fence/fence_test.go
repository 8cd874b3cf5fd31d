package fence_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/fence"
	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func TestFencesOnlyMoveForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := harness.S3Client(t)
	bucket := harness.CreateBucket(t, "fence-"+t.Name())

	current := func(run string) bool {
		t.Helper()
		ok, err := fence.Current(ctx, client, bucket, "s-1", run)
		require.NoError(t, err)
		return ok
	}
	require.True(t, current("any"), "no fence yet: runs from before fencing are not refused")

	require.NoError(t, fence.Write(ctx, client, bucket, "s-1", fence.Fence{Generation: 5, Runs: []string{"r1"}}))
	require.True(t, current("r1"))
	require.False(t, current("r0"))

	// An older fence sent late (a sweep resending an old outbox row) changes nothing.
	require.NoError(t, fence.Write(ctx, client, bucket, "s-1", fence.Fence{Generation: 3, Runs: []string{"r0"}}))
	require.True(t, current("r1"))
	require.False(t, current("r0"))

	// A removal leaves an empty fence: every earlier run is stale.
	require.NoError(t, fence.Write(ctx, client, bucket, "s-1", fence.Fence{Generation: 9, Runs: []string{}}))
	require.False(t, current("r1"))
	body, ok := harness.ReadObject(t, bucket, fence.Key("s-1"))
	require.True(t, ok)
	require.JSONEq(t, `{"generation":9,"runs":[]}`, body)
}

// TestConcurrentWritersKeepTheNewest: writers racing with different generations leave the newest
// fence, whatever the order they land in (the compare-and-swap on the ETag).
func TestConcurrentWritersKeepTheNewest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := harness.S3Client(t)
	bucket := harness.CreateBucket(t, "fence-"+t.Name())
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for gen := int64(1); gen <= 20; gen++ {
		wg.Go(func() {
			errs <- fence.Write(ctx, client, bucket, "s-2", fence.Fence{Generation: gen, Runs: []string{"r" + string(rune('a'+gen))}})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	body, ok := harness.ReadObject(t, bucket, fence.Key("s-2"))
	require.True(t, ok)
	require.JSONEq(t, `{"generation":20,"runs":["ru"]}`, body)
}
