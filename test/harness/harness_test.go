package harness_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const helloPkg = "./test/harness/testdata/hello"

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// The sequential tests run before every parallel one starts, so stopping
// the shared server here cannot disturb them.
func TestRestartDatabase(t *testing.T) {
	if os.Getenv("STACKSEAM_TEST_DATABASE_URL") != "" {
		// Not ours to stop: the harness must refuse, loudly.
		msg := fatalMessage(func(tb testing.TB) { harness.RestartDatabase(tb, 0) })
		require.Contains(t, msg, "STACKSEAM_TEST_DATABASE_URL")
		return
	}
	ctx := context.Background()
	url := harness.DatabaseURL(t)
	conn := connect(t, url)
	_, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)

	start := time.Now()
	harness.RestartDatabase(t, 300*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)

	// The old connection died with the server; a new one on the same URL
	// sees the data, since the data directory survived.
	require.Error(t, conn.Ping(ctx))
	conn = connect(t, url)
	var v int
	require.NoError(t, conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, 42, v)

	harness.StopDatabase(t)
	_, err = pgx.Connect(ctx, url)
	require.Error(t, err, "the server should be down")
	harness.StartDatabase(t)
	conn = connect(t, url)
	require.NoError(t, conn.Ping(ctx))
	// DatabaseURL keeps working after a restart (the admin connection
	// reconnects).
	require.NotEmpty(t, harness.DatabaseURL(t))
}

// fatalTB records the message of a Fatal call instead of failing the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...); runtime.Goexit() }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalMessage runs fn and returns what it passed to Fatal or Fatalf.
func fatalMessage(fn func(testing.TB)) string {
	tb := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tb)
	}()
	<-done
	return tb.msg
}

func TestStopDatabaseIsUndoneAtTestEnd(t *testing.T) {
	if os.Getenv("STACKSEAM_TEST_DATABASE_URL") != "" {
		msg := fatalMessage(harness.StopDatabase)
		require.Contains(t, msg, "STACKSEAM_TEST_DATABASE_URL")
		return
	}
	t.Run("stop", func(t *testing.T) {
		harness.StopDatabase(t)
	})
	conn := connect(t, harness.DatabaseURL(t))
	require.NoError(t, conn.Ping(context.Background()))
}

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url1, url2 := harness.DatabaseURL(t), harness.DatabaseURL(t)
	require.NotEqual(t, url1, url2)
	require.True(t, strings.HasPrefix(url1, "postgres://"), url1)

	c1 := connect(t, url1)
	_, err := c1.Exec(ctx, "CREATE TABLE things (id serial PRIMARY KEY, name text NOT NULL)")
	require.NoError(t, err)
	_, err = c1.Exec(ctx, "INSERT INTO things (name) VALUES ($1)", "one")
	require.NoError(t, err)
	var name string
	require.NoError(t, c1.QueryRow(ctx, "SELECT name FROM things WHERE id = 1").Scan(&name))
	require.Equal(t, "one", name)

	// The second database is a different, empty one.
	c2 := connect(t, url2)
	var n int
	require.NoError(t, c2.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'things'").Scan(&n))
	require.Zero(t, n)

	if os.Getenv("STACKSEAM_TEST_DATABASE_URL") == "" {
		// The harness's own server leaves room for many pools at once.
		var maxConns int
		require.NoError(t, c2.QueryRow(ctx, "SELECT current_setting('max_connections')::int").Scan(&maxConns))
		require.Equal(t, 300, maxConns)
	}
}

func TestDatabaseURLConcurrent(t *testing.T) {
	t.Parallel()
	for i := range 16 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, harness.DatabaseURL(t))
			var one int
			require.NoError(t, conn.QueryRow(context.Background(), "SELECT 1").Scan(&one))
			require.Equal(t, 1, one)
		})
	}
}

func TestNewDatabaseServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := harness.NewDatabaseServer(t)
	url := srv.DatabaseURL(t)
	require.Contains(t, url, fmt.Sprintf(":%d/", srv.Port()))
	conn := connect(t, url)
	_, err := conn.Exec(ctx, "CREATE TABLE t (v int)")
	require.NoError(t, err)

	srv.Restart(t, 0)
	conn = connect(t, url)
	_, err = conn.Exec(ctx, "INSERT INTO t VALUES (1)")
	require.NoError(t, err)
}

func TestFIFOQueueWithDeadLetterQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := harness.SQSClient(t)
	url, dlqURL := harness.CreateQueueWithAttributes(t, "events", true, 1, map[string]string{"VisibilityTimeout": "1"})
	require.True(t, strings.HasSuffix(url, ".fifo"), url)
	require.True(t, strings.HasSuffix(dlqURL, ".fifo"), dlqURL)
	require.True(t, strings.HasPrefix(url, harness.AWSEndpoint(t)+"/"), "queue URLs must use the endpoint's host: %s", url)

	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	require.Equal(t, "true", attrs.Attributes["FifoQueue"])
	require.Equal(t, "false", attrs.Attributes["ContentBasedDeduplication"])
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     any    `json:"maxReceiveCount"`
	}
	require.NoError(t, json.Unmarshal([]byte(attrs.Attributes["RedrivePolicy"]), &redrive))
	require.Equal(t, "1", fmt.Sprint(redrive.MaxReceiveCount))
	dlqAttrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(dlqURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	require.NoError(t, err)
	require.Equal(t, dlqAttrs.Attributes["QueueArn"], redrive.DeadLetterTargetArn)

	send := func(body, dedup string) {
		_, err := client.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:               aws.String(url),
			MessageBody:            aws.String(body),
			MessageGroupId:         aws.String("stack-1"),
			MessageDeduplicationId: aws.String(dedup),
		})
		require.NoError(t, err)
	}
	send("first", "d1")
	send("first again", "d1") // same deduplication id: dropped
	send("second", "d2")

	receive := func(queue string) []sqstypes.Message {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(queue),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     1,
		})
		require.NoError(t, err)
		return out.Messages
	}
	msgs := receive(url)
	require.NotEmpty(t, msgs)
	require.Equal(t, "first", aws.ToString(msgs[0].Body))
	// Acknowledge "first"; leave "second" unacknowledged so that its second
	// receive exceeds maxReceiveCount = 1 and it moves to the DLQ.
	_, err = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: msgs[0].ReceiptHandle})
	require.NoError(t, err)
	if len(msgs) == 1 {
		msgs = receive(url)
		require.Len(t, msgs, 1)
		require.Equal(t, "second", aws.ToString(msgs[0].Body))
	} else {
		require.Len(t, msgs, 2)
		require.Equal(t, "second", aws.ToString(msgs[1].Body))
	}

	var dead []sqstypes.Message
	require.Eventually(t, func() bool {
		require.Empty(t, receive(url), "nothing may be delivered a second time from the main queue")
		dead = receive(dlqURL)
		return len(dead) > 0
	}, 15*time.Second, 100*time.Millisecond)
	require.Equal(t, "second", aws.ToString(dead[0].Body))
}

func TestStandardQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := harness.SQSClient(t)
	url, dlqURL := harness.CreateQueue(t, "tasks", false, 3)
	require.False(t, strings.HasSuffix(url, ".fifo"))
	require.NotEqual(t, url, dlqURL)

	_, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("task")})
	require.NoError(t, err)
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 2})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	require.Equal(t, "task", aws.ToString(out.Messages[0].Body))
	_, err = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle})
	require.NoError(t, err)
}

func TestBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := harness.S3Client(t)
	bucket := harness.CreateBucket(t, "Stack_Seam machines")
	require.Regexp(t, `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`, bucket)

	for _, key := range []string{"machines/a.yml", "machines/b.yml", "logs/x.log"} {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("content of " + key),
		})
		require.NoError(t, err)
	}
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("machines/b.yml")})
	require.NoError(t, err)
	body, err := io.ReadAll(got.Body)
	require.NoError(t, err)
	require.NoError(t, got.Body.Close())
	require.Equal(t, "content of machines/b.yml", string(body))

	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("machines/")})
	require.NoError(t, err)
	var keys []string
	for _, obj := range list.Contents {
		keys = append(keys, aws.ToString(obj.Key))
	}
	require.Equal(t, []string{"machines/a.yml", "machines/b.yml"}, keys)
}

func TestAWSEnv(t *testing.T) {
	t.Parallel()
	env := strings.Join(harness.AWSEnv(t), "\n")
	for _, want := range []string{
		"AWS_ENDPOINT_URL=" + harness.AWSEndpoint(t),
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=",
		"AWS_SECRET_ACCESS_KEY=",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=",
		"AWS_SHARED_CREDENTIALS_FILE=",
	} {
		require.Contains(t, env, want)
	}
}

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	root := harness.RepoRoot(t)
	_, err := os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "test", "harness", "harness.go"))
	require.NoError(t, err)
}

func TestBuildBinaryIsCached(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	paths := make([]string, 4)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i] = harness.BuildBinary(t, helloPkg)
		}()
	}
	wg.Wait()
	for _, p := range paths {
		require.Equal(t, paths[0], p)
	}
	info, err := os.Stat(paths[0])
	require.NoError(t, err)
	require.NotZero(t, info.Mode()&0o111, "the binary must be executable")
}

