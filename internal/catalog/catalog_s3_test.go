package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// TestMain lets the S3 tests start the AWS emulator; tests that do not use
// it start nothing.
func TestMain(m *testing.M) { harness.Main(m) }

func TestS3Catalog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := harness.S3Client(t)
	bucket := harness.CreateBucket(t, "machines")
	put := func(key, content string) {
		t.Helper()
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(content)})
		require.NoError(t, err)
	}
	put("machines/a.yml", validMachine)
	put("machines/b.yaml", invalidMachine)
	put("machines/sub/c.yml", validMachine)
	put("machines/notes.txt", "not a machine")
	put("other/d.yml", validMachine)

	clk := &clock{now: time.Unix(0, 0)}
	// No trailing slash: the prefix is a folder either way.
	c := NewS3(client, bucket, "machines", Options{Now: clk.Now})

	a, err := c.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "a", a.Name)
	require.Equal(t, "s3://"+bucket+"/machines/a.yml", a.Source)
	require.Equal(t, Stats{Lists: 1, Reads: 2}, c.Stats())

	_, err = c.Get(ctx, "b")
	require.ErrorIs(t, err, ErrInvalidMachine)
	require.ErrorContains(t, err, "s3://"+bucket+"/machines/b.yaml:3:1: there is no INIT state; every stack starts in INIT [missing-init]")
	for _, name := range []string{"c", "d", "notes"} {
		_, err = c.Get(ctx, name)
		require.ErrorIs(t, err, ErrUnknownMachine, name)
	}

	// Nothing changed: listing again downloads nothing.
	clk.Add(30 * time.Second)
	again, err := c.Get(ctx, "a")
	require.NoError(t, err)
	require.Same(t, a, again)
	require.Equal(t, Stats{Lists: 2, Reads: 2}, c.Stats())

	// A changed object (new ETag) is downloaded again, and only it.
	put("machines/a.yml", otherMachine)
	clk.Add(30 * time.Second)
	changed, err := c.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "1.0", changed.Version)
	require.Equal(t, Stats{Lists: 3, Reads: 3}, c.Stats())

	// A just-uploaded machine works without waiting for RefreshInterval.
	put("machines/e.yml", validMachine)
	clk.Add(time.Second)
	e, err := c.Get(ctx, "e")
	require.NoError(t, err)
	require.Equal(t, "e", e.Name)

	// A deleted object is forgotten at the next listing.
	_, err = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("machines/a.yml")})
	require.NoError(t, err)
	clk.Add(30 * time.Second)
	_, err = c.Get(ctx, "a")
	require.ErrorIs(t, err, ErrUnknownMachine)

	names, err := c.Names(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "e"}, names)
}

func TestS3CatalogErrorsAreTransient(t *testing.T) {
	t.Parallel()
	c := NewS3(harness.S3Client(t), "stackseam-no-such-bucket-4b1d", "machines/", Options{})
	_, err := c.Get(context.Background(), "a")
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnknownMachine)
	require.NotErrorIs(t, err, ErrInvalidMachine)
	require.ErrorContains(t, err, "error listing machines in s3://stackseam-no-such-bucket-4b1d/machines/")
}
