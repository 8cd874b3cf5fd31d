package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
	"github.com/stackseam/stackseam/test/localenv"
)

// openFromSecret opens a store on db through a fake Secrets Manager holding
// db's RDS-format secret.
func openFromSecret(t *testing.T, secret string, cfg Config) (*Store, *harness.SecretsFake) {
	t.Helper()
	fake := harness.NewSecretsFake(t)
	fake.Put("db", secret)
	cfg.SecretID, cfg.Secrets = "db", harness.SecretsClient(fake)
	st, err := Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st, fake
}

// fakePostgres accepts connections on a loopback port until the test ends and serves each in its
// own goroutine, closing it after; it returns the port. It speaks only what a test needs of the
// protocol (the TLS negotiation).
func fakePostgres(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// writeCA writes a new test CA's certificate to a PEM file and returns the CA and the file's path.
func writeCA(t *testing.T, name string) (*localenv.TestCA, string) {
	t.Helper()
	ca, err := localenv.NewTestCA(name)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(file, ca.PEM(), 0o600))
	return ca, file
}

// secretJSON is the JSON of an RDS secret for user app of database app at host:port; port is a
// number or a string of digits, as parsePort takes either.
func secretJSON(t *testing.T, password, host string, port any) string {
	t.Helper()
	secret, err := json.Marshal(map[string]any{"username": "app", "password": password, "host": host,
		"port": port, "dbname": "app"})
	require.NoError(t, err)
	return string(secret)
}

func ping(st *Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return st.Pool().Ping(ctx)
}

