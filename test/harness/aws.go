package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

const (
	envAWSEndpoint = "STACKSEAM_TEST_AWS_ENDPOINT"

	// Region is the AWS region the harness's clients and AWSEnv use.
	Region = "us-east-1"
	// AccessKeyID and SecretAccessKey are the static credentials the
	// harness's clients and AWSEnv use; the emulator accepts any.
	AccessKeyID     = "test"
	SecretAccessKey = "test"

	emulatorDir          = "test/testdata/emulator"
	emulatorStartTimeout = 30 * time.Second
)

// emulator is the fauxqs process the harness started.
type emulator struct {
	url    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // held open: the launcher exits when it closes
	exited chan struct{}
	log    *tailBuffer
}

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
		var e *emulator
		e, emuErr = startEmulator(RepoRoot(t))
		if e != nil {
			emuURL = e.url
			atExit(func() {
				e.stop()
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
		t.Fatalf("harness: %v", emuErr)
	}
	return emuURL
}

func startEmulator(root string) (*emulator, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node (Node.js 20 or later) not found in PATH; the AWS emulator needs it " +
			"(see README), or set " + envAWSEndpoint + " to a running emulator")
	}
	dir := filepath.Join(root, emulatorDir)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fauxqs", "package.json")); err != nil {
		return nil, fmt.Errorf("the AWS emulator's packages are not installed (%s/node_modules/fauxqs); "+
			"run `make deps` (npm ci --prefix %s)", emulatorDir, emulatorDir)
	}
	cmd := exec.Command(node, filepath.Join(dir, "launch.mjs"), "0", "--exit-on-stdin-close")
	cmd.Dir = dir
	cmd.SysProcAttr = childAttr(nil)
	e := &emulator{cmd: cmd, exited: make(chan struct{}), log: newTailBuffer(64 << 10)}
	cmd.Stderr = e.log
	if e.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the AWS emulator: %w", err)
	}

	// The launcher prints one JSON line once it listens; everything else it
	// prints goes to the log. StdoutPipe's reader must be drained before
	// Wait, so one goroutine does both in order.
	ready := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			line := scanner.Text()
			var msg struct {
				Listening string `json:"listening"`
			}
			if json.Unmarshal([]byte(line), &msg) == nil && msg.Listening != "" {
				select {
				case ready <- msg.Listening:
				default:
				}
				continue
			}
			fmt.Fprintln(e.log, line)
		}
		_, _ = io.Copy(e.log, stdout)
		_ = cmd.Wait()
		close(e.exited)
	}()

	select {
	case e.url = <-ready:
		return e, nil
	case <-e.exited:
		return nil, fmt.Errorf("the AWS emulator exited while starting (%v); its output:\n%s", cmd.ProcessState, e.log)
	case <-time.After(emulatorStartTimeout):
		e.stop()
		return nil, fmt.Errorf("the AWS emulator did not start within %s; its output:\n%s", emulatorStartTimeout, e.log)
	}
}

func (e *emulator) stop() {
	_ = e.stdin.Close()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.exited
	}
}

// AWSConfig returns an aws.Config for the emulator: region us-east-1, static
// test credentials and BaseEndpoint = AWSEndpoint(t). It is built by hand
// rather than with config.LoadDefaultConfig so that nothing in the caller's
// environment or ~/.aws can leak into tests.
func AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	return aws.Config{
		Region: Region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "harness"}, nil
		}),
		BaseEndpoint: aws.String(AWSEndpoint(t)),
	}
}

// AWSEnv returns the environment variables a child process needs to reach
// the emulator with the AWS SDK's default configuration: the endpoint,
// region and static credentials, with IMDS and the shared config files
// turned off so nothing on the machine is consulted.
func AWSEnv(t testing.TB) []string {
	t.Helper()
	return []string{
		"AWS_ENDPOINT_URL=" + AWSEndpoint(t),
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
	}
}

// SQSClient returns an SQS client for the emulator, shared by the process
// (clients are safe for concurrent use).
func SQSClient(t testing.TB) *sqs.Client {
	t.Helper()
	cfg := AWSConfig(t)
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if sqsClient == nil {
		sqsClient = sqs.NewFromConfig(cfg)
	}
	return sqsClient
}

// S3Client returns an S3 client for the emulator with path-style addressing
// (bucket.127.0.0.1 does not resolve), shared by the process.
func S3Client(t testing.TB) *s3.Client {
	t.Helper()
	cfg := AWSConfig(t)
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if s3Client == nil {
		s3Client = s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	}
	return s3Client
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
	if maxReceiveCount < 1 {
		t.Fatalf("harness: CreateQueue: maxReceiveCount must be at least 1, got %d", maxReceiveCount)
	}
	client := SQSClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	base := queueName(name)
	suffix := ""
	kind := map[string]string{}
	if fifo {
		suffix = ".fifo"
		kind["FifoQueue"] = "true"
		kind["ContentBasedDeduplication"] = "false"
	}

	dlqURL = createQueue(ctx, t, client, base+"-dlq"+suffix, kind)
	dlqAttrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(dlqURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("harness: reading the ARN of %s: %v", dlqURL, err)
	}
	redrive, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": dlqAttrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     strconv.Itoa(maxReceiveCount),
	})
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	main := map[string]string{"RedrivePolicy": string(redrive)}
	for k, v := range kind {
		main[k] = v
	}
	for k, v := range attrs {
		main[k] = v
	}
	url = createQueue(ctx, t, client, base+suffix, main)
	return url, dlqURL
}

func createQueue(ctx context.Context, t testing.TB, client *sqs.Client, name string, attrs map[string]string) string {
	t.Helper()
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("harness: creating queue %s: %v", name, err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
			t.Logf("harness: deleting queue %s: %v", url, err)
		}
	})
	return url
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
	return s + "-" + randomHex(6)
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
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("harness: creating bucket %s: %v", bucket, err)
	}
	t.Cleanup(func() {
		if err := deleteBucket(client, bucket); err != nil {
			t.Logf("harness: deleting bucket %s: %v", bucket, err)
		}
	})
	return bucket
}

func deleteBucket(client *s3.Client, bucket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]s3types.ObjectIdentifier, len(page.Contents))
		for i, obj := range page.Contents {
			ids[i] = s3types.ObjectIdentifier{Key: obj.Key}
		}
		if _, err := client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(bucket),
			Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		}); err != nil {
			return err
		}
	}
	_, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	return err
}

// bucketName follows S3's rules: 3–63 characters of a-z, 0-9 and '-'.
func bucketName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 48 {
		s = strings.TrimRight(s[:48], "-")
	}
	if s == "" {
		s = "bucket"
	}
	return s + "-" + randomHex(6)
}
