package localenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

const (
	// Region is the AWS region the local clients and AWSEnv use.
	Region = "us-east-1"
	// AccessKeyID and SecretAccessKey are the static credentials the local
	// clients and AWSEnv use; the emulator accepts any.
	AccessKeyID     = "test"
	SecretAccessKey = "test"

	// EmulatorDir holds the emulator's launcher and its npm packages,
	// relative to the repository root.
	EmulatorDir          = "test/testdata/emulator"
	emulatorStartTimeout = 30 * time.Second
)

// Emulator is a running fauxqs process (SQS, S3) started by StartEmulator.
type Emulator struct {
	// URL is the emulator's base URL (http://127.0.0.1:PORT).
	URL string

	cmd    *exec.Cmd
	stdin  io.WriteCloser // held open: the launcher exits when it closes
	exited chan struct{}
	log    *TailBuffer
}

// StartEmulator starts the emulator (node test/testdata/emulator/launch.mjs)
// on a free port and waits until it listens. Its packages must be installed
// (`make deps`). Stop it with Stop.
func StartEmulator(root string) (*Emulator, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node (Node.js 20 or later) not found in PATH; the AWS emulator needs it (see README)")
	}
	dir := filepath.Join(root, EmulatorDir)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fauxqs", "package.json")); err != nil {
		return nil, fmt.Errorf("the AWS emulator's packages are not installed (%s/node_modules/fauxqs); "+
			"run `make deps` (npm ci --prefix %s)", EmulatorDir, EmulatorDir)
	}
	cmd := exec.Command(node, filepath.Join(dir, "launch.mjs"), "0", "--exit-on-stdin-close")
	cmd.Dir = dir
	cmd.SysProcAttr = ChildAttr(nil)
	e := &Emulator{cmd: cmd, exited: make(chan struct{}), log: NewTailBuffer(64 << 10)}
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
	case e.URL = <-ready:
		return e, nil
	case <-e.exited:
		return nil, fmt.Errorf("the AWS emulator exited while starting (%v); its output:\n%s", cmd.ProcessState, e.log)
	case <-time.After(emulatorStartTimeout):
		e.Stop()
		return nil, fmt.Errorf("the AWS emulator did not start within %s; its output:\n%s", emulatorStartTimeout, e.log)
	}
}

// Stop stops the emulator and waits for it to exit.
func (e *Emulator) Stop() {
	_ = e.stdin.Close()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.exited
	}
}

// AWSConfig returns an aws.Config for the endpoint: region us-east-1,
// static test credentials and BaseEndpoint. It is built by hand rather than
// with config.LoadDefaultConfig so that nothing in the caller's environment
// or ~/.aws can leak in.
func AWSConfig(endpoint string) aws.Config {
	return aws.Config{
		Region: Region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "localenv"}, nil
		}),
		BaseEndpoint: aws.String(endpoint),
	}
}

// NewS3Client returns an S3 client for the emulator with path-style
// addressing (bucket.127.0.0.1 does not resolve).
func NewS3Client(endpoint string) *s3.Client {
	return s3.NewFromConfig(AWSConfig(endpoint), func(o *s3.Options) { o.UsePathStyle = true })
}

// AWSEnv returns the environment variables a child process needs to reach
// the endpoint with the AWS SDK's default configuration: the endpoint,
// region and static credentials, with IMDS and the shared config files
// turned off so nothing on the machine is consulted.
func AWSEnv(endpoint string) []string {
	return []string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
	}
}

// CreateQueue creates the queue name (".fifo" is appended for a FIFO queue,
// whose ContentBasedDeduplication is off) and a dead-letter queue of the
// same kind named name-dlq, wired to it by a RedrivePolicy with
// maxReceiveCount (at least 1); attrs are extra attributes of the main
// queue, such as "VisibilityTimeout". It returns both URLs; when it fails
// after creating the dead-letter queue, dlqURL is still returned so the
// caller can delete it.
func CreateQueue(ctx context.Context, client *sqs.Client, name string, fifo bool, maxReceiveCount int, attrs map[string]string) (url, dlqURL string, err error) {
	if maxReceiveCount < 1 {
		return "", "", fmt.Errorf("maxReceiveCount must be at least 1, got %d", maxReceiveCount)
	}
	suffix := ""
	kind := map[string]string{}
	if fifo {
		suffix = ".fifo"
		kind["FifoQueue"] = "true"
		kind["ContentBasedDeduplication"] = "false"
	}
	dlqURL, err = createQueue(ctx, client, name+"-dlq"+suffix, kind)
	if err != nil {
		return "", "", err
	}
	dlqAttrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(dlqURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", dlqURL, fmt.Errorf("reading the ARN of %s: %w", dlqURL, err)
	}
	redrive, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": dlqAttrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     strconv.Itoa(maxReceiveCount),
	})
	if err != nil {
		return "", dlqURL, err
	}
	main := map[string]string{"RedrivePolicy": string(redrive)}
	for k, v := range kind {
		main[k] = v
	}
	for k, v := range attrs {
		main[k] = v
	}
	url, err = createQueue(ctx, client, name+suffix, main)
	return url, dlqURL, err
}

func createQueue(ctx context.Context, client *sqs.Client, name string, attrs map[string]string) (string, error) {
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// DeleteQueue deletes a queue.
func DeleteQueue(ctx context.Context, client *sqs.Client, url string) error {
	if _, err := client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
		return fmt.Errorf("deleting queue %s: %w", url, err)
	}
	return nil
}

// CreateBucket creates a bucket.
func CreateBucket(ctx context.Context, client *s3.Client, bucket string) error {
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("creating bucket %s: %w", bucket, err)
	}
	return nil
}

// DeleteBucket deletes a bucket and every object in it.
func DeleteBucket(ctx context.Context, client *s3.Client, bucket string) error {
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing bucket %s: %w", bucket, err)
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
			return fmt.Errorf("emptying bucket %s: %w", bucket, err)
		}
	}
	if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("deleting bucket %s: %w", bucket, err)
	}
	return nil
}

// UploadDir uploads every file under dir to the bucket, each at prefix + its
// slash-separated path relative to dir, replacing what is there, and
// returns how many files it uploaded.
func UploadDir(ctx context.Context, client *s3.Client, bucket, prefix, dir string) (int, error) {
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
		return n, fmt.Errorf("uploading %s to s3://%s/%s: %w", dir, bucket, prefix, err)
	}
	return n, nil
}
