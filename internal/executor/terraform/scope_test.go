package terraform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/executor/terraform"
	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/harness"
	"github.com/stackseam/stackseam/test/localenv"
)

// newSTSFake is a protocol-level STS (test/localenv), closed at the end of the test.
func newSTSFake(t *testing.T) *localenv.STSFake {
	f := localenv.NewSTSFake()
	t.Cleanup(f.Close)
	return f
}

// only is the one AssumeRole request f received.
func only(t *testing.T, f *localenv.STSFake) map[string]string {
	t.Helper()
	reqs := f.Requests()
	require.Len(t, reqs, 1, "one AssumeRole per run")
	return reqs[0]
}

// scopedRunner is newRunner whose runs assume the Terraform role through fake, with the
// satisfier's own static credentials.
func scopedRunner(t *testing.T, fake *localenv.STSFake, extraEnv ...string) *terraform.Runner {
	r := newRunner(t, extraEnv...)
	r.Scope = &terraform.Scope{
		STS: sts.New(sts.Options{Region: harness.Region, BaseEndpoint: aws.String(fake.URL),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDSATISFIER", "satisfier-secret", "")}),
		RoleARN: "arn:aws:iam::123456789012:role/stackseam-terraform",
	}
	return r
}

// TestScopedRunUsesAssumedCredentials runs a real OpenTofu whose local-exec prints the
// environment variable it is given: what it prints is what Terraform (and its providers) see.
// Its S3 backend (the emulator, which takes any credentials) can sign its requests only with the
// run's credentials endpoint: the process's own are not in Terraform's environment.
func TestScopedRunUsesAssumedCredentials(t *testing.T) {
	t.Parallel()
	fake := newSTSFake(t)
	r := scopedRunner(t, fake)
	task := printenvTask("AWS_CONTAINER_CREDENTIALS_FULL_URI")
	task.TaskRunID = "01JRUN/with:odd chars"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := r.Run(ctx, task)
	require.NoError(t, err)
	log := storedLog(t, r, out.Log)
	require.Regexp(t, `\(local-exec\): http://127\.0\.0\.1:\d+/[0-9a-f]{32}\n`, log, "Terraform is given the run's endpoint")
	require.Contains(t, log, "stackseam: Terraform runs as arn:aws:iam::123456789012:role/stackseam-terraform (session tf-01JRUN_with_odd_chars)")
	m := regexp.MustCompile(`stackseam: Terraform's credentials endpoint answered (\d+) request\(s\)`).FindStringSubmatch(log)
	require.NotNil(t, m, log)
	n, _ := strconv.Atoi(m[1])
	require.Positive(t, n, "the S3 backend and the provider took their credentials from the endpoint")

	req := only(t, fake)
	require.Equal(t, "arn:aws:iam::123456789012:role/stackseam-terraform", req["RoleArn"])
	require.Equal(t, "tf-01JRUN_with_odd_chars", req["RoleSessionName"])
	// Ten minutes of run, the five-second stop grace and a minute: at least STS's 15 minutes.
	require.Equal(t, "900", req["DurationSeconds"])
	want, err := terraform.SessionPolicy("aws", "m", r.Bucket)
	require.NoError(t, err)
	require.JSONEq(t, want, req["Policy"])
}

// No static credentials reach Terraform: printenv of the access key fails the run, as the
// variable is not set.
func TestScopedRunHasNoStaticCredentials(t *testing.T) {
	t.Parallel()
	fake := newSTSFake(t)
	r := scopedRunner(t, fake, "AWS_SESSION_TOKEN=process-session-token-0123456789")
	for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"} {
		out, err := r.Run(context.Background(), printenvTask(name))
		require.Error(t, err, name)
		log := storedLog(t, r, out.Log)
		require.Contains(t, log, "local-exec provisioner error", name)
		require.NotContains(t, log, fake.AccessKeyID)
	}
}

func TestScopedRunMasksAssumedSecrets(t *testing.T) {
	t.Parallel()
	fake := newSTSFake(t)
	r := scopedRunner(t, fake)
	task := printenvTask("AWS_CONTAINER_AUTHORIZATION_TOKEN")
	out, err := r.Run(context.Background(), task)
	require.NoError(t, err)
	log := storedLog(t, r, out.Log)
	require.NotContains(t, log, fake.SessionToken)
	require.NotContains(t, log, fake.SecretAccessKey)
	require.Contains(t, log, "(local-exec): [redacted:AWS_CONTAINER_AUTHORIZATION_TOKEN]", "Terraform printed the endpoint's token, and it was masked")
}

func TestScopedRunFailsWhenTheRoleCannotBeAssumed(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error></ErrorResponse>`)
	}))
	defer srv.Close()
	r.Scope = &terraform.Scope{STS: sts.New(sts.Options{Region: harness.Region, BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}), RoleARN: "arn:aws:iam::1:role/tf"}
	_, err := r.Run(context.Background(), printenvTask("HOME"))
	require.ErrorContains(t, err, "error assuming the Terraform role arn:aws:iam::1:role/tf for machine m")
	require.ErrorContains(t, err, "AccessDenied")
}

// policy is the part of a session policy the tests read.
type policy struct {
	Statement []struct {
		Sid         string
		Effect      string
		Action      any
		Resource    any
		NotResource []string
		Condition   map[string]map[string][]string
	}
}

func TestSessionPolicyStatements(t *testing.T) {
	t.Parallel()
	text, err := terraform.SessionPolicy("aws", "a", "stackseam-bucket")
	require.NoError(t, err)
	var p policy
	require.NoError(t, json.Unmarshal([]byte(text), &p))
	require.Len(t, p.Statement, 3)
	out, own, list := p.Statement[0], p.Statement[1], p.Statement[2]
	require.Equal(t, "*", out.Action)
	require.Equal(t, []string{"arn:aws:s3:::stackseam-bucket", "arn:aws:s3:::stackseam-bucket/*"}, out.NotResource,
		"everything the role allows, except the bucket")
	require.Equal(t, []any{"arn:aws:s3:::stackseam-bucket/a/*"}, own.Resource, "machine a's objects only")
	require.Equal(t, []any{"arn:aws:s3:::stackseam-bucket"}, list.Resource)
	require.Equal(t, []string{"a/*", "env:/*"}, list.Condition["StringLike"]["s3:prefix"])
	for _, st := range p.Statement {
		require.Equal(t, "Allow", st.Effect)
		// Nothing the policy allows reaches another machine's objects: b/..., or a prefix of a's
		// name that another machine could start with (machine "ab" under a*).
		require.NotContains(t, fmt.Sprint(st.Resource), "stackseam-bucket/*")
		require.NotContains(t, fmt.Sprint(st.Resource), "stackseam-bucket/a*")
	}

	// Another partition, and the script's own state bucket scoped the same way.
	text, err = terraform.SessionPolicy("aws-cn", "b", "one", "two")
	require.NoError(t, err)
	require.Contains(t, text, `"Resource":["arn:aws-cn:s3:::one/b/*","arn:aws-cn:s3:::two/b/*"]`)
	require.NotContains(t, text, "/a/")

	for _, bad := range []string{"", "a/b", "a*"} {
		_, err := terraform.SessionPolicy("aws", bad, "bucket")
		require.Error(t, err, "machine %q", bad)
	}
}

func TestSessionPolicyFitsForTheLongestNames(t *testing.T) {
	t.Parallel()
	// The longest machine name (message.MachineNamePattern: 128 characters) and two buckets of
	// S3's longest name (63), in the longest partition.
	machine := "m" + strings.Repeat("x.-_", 127/4) + strings.Repeat("y", 127%4)
	require.Len(t, machine, 128)
	require.True(t, message.MachineNamePattern.MatchString(machine))
	b1, b2 := strings.Repeat("a", 63), strings.Repeat("b", 63)
	text, err := terraform.SessionPolicy("aws-iso-b", machine, b1, b2)
	require.NoError(t, err)
	require.Less(t, len(text), 2048, "STS's session policy limit, before packing: %d", len(text))
	t.Logf("longest session policy: %d characters", len(text))
}

func TestSessionNameAndDuration(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tf-abc_def", terraform.SessionName("abc def"))
	long := terraform.SessionName(strings.Repeat("r", 100))
	require.Len(t, long, 64)
	require.Equal(t, "tf-a+=,.@-_", terraform.SessionName("a+=,.@-_"))

	bg := context.Background()
	require.Equal(t, time.Hour, terraform.SessionDuration(bg, 15*time.Second, time.Hour), "no deadline: the longest")
	ctx, cancel := context.WithTimeout(bg, 3*time.Hour)
	defer cancel()
	d := terraform.SessionDuration(ctx, 15*time.Second, 12*time.Hour)
	require.True(t, d > 3*time.Hour && d <= 3*time.Hour+76*time.Second, strconv.Itoa(int(d.Seconds())))
	require.Equal(t, time.Hour, terraform.SessionDuration(ctx, 15*time.Second, time.Hour), "capped at the chained-role hour")
}

// A build's run asks for its whole time; when STS refuses that for role chaining, the run gets
// the chained-role hour, renewed by the endpoint before it ends, and its log says so.
func TestScopedLongRunFallsBackToTheChainedHour(t *testing.T) {
	t.Parallel()
	fake := newSTSFake(t)
	fake.Chained = true
	r := scopedRunner(t, fake)
	r.Scope.MaxDuration = terraform.MaxSession
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	out, err := r.Run(ctx, printenvTask("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
	require.NoError(t, err)
	reqs := fake.Requests()
	require.Len(t, reqs, 2)
	first, _ := strconv.Atoi(reqs[0]["DurationSeconds"])
	second := reqs[1]["DurationSeconds"]
	require.Greater(t, first, 3*3600, "the whole run's time first")
	require.Equal(t, "3600", second)
	log := storedLog(t, r, out.Log)
	require.Contains(t, log, "less than the run's time: they are renewed 5m0s before they end")
	require.Contains(t, log, "(local-exec): http://127.0.0.1:")
}