// The secret path connects over TLS and verifies the server (verify-full,
// by default), and reads the secret again when the server refuses the
// password, as after a rotation.
func TestOpenFromRDSSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := harness.TLSDatabaseServer(t)
	db := srv.AppDatabase(t)
	st, fake := openFromSecret(t, db.Secret(), Config{SSLRootCert: srv.RootCertPath()})

	_, err := st.Migrate(ctx)
	require.NoError(t, err)
	var name, user string
	var ssl bool
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT current_database(), current_user, ssl FROM pg_stat_ssl
		WHERE pid = pg_backend_pid()`).Scan(&name, &user, &ssl))
	require.Equal(t, db.Name, name)
	require.Equal(t, db.User, user)
	require.True(t, ssl)
	require.Equal(t, 1, fake.Reads("db"), "the secret is read once, not per connection")

	// Rotation: the password changes on the server and in the secret. The
	// first new connection still uses the cached one and is refused; that
	// makes the next read the secret again.
	admin, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	defer admin.Close(ctx)
	rotated := db
	rotated.Password = "rotated-" + localenv.RandomHex(8)
	_, err = admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{db.User}.Sanitize()+" PASSWORD '"+rotated.Password+"'")
	require.NoError(t, err)
	fake.Put("db", rotated.Secret())
	st.Pool().Reset()
	_, err = st.ListStacks(ctx, ListOptions{})
	require.True(t, IsAuthFailure(err), "the cached password is refused: %v", err)
	_, err = st.ListStacks(ctx, ListOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, fake.Reads("db"))
}

// A server whose certificate comes from a CA other than the one trusted is
// refused under verify-full and verify-ca, and so is the test server under
// the default roots (the RDS bundle). The modes that verify accept the
// right CA; require encrypts without verifying; and since the server takes
// no plaintext, disable shows that no mode falls back to it.
func TestOpenVerifiesTheServer(t *testing.T) {
	t.Parallel()
	srv := harness.TLSDatabaseServer(t)
	db := srv.AppDatabase(t)
	_, otherFile := writeCA(t, "another CA")

	for _, tc := range []struct {
		mode, rootCert string
		wantErr        string // "" means it connects
	}{
		{"", srv.RootCertPath(), ""},
		{"verify-full", srv.RootCertPath(), ""},
		{"verify-ca", srv.RootCertPath(), ""},
		{"require", "", ""},
		{"require", srv.RootCertPath(), ""},
		{"", otherFile, "certificate signed by unknown authority"},
		{"verify-full", otherFile, "certificate signed by unknown authority"},
		{"verify-ca", otherFile, "is not signed by a CA of DATABASE_SSLROOTCERT " + otherFile},
		{"require", otherFile, "is not signed by a CA of DATABASE_SSLROOTCERT " + otherFile},
		{"", "", "certificate signed by unknown authority"},
		{"verify-ca", "", "is not signed by a CA of the Amazon RDS CA bundle built in"},
		{"disable", "", "no encryption"},
	} {
		st, _ := openFromSecret(t, db.Secret(), Config{SSLMode: tc.mode, SSLRootCert: tc.rootCert})
		err := ping(st)
		if tc.wantErr == "" {
			require.NoError(t, err, "mode %q, roots %q", tc.mode, tc.rootCert)
		} else {
			require.ErrorContains(t, err, tc.wantErr, "mode %q, roots %q", tc.mode, tc.rootCert)
			require.NotContains(t, err.Error(), db.Password)
		}
	}
}

// verify-full checks the host name in the secret; verify-ca does not. A
// server speaking just PostgreSQL's TLS negotiation, with a certificate for
// another name, tells the two apart: the handshake fails under verify-full
// and completes under verify-ca.
func TestOpenChecksTheHostNameUnderVerifyFull(t *testing.T) {
	t.Parallel()
	ca, caFile := writeCA(t, "host name test CA")
	certPEM, keyPEM, err := ca.Issue("db.other.internal")
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)

	handshakes := make(chan error, 10)
	port := fakePostgres(t, func(conn net.Conn) {
		// SSLRequest is 8 bytes; 'S' says "go on with TLS".
		if _, err := io.ReadFull(conn, make([]byte, 8)); err == nil {
			_, _ = conn.Write([]byte{'S'})
			handshakes <- tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		}
	})
	secret := secretJSON(t, "pw", "localhost", strconv.Itoa(port))

	st, _ := openFromSecret(t, secret, Config{SSLMode: "verify-full", SSLRootCert: caFile})
	require.ErrorContains(t, ping(st), "certificate is valid for db.other.internal, not localhost")
	require.Error(t, <-handshakes)

	st, _ = openFromSecret(t, secret, Config{SSLMode: "verify-ca", SSLRootCert: caFile})
	err = ping(st)
	require.Error(t, err, "the fake server closes after the handshake")
	require.NotContains(t, err.Error(), "certificate")
	require.NoError(t, <-handshakes)
}

func TestOpenRejectsBadSettingsWithoutEchoingSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := Open(ctx, Config{DatabaseURL: "postgres://u:hunter2@host:notaport/db"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "hunter2")

	_, err = Open(ctx, Config{})
	require.ErrorContains(t, err, "DATABASE_URL or DATABASE_SECRET_ID")

	fake := harness.NewSecretsFake(t)
	secrets := harness.SecretsClient(fake)
	// Modes that may fall back to plaintext, and unknown ones, are refused
	// before anything connects.
	for _, mode := range []string{"allow", "prefer"} {
		_, err = Open(ctx, Config{SecretID: "db", Secrets: secrets, SSLMode: mode})
		require.ErrorContains(t, err, "DATABASE_SSLMODE="+mode+" is refused: it may fall back to a plaintext connection")
	}
	_, err = Open(ctx, Config{SecretID: "db", Secrets: secrets, SSLMode: "verify"})
	require.ErrorContains(t, err, `DATABASE_SSLMODE="verify" is not a TLS mode`)
	_, err = Open(ctx, Config{SecretID: "db", Secrets: secrets, SSLRootCert: filepath.Join(t.TempDir(), "missing.pem")})
	require.ErrorContains(t, err, "error reading DATABASE_SSLROOTCERT")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	_, err = Open(ctx, Config{SecretID: "db", Secrets: secrets, SSLRootCert: notPEM})
	require.ErrorContains(t, err, "holds no PEM certificate")

	fake.Put("db", `not json, password=hunter2`)
	st, err := Open(ctx, Config{SecretID: "db", Secrets: secrets, SSLMode: "disable"})
	require.NoError(t, err)
	defer st.Close()
	err = st.Pool().Ping(ctx)
	require.ErrorContains(t, err, "is not the JSON RDS writes")
	require.NotContains(t, err.Error(), "hunter2")
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "u", "DATABASE_SECRET_ID": "s", "DATABASE_SSLMODE": "m", "DATABASE_SSLROOTCERT": "r"}
	cfg := ConfigFromEnv(func(k string) string { return env[k] })
	require.Equal(t, Config{DatabaseURL: "u", SecretID: "s", SSLMode: "m", SSLRootCert: "r"}, cfg)
}

// A server that declines TLS is not spoken to in plaintext: under every mode
// that asks for TLS, the connection fails after the SSLRequest, and nothing
// else (a startup message, the password) is ever sent, on that connection or
// another.
func TestOpenNeverFallsBackToPlaintext(t *testing.T) {
	t.Parallel()
	type seen struct {
		sslRequest bool
		after      int // bytes received after declining TLS
	}
	conns := make(chan seen, 100)
	port := fakePostgres(t, func(conn net.Conn) {
		head := make([]byte, 8)
		if _, err := io.ReadFull(conn, head); err != nil {
			conns <- seen{}
			return
		}
		// SSLRequest: length 8, code 80877103.
		s := seen{sslRequest: string(head) == "\x00\x00\x00\x08\x04\xd2\x16\x2f"}
		if s.sslRequest {
			_, _ = conn.Write([]byte{'N'})
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		s.after = int(n)
		conns <- s
	})
	secret := secretJSON(t, "hunter2", "127.0.0.1", port)
	_, caFile := writeCA(t, "unused CA")

	for _, mode := range []string{"", "verify-full", "verify-ca", "require", "require without a root file"} {
		cfg := Config{SSLMode: mode, SSLRootCert: caFile}
		if mode == "require without a root file" {
			cfg = Config{SSLMode: "require"}
		}
		st, _ := openFromSecret(t, secret, cfg)
		err := ping(st)
		require.ErrorContains(t, err, "server refused TLS connection", "mode %q", mode)
		require.NotContains(t, err.Error(), "hunter2")
		st.Close()
		select {
		case s := <-conns:
			require.True(t, s.sslRequest, "mode %q: the connection starts by asking for TLS", mode)
			require.Zero(t, s.after, "mode %q: nothing is sent once the server declines TLS", mode)
		case <-time.After(30 * time.Second):
			t.Fatalf("mode %q: the fake server saw no connection", mode)
		}
	}
	select {
	case s := <-conns:
		t.Fatalf("a connection beyond one per attempt: %+v", s)
	default:
	}
}
