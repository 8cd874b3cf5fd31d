package harness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// UploadDir uploads every file under dir to the emulator's bucket, each at
// prefix + its slash-separated path relative to dir, replacing what is
// there, and returns how many files it uploaded.
func UploadDir(t testing.TB, bucket, prefix, dir string) int {
	t.Helper()
	client := S3Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		key := path.Join(prefix, filepath.ToSlash(rel))
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("harness: uploading %s to s3://%s/%s: %v", dir, bucket, prefix, err)
	}
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