func TestStartProcessStop(t *testing.T) {
	t.Parallel()
	bin := harness.BuildBinary(t, helloPkg)
	p := harness.StartProcess(t, bin, []string{"HELLO_VALUE=42"}, "a", "b")
	p.WaitForOutput(t, "ready", 30*time.Second)
	require.Positive(t, p.Pid())
	require.False(t, p.Exited())
	require.NoError(t, p.Stop(), "a clean SIGTERM shutdown is not an error")
	require.Equal(t, 0, p.ExitCode())
	out := p.Output()
	require.Contains(t, out, "args=[a b]")
	require.Contains(t, out, "HELLO_VALUE=42")
	require.Contains(t, out, "to stderr")
	require.Contains(t, out, "bye")
}

func TestStartProcessEnvIsMinimal(t *testing.T) {
	t.Setenv("HELLO_VALUE", "from the test process")
	bin := harness.BuildBinary(t, helloPkg)
	p := harness.StartProcess(t, bin, nil, "-exit", "3")
	require.Error(t, p.Wait())
	require.Equal(t, 3, p.ExitCode())
	require.Contains(t, p.Output(), "HELLO_VALUE=\n")
}

func TestStartProcessKill(t *testing.T) {
	t.Parallel()
	bin := harness.BuildBinary(t, helloPkg)
	p := harness.StartProcess(t, bin, nil, "-ignore-term")
	p.WaitForOutput(t, "ready", 30*time.Second)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	p.WaitForOutput(t, "ignoring SIGTERM", 10*time.Second)
	require.False(t, p.Exited())
	require.NoError(t, p.Kill())
	require.True(t, p.Exited())
	require.Equal(t, -1, p.ExitCode(), "killed by a signal")
	require.Error(t, p.Wait())
}

// A child process reaches the emulator with only AWSEnv, through the SDK's
// default configuration, as the real binaries will.
func TestChildProcessUsesAWSEnv(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, _ := harness.CreateQueue(t, "from-child", false, 1)
	bin := harness.BuildBinary(t, helloPkg)
	p := harness.StartProcess(t, bin, harness.AWSEnv(t), "-send", url)
	p.WaitForOutput(t, "sent", 30*time.Second)

	out, err := harness.SQSClient(t).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 2})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	require.Equal(t, "from hello", aws.ToString(out.Messages[0].Body))
}

// The production-shaped server takes TLS connections that verify it, with a
// password, and nothing else: no plaintext, no other CA, no wrong password.
// It is durable.
func TestTLSDatabaseServer(t *testing.T) {
	t.Parallel()
	srv := harness.TLSDatabaseServer(t)
	require.FileExists(t, srv.RootCertPath())
	require.Same(t, srv, harness.TLSDatabaseServer(t), "one shared server per process")
	db := srv.AppDatabase(t)
	ctx := context.Background()

	appURL := fmt.Sprintf("postgres://%s:%s@%s:%s/%s?sslmode=verify-full&sslrootcert=%s",
		db.User, db.Password, db.Host, db.Port, db.Name, srv.RootCertPath())
	conn := connect(t, appURL)
	var ssl bool
	var version, fsync, syncCommit string
	require.NoError(t, conn.QueryRow(ctx, `SELECT ssl, version, current_setting('fsync'), current_setting('synchronous_commit')
		FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &version, &fsync, &syncCommit))
	require.True(t, ssl)
	require.Contains(t, []string{"TLSv1.2", "TLSv1.3"}, version)
	require.Equal(t, "on", fsync)
	require.Equal(t, "on", syncCommit)
	var owner string
	require.NoError(t, conn.QueryRow(ctx, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()`).Scan(&owner))
	require.Equal(t, db.User, owner)

	var secret map[string]any
	require.NoError(t, json.Unmarshal([]byte(db.Secret()), &secret))
	require.Equal(t, db.User, secret["username"])
	require.Equal(t, db.Name, secret["dbname"])

	refused := func(url, why string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			_ = c.Close(ctx)
		}
		require.ErrorContains(t, err, why, url)
	}
	plain := fmt.Sprintf("postgres://%s:%s@%s:%s/%s?sslmode=disable", db.User, db.Password, db.Host, db.Port, db.Name)
	refused(plain, "no encryption")
	other := harness.NewDatabaseServer(t, harness.TLSOnly()) // another CA
	refused(strings.Replace(appURL, srv.RootCertPath(), other.RootCertPath(), 1), "certificate signed by unknown authority")
	refused(strings.Replace(appURL, db.Password, "wrong", 1), "password authentication failed")
}
