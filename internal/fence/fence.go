// Package fence keeps, per stack, the set of task runs that are current, in an S3 object the
// state manager writes and the task satisfier reads: a fencing token the satisfier checks without
// the database, so a task message whose run was abandoned (an advance, a retry, a removal) never
// runs (docs/design.md §"Guarantees", "Stale runs never run").
package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Prefix is where fences live in the bucket. The satisfier's role may read it but never write it.
const Prefix = "fences/"

// Key is the fence object of a stack.
func Key(stackID string) string { return Prefix + stackID }

// Fence is the content of a stack's fence object.
type Fence struct {
	// Generation orders the fences of a stack: the id of the outbox row that carried it, which
	// grows with every decision of the stack (rows of one stack are written under its lock, in
	// decision order), across the removal and re-creation of a stack id too.
	Generation int64 `json:"generation"`
	// Runs are the run ids of the stack's tasks that are dispatched and not settled; empty once
	// the stack is removed.
	Runs []string `json:"runs"`
}

// maxAttempts bounds Write's compare-and-swap loop. Each lost race is another writer's successful
// write, and each writer writes at most once, so a stack with fewer concurrent writers than this
// (in practice one or two: an event's flush and a sweep) always settles.
const maxAttempts = 32

// Write stores f as the stack's fence unless the stored fence is as new or newer
// (f.Generation is not greater): a compare-and-swap on the object's ETag (If-Match, or
// If-None-Match: * for the first), so fences written out of order — a sweep resending an old
// outbox row while a later event sends a newer one — never bring back an older set of runs.
func Write(ctx context.Context, client *s3.Client, bucket, stackID string, f Fence) error {
	key := Key(stackID)
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("error encoding the fence of stack %s: %w", stackID, err)
	}
	for range maxAttempts {
		stored, etag, err := read(ctx, client, bucket, key)
		if err != nil {
			return err
		}
		if etag != "" && stored.Generation >= f.Generation {
			return nil // a newer decision's fence is there already
		}
		in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(string(body)),
			ContentType: aws.String("application/json")}
		if etag == "" {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(etag)
		}
		_, err = client.PutObject(ctx, in)
		if err == nil {
			return nil
		}
		if !conflict(err) {
			return fmt.Errorf("error writing the fence s3://%s/%s: %w", bucket, key, err)
		}
	}
	return fmt.Errorf("error writing the fence s3://%s/%s: it kept changing during %d attempts", bucket, key, maxAttempts)
}

// Current reports whether runID is a current run of the stack. A stack without a fence object
// has had no run dispatched since fencing began (an upgrade with task messages in flight): its
// runs are taken as current, and the state manager still ignores their results if they are not.
func Current(ctx context.Context, client *s3.Client, bucket, stackID, runID string) (bool, error) {
	f, etag, err := read(ctx, client, bucket, Key(stackID))
	if err != nil {
		return false, err
	}
	if etag == "" {
		return true, nil
	}
	return slices.Contains(f.Runs, runID), nil
}

// read returns the stored fence and its ETag, "" when there is none.
func read(ctx context.Context, client *s3.Client, bucket, key string) (Fence, string, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var missing *s3types.NoSuchKey
		if errors.As(err, &missing) {
			return Fence{}, "", nil
		}
		return Fence{}, "", fmt.Errorf("error reading the fence s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return Fence{}, "", fmt.Errorf("error reading the fence s3://%s/%s: %w", bucket, key, err)
	}
	var f Fence
	if err := json.Unmarshal(data, &f); err != nil {
		return Fence{}, "", fmt.Errorf("the fence s3://%s/%s is not valid: %w", bucket, key, err)
	}
	return f, aws.ToString(out.ETag), nil
}

// conflict reports a lost compare-and-swap: the object changed (412) or appeared or vanished
// (409 ConditionalRequestConflict, 404) since it was read.
func conflict(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey":
			return true
		}
	}
	return false
}
