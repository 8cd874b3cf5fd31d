package terraform_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor"
	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
)

// TestEmulatorRefusesASecondLock shows the emulator behaves as S3 does for the conditional
// PutObject the S3 backend's lock file is (If-None-Match: *): the second writer is refused; and
// for the conditional DeleteObject (If-Match: ETag) that releases a lock only if it is still the
// one that was written.
func TestEmulatorRefusesASecondLock(t *testing.T) {
	t.Parallel()
	bucket := harness.CreateBucket(t, "lock-"+t.Name())
	client := harness.S3Client(t)
	put := func() error {
		_, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket),
			Key: aws.String("m/s/infra.tflock"), Body: strings.NewReader("{}"), IfNoneMatch: aws.String("*")})
		return err
	}
	require.NoError(t, put())
	err := put()
	var apiErr smithy.APIError
	require.True(t, errors.As(err, &apiErr), "refused: %v", err)
	require.Equal(t, "PreconditionFailed", apiErr.ErrorCode())

	del := func(etag string) error {
		_, err := client.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket),
			Key: aws.String("m/s/infra.tflock"), IfMatch: aws.String(etag)})
		return err
	}
	err = del(`"another-lock"`)
	require.True(t, errors.As(err, &apiErr), "refused: %v", err)
	require.Equal(t, "PreconditionFailed", apiErr.ErrorCode())
	head, err := client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("m/s/infra.tflock")})
	require.NoError(t, err, "still there")
	require.NoError(t, del(aws.ToString(head.ETag)))
	require.NoError(t, put(), "released")
}

// TestDestroyWaitsForTheRunningApply is one run per state at a time: a destroy started while an
// apply of the same state runs waits for the apply's lock, then destroys what the apply created.
// Without the lock the destroy would find an empty state, finish first, and the apply would
// leave its resource behind.
func TestDestroyWaitsForTheRunningApply(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	source := localSource("slow")
	vars := map[string]any{"sleep_seconds": "3"}
	stateKey := terraform.StateKey("m", "s-1", terraform.Source{Type: terraform.SourceLocal, Location: "slow"})

	applied := make(chan error, 1)
	go func() {
		_, err := r.Run(context.Background(), tfTask("infra", map[string]any{"source": source, "action": "apply", "variables": vars}, nil))
		applied <- err
	}()
	// The apply holds the lock once its lock file exists.
	require.Eventually(t, func() bool {
		_, ok := harness.ReadObject(t, r.Bucket, terraform.LockKey(stateKey))
		return ok
	}, 120*time.Second, 20*time.Millisecond, "the apply takes the state lock")

	out, err := r.Run(context.Background(), tfTask("teardown", map[string]any{"source": source, "action": "destroy", "variables": vars}, nil))
	require.NoError(t, err)
	require.NoError(t, <-applied, "the apply was not disturbed")
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "stackseam: waiting for the state lock", "the destroy waited")
	require.Contains(t, log, "Destroy complete! Resources: 1 destroyed.", "and destroyed what the apply made")

	state, ok := harness.ReadObject(t, r.Bucket, stateKey)
	require.True(t, ok)
	require.NotContains(t, state, `"terraform_data"`)
	_, locked := harness.ReadObject(t, r.Bucket, terraform.LockKey(stateKey))
	require.False(t, locked, "the lock is released")
}

// TestStaleLockIsRemoved: a lock older than the lease was left by a killed run; the next run
// removes it and goes on, and says so in its log.
func TestStaleLockIsRemoved(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	r.LockLease = time.Minute
	stateKey := terraform.StateKey("m", "s-1", terraform.Source{Type: terraform.SourceLocal, Location: "slow"})
	old := time.Now().Add(-2 * time.Minute).UTC().Format(time.RFC3339Nano)
	_, err := harness.S3Client(t).PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(r.Bucket),
		Key:  aws.String(terraform.LockKey(stateKey)),
		Body: strings.NewReader(fmt.Sprintf(`{"ID":"dead-run","Operation":"OperationTypeApply","Who":"x@y","Created":%q}`, old))})
	require.NoError(t, err)

	out, err := r.Run(context.Background(), tfTask("quick", map[string]any{"source": localSource("slow"), "action": "apply", "variables": map[string]any{"sleep_seconds": "0"}}, nil))
	require.NoError(t, err)
	require.Contains(t, storedLog(t, r, out.Log), "removing a stale state lock dead-run")
}

// TestYoungLockIsWaitedForUntilTheRunsTimeEnds: a lock within its lease is someone's running
// apply; a run that cannot get it in its time fails saying who holds it.
func TestYoungLockIsWaitedForUntilTheRunsTimeEnds(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	stateKey := terraform.StateKey("m", "s-1", terraform.Source{Type: terraform.SourceLocal, Location: "slow"})
	_, err := harness.S3Client(t).PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(r.Bucket),
		Key: aws.String(terraform.LockKey(stateKey)),
		Body: strings.NewReader(fmt.Sprintf(`{"ID":"live-run","Operation":"OperationTypeApply","Who":"x@y","Created":%q}`,
			time.Now().UTC().Format(time.RFC3339Nano)))})
	require.NoError(t, err)

	// The run's time must outlast `tofu init` (which runs before the lock is taken) on a loaded
	// machine, or the run ends in init instead of waiting for the lock; 3 s was seen to be short.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := r.Run(ctx, tfTask("quick", map[string]any{"source": localSource("slow"), "action": "apply", "variables": map[string]any{"sleep_seconds": "0"}}, nil))
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded), err.Error())
	require.Contains(t, err.Error(), "live-run")
	require.Contains(t, storedLog(t, r, out.Log), "waiting for the state lock, held by live-run")
}

