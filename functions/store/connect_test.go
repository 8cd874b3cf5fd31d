package store

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// fakeSecrets speaks just enough of the Secrets Manager JSON protocol for
// GetSecretValue; no emulator we can run here has Secrets Manager.
type fakeSecrets struct {
	mu     sync.Mutex
	secret string
	reads  atomic.Int32
}

func (f *fakeSecrets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" {
		http.Error(w, `{"__type":"InvalidRequestException"}`, http.StatusBadRequest)
		return
	}
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(map[string]any{"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:db", "Name": "db", "SecretString": f.secret})
}

func secretsClient(endpoint string) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

func TestOpenFromRDSSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, err := url.Parse(harness.DatabaseURL(t))
	require.NoError(t, err)
	secret, _ := json.Marshal(map[string]any{"username": u.User.Username(), "password": "unused-with-trust-auth",
		"host": u.Hostname(), "port": u.Port(), "dbname": u.Path[1:], "engine": "postgres"})
	fake := &fakeSecrets{secret: string(secret)}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	st, err := Open(ctx, Config{SecretID: "db", Secrets: secretsClient(srv.URL), SSLMode: "disable"})
	require.NoError(t, err)
	defer st.Close()
	_, err = st.Migrate(ctx)
	require.NoError(t, err)
	var db string
	require.NoError(t, st.Pool().QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, u.Path[1:], db)
	require.Equal(t, int32(1), fake.reads.Load(), "the secret is read once, not per connection")

	// An authentication failure makes the next connection read it again.
	_ = st.noteErr(&pgconn.PgError{Code: "28P01", Message: "password authentication failed"})
	st.Pool().Reset()
	require.NoError(t, st.Pool().QueryRow(ctx, "SELECT 1").Scan(new(int)))
	require.Equal(t, int32(2), fake.reads.Load())
}

func TestOpenRejectsBadSettingsWithoutEchoingSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := Open(ctx, Config{DatabaseURL: "postgres://u:hunter2@host:notaport/db"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")

	_, err = Open(ctx, Config{})
	require.ErrorContains(t, err, "DATABASE_URL or DATABASE_SECRET_ID")

	fake := &fakeSecrets{secret: `not json, password=hunter2`}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	st, err := Open(ctx, Config{SecretID: "db", Secrets: secretsClient(srv.URL), SSLMode: "disable"})
	require.NoError(t, err)
	defer st.Close()
	err = st.Pool().Ping(ctx)
	require.ErrorContains(t, err, "is not the JSON RDS writes")
	require.NotContains(t, err.Error(), "hunter2")
}
