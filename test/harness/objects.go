package harness

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/stackseam/stackseam/test/localenv"
)

// UploadDir uploads every file under dir to the emulator's bucket, each at
// prefix + its slash-separated path relative to dir, replacing what is
// there, and returns how many files it uploaded.
func UploadDir(t testing.TB, bucket, prefix, dir string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := localenv.UploadDir(ctx, S3Client(t), bucket, prefix, dir)
	failOn(t, err)
	return n
}

// ReadObject returns the content of an object in the emulator's S3, and
// false when it does not exist.
func ReadObject(t testing.TB, bucket, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := S3Client(t).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if _, ok := errors.AsType[*s3types.NoSuchKey](err); ok {
			return "", false
		}
		t.Fatalf("harness: reading s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("harness: reading s3://%s/%s: %v", bucket, key, err)
	}
	return string(data), true
}

// PutObject writes body at key in the emulator's S3, replacing what is there: a change made
// outside stackseam (an operator editing a state, say).
func PutObject(t testing.TB, bucket, key, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := S3Client(t).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader(body)}); err != nil {
		t.Fatalf("harness: writing s3://%s/%s: %v", bucket, key, err)
	}
}

// ListObjects returns the keys of the emulator's bucket under prefix (up to 1,000, one page).
func ListObjects(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := S3Client(t).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("harness: listing s3://%s/%s: %v", bucket, prefix, err)
	}
	keys := make([]string, len(out.Contents))
	for i, obj := range out.Contents {
		keys[i] = aws.ToString(obj.Key)
	}
	return keys
}
