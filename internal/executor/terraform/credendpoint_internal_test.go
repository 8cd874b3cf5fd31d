package terraform

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/message"
	"github.com/stackseam/stackseam/test/localenv"
)

// get asks e for credentials with the authorization header auth ("" for none).
func get(t *testing.T, e *Endpoint, auth string) (int, credentialsResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.URL, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var c credentialsResponse
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(body, &c), string(body))
	}
	return resp.StatusCode, c
}

func TestCredentialsEndpointServesAndRenewsTheSession(t *testing.T) {
	t.Parallel()
	fake := localenv.NewSTSFake()
	t.Cleanup(fake.Close)
	s := &Scope{
		STS: sts.New(sts.Options{Region: "eu-west-1", BaseEndpoint: aws.String(fake.URL),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDSATISFIER", "satisfier-secret", "")}),
		RoleARN: "arn:aws:iam::123456789012:role/stackseam-terraform",
		// Longer than the fake's 15-minute sessions: every request finds the session about to end,
		// as a request does in a real run once the session is within the window of its end.
		ExpiryWindow: 16 * time.Minute,
	}
	task := message.Task{TaskRunID: "run-1"}
	task.Stack.Machine = "m"
	var seen []aws.Credentials
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, note, err := s.endpoint(ctx, task, []string{"bucket"}, 5*time.Second, func(c aws.Credentials) { seen = append(seen, c) })
	require.NoError(t, err)
	defer e.Close()
	require.Empty(t, note, "a ten-minute run fits in one session")
	require.Len(t, fake.Requests(), 1, "the role is assumed before Terraform starts")
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/[0-9a-f]{32}$`, e.URL)
	require.Len(t, e.Token, 64, "32 random bytes")

	for _, auth := range []string{"", "wrong", e.Token + "x", e.Token[:63]} {
		code, _ := get(t, e, auth)
		require.Equal(t, http.StatusUnauthorized, code, "token %q", auth)
	}
	require.Len(t, fake.Requests(), 1, "a refused request assumes nothing")

	code, c := get(t, e, e.Token)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, fake.AccessKeyID, c.AccessKeyID)
	require.Equal(t, fake.SecretAccessKey, c.SecretAccessKey)
	require.Equal(t, fake.SessionToken, c.Token)
	exp, err := time.Parse(time.RFC3339, c.Expiration)
	require.NoError(t, err)
	// The session's end less the window, so that Terraform's SDK comes back when the cache renews.
	require.True(t, exp.Add(16*time.Minute).After(time.Now().Add(10*time.Minute)), "the fake's 15-minute session: %s", c.Expiration)
	require.True(t, exp.Add(16*time.Minute).Before(time.Now().Add(16*time.Minute)), "less the window: %s", c.Expiration)

	// The next session's credentials, once the first is within the window of its end.
	fake.SetAccessKeyID("ASIASTACKSEAMSECOND01")
	code, c = get(t, e, e.Token)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ASIASTACKSEAMSECOND01", c.AccessKeyID)
	reqs := fake.Requests()
	require.GreaterOrEqual(t, len(reqs), 3, "the role assumed again for each renewal")
	for _, r := range reqs {
		require.Equal(t, "tf-run-1", r["RoleSessionName"])
		require.NotEmpty(t, r["Policy"], "every session has the run's session policy")
	}
	require.Len(t, seen, len(reqs), "each session's secrets are handed over for masking")
	require.EqualValues(t, 2, e.Served())

	// The AWS SDK's own container-credentials client, as Terraform's SDK uses it.
	p := endpointcreds.New(e.URL, func(o *endpointcreds.Options) { o.AuthorizationToken = e.Token })
	got, err := p.Retrieve(context.Background())
	require.NoError(t, err)
	require.Equal(t, "ASIASTACKSEAMSECOND01", got.AccessKeyID)
	require.True(t, got.CanExpire)

	e.Close()
	_, err = http.Get(e.URL)
	require.Error(t, err, "closed when the run ends")
}

// A run longer than STS grants a chained role's session gets the hour, renewed: the log says so.
func TestCredentialsEndpointFallsBackToTheChainedHour(t *testing.T) {
	t.Parallel()
	fake := localenv.NewSTSFake()
	t.Cleanup(fake.Close)
	fake.Chained = true
	s := &Scope{STS: sts.New(sts.Options{Region: "eu-west-1", BaseEndpoint: aws.String(fake.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}),
		RoleARN: "arn:aws:iam::1:role/tf", MaxDuration: MaxSession}
	task := message.Task{TaskRunID: "r"}
	task.Stack.Machine = "m"
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Hour)
	defer cancel()
	e, note, err := s.endpoint(ctx, task, []string{"bucket"}, 5*time.Second, nil)
	require.NoError(t, err)
	defer e.Close()
	require.Contains(t, note, "less than the run's time: they are renewed 5m0s before they end")
	reqs := fake.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "3600", reqs[1]["DurationSeconds"])
}
