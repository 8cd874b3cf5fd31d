package harness

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stackseam/stackseam/test/localenv"
)

const envAWSEndpoint = "STACKSEAM_TEST_AWS_ENDPOINT"

// Region is the AWS region the harness's clients and AWSEnv use.
const Region = localenv.Region

// AccessKeyID and SecretAccessKey are the static credentials the harness's
// clients and AWSEnv use; the emulator accepts any.
const (
	AccessKeyID     = localenv.AccessKeyID
	SecretAccessKey = localenv.SecretAccessKey
)

var (
	emuMu  sync.Mutex
	emuURL string
	emuErr error

	clientsMu sync.Mutex
	sqsClient *sqs.Client
	s3Client  *s3.Client
)

// AWSEndpoint returns the emulator's base URL (http://127.0.0.1:PORT). If
// STACKSEAM_TEST_AWS_ENDPOINT is set it returns that; otherwise the first
// call starts the emulator (node test/testdata/emulator/launch.mjs) for the
// test process, and Main stops it.
func AWSEndpoint(t testing.TB) string {
	t.Helper()
	if ep := os.Getenv(envAWSEndpoint); ep != "" {
		return strings.TrimRight(ep, "/")
	}
	requireMain(t)
	emuMu.Lock()
	defer emuMu.Unlock()
	if emuURL == "" && emuErr == nil {
		var e *localenv.Emulator
		e, emuErr = localenv.StartEmulator(RepoRoot(t))
		if e != nil {
			emuURL = e.URL
			atExit(func() {
				e.Stop()
				emuMu.Lock()
				emuURL, emuErr = "", nil
				emuMu.Unlock()
				clientsMu.Lock()
				sqsClient, s3Client = nil, nil
				clientsMu.Unlock()
			})
		}
	}
	if emuErr != nil {
		t.Fatalf("harness: %v (or set %s to a running emulator)", emuErr, envAWSEndpoint)
	}
	return emuURL
}

// AWSConfig returns an aws.Config for the emulator: region us-east-1, static
// test credentials and BaseEndpoint = AWSEndpoint(t). It is built by hand
// rather than with config.LoadDefaultConfig so that nothing in the caller's
// environment or ~/.aws can leak into tests.
func AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	return localenv.AWSConfig(AWSEndpoint(t))
}

// AWSEnv returns the environment variables a child process needs to reach
// the emulator with the AWS SDK's default configuration: the endpoint,
// region and static credentials, with IMDS and the shared config files
// turned off so nothing on the machine is consulted.
func AWSEnv(t testing.TB) []string {
	t.Helper()
	return localenv.AWSEnv(AWSEndpoint(t))
}

// SQSClient returns an SQS client for the emulator, shared by the process
// (clients are safe for concurrent use).
func SQSClient(t testing.TB) *sqs.Client {
	t.Helper()
	return sharedClient(t, &sqsClient, func(endpoint string) *sqs.Client { return sqs.NewFromConfig(localenv.AWSConfig(endpoint)) })
}

// S3Client returns an S3 client for the emulator with path-style addressing
// (bucket.127.0.0.1 does not resolve), shared by the process.
func S3Client(t testing.TB) *s3.Client {
	t.Helper()
	return sharedClient(t, &s3Client, localenv.NewS3Client)
}

// sharedClient returns *client, which newClient makes for the emulator's endpoint on first use.
func sharedClient[C any](t testing.TB, client **C, newClient func(endpoint string) *C) *C {
	t.Helper()
	endpoint := AWSEndpoint(t)
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if *client == nil {
		*client = newClient(endpoint)
	}
	return *client
}

// CreateQueue creates a uniquely named queue (name plus a random suffix,
// with ".fifo" appended for a FIFO queue, whose ContentBasedDeduplication is
// off) and a dead-letter queue of the same kind, wired to it by a
// RedrivePolicy with maxReceiveCount (at least 1). It returns both URLs; the
// queues are deleted at the end of the test.
func CreateQueue(t testing.TB, name string, fifo bool, maxReceiveCount int) (url, dlqURL string) {
	t.Helper()
	return CreateQueueWithAttributes(t, name, fifo, maxReceiveCount, nil)
}

// CreateQueueWithAttributes is CreateQueue with extra queue attributes for
// the main queue, such as "VisibilityTimeout": "2".
func CreateQueueWithAttributes(t testing.TB, name string, fifo bool, maxReceiveCount int, attrs map[string]string) (url, dlqURL string) {
	t.Helper()
	client := SQSClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, dlqURL, err := localenv.CreateQueue(ctx, client, queueName(name), fifo, maxReceiveCount, attrs)
	for _, u := range []string{dlqURL, url} {
		if u == "" {
			continue
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := localenv.DeleteQueue(ctx, client, u); err != nil {
				t.Logf("harness: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("harness: CreateQueue: %v", err)
	}
	return url, dlqURL
}

// queueName keeps the characters SQS allows and leaves room for the random
// part, "-dlq" and ".fifo" within SQS's 80 characters.
func queueName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 50 {
		s = s[:50]
	}
	if s == "" {
		s = "queue"
	}
	return s + "-" + localenv.RandomHex(6)
}

// CreateBucket creates a uniquely named bucket (name, lower-cased, plus a
// random suffix) and returns its name. The bucket and its objects are
// deleted at the end of the test.
func CreateBucket(t testing.TB, name string) string {
	t.Helper()
	client := S3Client(t)
	bucket := bucketName(name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	failOn(t, localenv.CreateBucket(ctx, client, bucket))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := localenv.DeleteBucket(ctx, client, bucket); err != nil {
			t.Logf("harness: %v", err)
		}
	})
	return bucket
}

// bucketName follows S3's rules: 3–63 characters of a-z, 0-9 and '-'.
func bucketName(name string) string {
	s := strings.Trim(localenv.NameChars(name, '-'), "-")
	if len(s) > 48 {
		s = strings.TrimRight(s[:48], "-")
	}
	if s == "" {
		s = "bucket"
	}
	return s + "-" + localenv.RandomHex(6)
}