// TestStaleRunDoesNotRunTerraform: a run its stack's fence no longer names is refused while
// the state lock is held, before Terraform runs, and releases the lock.
func TestStaleRunDoesNotRunTerraform(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	var asked message.Task
	r.Current = func(_ context.Context, task message.Task) (bool, error) {
		asked = task
		_, locked := harness.ReadObject(t, r.Bucket, terraform.LockKey(terraform.StateKey("m", "s-1",
			terraform.Source{Type: terraform.SourceLocal, Location: "slow"})))
		require.True(t, locked, "asked while holding the lock")
		return false, nil
	}
	out, err := r.Run(context.Background(), tfTask("quick", map[string]any{"source": localSource("slow"), "action": "apply",
		"variables": map[string]any{"sleep_seconds": "0"}}, nil))
	require.ErrorIs(t, err, executor.ErrStale)
	require.Equal(t, "run-quick", asked.TaskRunID)
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "is no longer current")
	require.NotContains(t, log, "Apply complete")
	stateKey := terraform.StateKey("m", "s-1", terraform.Source{Type: terraform.SourceLocal, Location: "slow"})
	_, locked := harness.ReadObject(t, r.Bucket, terraform.LockKey(stateKey))
	require.False(t, locked, "the lock is released")
}

// TestLockIsJudgedByItsOwnRunsTime: without a configured lease, a lock stackseam wrote says how
// long its run may hold it. A lock older than the default lease whose run may hold it for hours
// (an 8-hour CodeBuild run) is waited for; one whose run's time has passed is removed.
func TestLockIsJudgedByItsOwnRunsTime(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	stateKey := terraform.StateKey("m", "s-1", terraform.Source{Type: terraform.SourceLocal, Location: "slow"})
	put := func(id string, created, until time.Time) {
		_, err := harness.S3Client(t).PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(r.Bucket),
			Key: aws.String(terraform.LockKey(stateKey)),
			Body: strings.NewReader(fmt.Sprintf(`{"ID":%q,"Operation":"stackseam infra","Info":"task run r-1, held until %s","Who":"stackseam@s-1","Created":%q}`,
				id, until.UTC().Format(time.RFC3339), created.UTC().Format(time.RFC3339Nano)))})
		require.NoError(t, err)
	}
	task := tfTask("quick", map[string]any{"source": localSource("slow"), "action": "apply", "variables": map[string]any{"sleep_seconds": "0"}}, nil)

	put("long-build", time.Now().Add(-time.Hour), time.Now().Add(7*time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := r.Run(ctx, task)
	require.ErrorIs(t, err, context.DeadlineExceeded, "an hour-old lock of an 8-hour run is live")
	require.Contains(t, storedLog(t, r, out.Log), "waiting for the state lock, held by long-build")

	put("dead-build", time.Now().Add(-9*time.Hour), time.Now().Add(-time.Hour))
	out, err = r.Run(context.Background(), task)
	require.NoError(t, err)
	require.Contains(t, storedLog(t, r, out.Log), "removing a stale state lock dead-build")

	// The lock a run takes says until when: its deadline plus the stop grace.
	var held string
	r.StopGrace = 7 * time.Second
	r.Current = func(context.Context, message.Task) (bool, error) {
		held, _ = harness.ReadObject(t, r.Bucket, terraform.LockKey(stateKey))
		return true, nil
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC))
	defer cancel()
	_, err = r.Run(ctx, task)
	require.NoError(t, err)
	require.Contains(t, held, `held until 2099-01-02T03:04:12Z`, "the deadline plus the stop grace")
}

// TestReleaseDeadRunRemovesOnlyItsOwnLock: the lock of a run known to be dead is removed; a lock
// another run holds is left alone.
func TestReleaseDeadRunRemovesOnlyItsOwnLock(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	task := tfTask("quick", map[string]any{"source": localSource("slow"), "action": "apply"}, nil)
	key := terraform.LockKey(terraform.StateKey("m", "s-1", terraform.Source{Type: terraform.SourceLocal, Location: "slow"}))
	put := func(run string) {
		_, err := harness.S3Client(t).PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String(key),
			Body: strings.NewReader(fmt.Sprintf(`{"ID":"l","Operation":"stackseam quick","Info":"task run %s, held until 2099-01-01T00:00:00Z","Created":%q}`,
				run, time.Now().UTC().Format(time.RFC3339Nano)))})
		require.NoError(t, err)
	}
	put("someone-else")
	released, err := r.ReleaseDeadRun(context.Background(), task)
	require.NoError(t, err)
	require.False(t, released)
	_, locked := harness.ReadObject(t, r.Bucket, key)
	require.True(t, locked, "another run's lock is left alone")

	put(task.TaskRunID)
	released, err = r.ReleaseDeadRun(context.Background(), task)
	require.NoError(t, err)
	require.True(t, released)
	_, locked = harness.ReadObject(t, r.Bucket, key)
	require.False(t, locked)
}
