package harness

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stackseam/stackseam/test/localenv"
)

const envDatabaseURL = "STACKSEAM_TEST_DATABASE_URL"

// DatabaseServer is a PostgreSQL server on which the harness creates test
// databases: one the harness started (Stop, Start and Restart work on it) or
// the one named by STACKSEAM_TEST_DATABASE_URL.
type DatabaseServer struct {
	pg     *localenv.Postgres
	shared bool // the process-wide server behind DatabaseURL
}

// sharedServer is a server of the whole test process: the first call of get starts it, Main
// stops it. A failed start is not tried again.
type sharedServer struct {
	mu  sync.Mutex
	srv *DatabaseServer
	err error
}

// sharedDB is the server behind DatabaseURL, sharedTLS the one of TLSDatabaseServer.
var sharedDB, sharedTLS sharedServer

// get returns the server, starting it with start on the first call.
func (s *sharedServer) get(t testing.TB, start func() (*localenv.Postgres, error)) *DatabaseServer {
	t.Helper()
	requireMain(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil && s.err == nil {
		pg, err := start()
		s.err = err
		if pg != nil {
			s.srv = &DatabaseServer{pg: pg, shared: true}
			atExit(func() {
				pg.Shutdown()
				s.mu.Lock()
				s.srv, s.err = nil, nil
				s.mu.Unlock()
			})
		}
	}
	if s.err != nil {
		t.Fatalf("harness: %v", s.err)
	}
	return s.srv
}

// PostgresOption changes how a server is set up: TLSOnly, Durable.
type PostgresOption = localenv.PostgresOption

// TLSOnly makes a server accept TCP connections over TLS only, like RDS with
// rds.force_ssl=1, with a certificate from a CA of its own (see
// DatabaseServer.RootCertPath) and password authentication.
func TLSOnly() PostgresOption { return localenv.TLSOnly() }

// Durable turns fsync and synchronous_commit on, as RDS runs.
func Durable() PostgresOption { return localenv.Durable() }

// AppDatabase is a database with a login role of its own that owns it (see
// localenv.AppDatabase); Secret() is its RDS-format secret.
type AppDatabase = localenv.AppDatabase

// TLSDatabaseServer returns the test process's shared production-shaped
// server: TLS-only and durable, like RDS with rds.force_ssl=1 (see TLSOnly
// and Durable). The first call starts it; Main stops it. It is always one the
// harness started, whatever STACKSEAM_TEST_DATABASE_URL says, since that
// server need not be TLS-only. See StopDatabase for why a test that stops it
// should not be parallel.
func TLSDatabaseServer(t testing.TB) *DatabaseServer {
	t.Helper()
	return sharedTLS.get(t, func() (*localenv.Postgres, error) {
		return localenv.StartPostgres(workDir(t), "tls", localenv.TLSOnly(), localenv.Durable())
	})
}

// DatabaseURL returns the URL of a fresh, empty database (a new one per call,
// dropped at the end of the test) on a server shared by the test process. If
// STACKSEAM_TEST_DATABASE_URL is set, the databases are created on that
// server; otherwise the first call starts a throwaway PostgreSQL cluster that
// Main stops.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	return sharedDatabase(t).DatabaseURL(t)
}

// StopDatabase stops the shared database server (fast shutdown: clients are
// disconnected). Every database handed out by DatabaseURL goes away with it,
// so call it from a test that is not parallel: parallel tests only resume
// once the sequential ones have finished. The server is started again at the
// end of the test if StartDatabase was not called. It fails the test when
// STACKSEAM_TEST_DATABASE_URL is set, since that server is not ours to stop.
func StopDatabase(t testing.TB) {
	t.Helper()
	sharedDatabase(t).Stop(t)
}

// StartDatabase starts the shared database server again after StopDatabase,
// on the same port and data directory, so earlier URLs work again.
func StartDatabase(t testing.TB) {
	t.Helper()
	sharedDatabase(t).Start(t)
}

// RestartDatabase stops the shared database server, waits down, and starts
// it again on the same port and data directory: the "database goes away"
// case. Calls to DatabaseURL meanwhile wait for it. See StopDatabase for why
// the calling test should not be parallel; NewDatabaseServer gives a test a
// server of its own instead.
func RestartDatabase(t testing.TB, down time.Duration) {
	t.Helper()
	sharedDatabase(t).Restart(t, down)
}

// NewDatabaseServer starts a PostgreSQL server for this test alone, which is
// stopped and deleted when the test ends. Use it to stop or restart a server
// while other tests run in parallel. It always starts a server, even when
// STACKSEAM_TEST_DATABASE_URL is set. Options make it TLS-only or durable.
func NewDatabaseServer(t testing.TB, opts ...PostgresOption) *DatabaseServer {
	t.Helper()
	pg, err := localenv.StartPostgres(workDir(t), "private", opts...)
	failOn(t, err)
	t.Cleanup(func() {
		pg.Shutdown()
		if err := os.RemoveAll(pg.Dir()); err != nil {
			t.Logf("harness: removing %s: %v", pg.Dir(), err)
		}
	})
	return &DatabaseServer{pg: pg}
}

func sharedDatabase(t testing.TB) *DatabaseServer {
	t.Helper()
	return sharedDB.get(t, func() (*localenv.Postgres, error) {
		if raw := os.Getenv(envDatabaseURL); raw != "" {
			pg, err := localenv.ExternalPostgres(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", envDatabaseURL, err)
			}
			return pg, nil
		}
		pg, err := localenv.StartPostgres(workDir(t), "shared")
		if err != nil {
			return nil, fmt.Errorf("%w (or point %s at a running server)", err, envDatabaseURL)
		}
		return pg, nil
	})
}

// DatabaseURL creates a fresh, empty database on s, dropped at the end of
// the test, and returns its URL.
func (s *DatabaseServer) DatabaseURL(t testing.TB) string {
	t.Helper()
	name := localenv.DatabaseName(t.Name())
	url, err := s.pg.CreateDatabase(name)
	failOn(t, err)
	t.Cleanup(func() {
		// Failures are only logged since the whole cluster is thrown away
		// anyway.
		if err := s.pg.DropDatabase(name); err != nil {
			t.Logf("harness: %v", err)
		}
	})
	return url
}

// AppDatabase creates a fresh, empty database on s with a login role of its
// own that owns it, both dropped at the end of the test. Give the
// application its Secret(); URL is the superuser's, for the test's checks.
func (s *DatabaseServer) AppDatabase(t testing.TB) AppDatabase {
	t.Helper()
	name := localenv.DatabaseName(t.Name())
	db, err := s.pg.CreateAppDatabase(name)
	t.Cleanup(func() {
		if err := s.pg.DropDatabase(name); err != nil {
			t.Logf("harness: %v", err)
		}
	})
	failOn(t, err)
	return db
}

// RootCertPath returns the PEM file of the CA a TLS-only server's
// certificate comes from ("" for other servers): what clients trust.
func (s *DatabaseServer) RootCertPath() string { return s.pg.RootCertPath() }

// AdminURL returns the URL of the server's maintenance database as the
// superuser.
func (s *DatabaseServer) AdminURL() string { return s.pg.AdminURL() }

// Port returns the TCP port the server listens on (0 for an external one).
func (s *DatabaseServer) Port() int { return s.pg.Port() }

// Stop stops the server (fast shutdown). See StopDatabase.
func (s *DatabaseServer) Stop(t testing.TB) {
	t.Helper()
	s.requireManaged(t, "Stop")
	if wasStopped := s.pg.Stop(); s.shared && !wasStopped {
		// The shared server must be up for the tests that follow.
		t.Cleanup(func() {
			if s.pg.Stopped() {
				if err := s.pg.Start(); err != nil {
					t.Errorf("harness: restarting the database server after the test: %v", err)
				}
			}
		})
	}
}

// Start starts a stopped server again on the same port and data directory.
func (s *DatabaseServer) Start(t testing.TB) {
	t.Helper()
	s.requireManaged(t, "Start")
	if err := s.pg.Start(); err != nil {
		t.Fatalf("harness: restarting the database server: %v", err)
	}
}

// Restart stops the server, waits down and starts it again on the same port
// and data directory. Admin calls (such as DatabaseURL) wait meanwhile.
func (s *DatabaseServer) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	s.requireManaged(t, "Restart")
	if err := s.pg.Restart(down); err != nil {
		t.Fatalf("harness: restarting the database server: %v", err)
	}
}

func (s *DatabaseServer) requireManaged(t testing.TB, what string) {
	t.Helper()
	if !s.pg.Managed() {
		t.Fatalf("harness: %s needs a database server the harness started, but %s points at an external one; "+
			"unset it or use NewDatabaseServer", what, envDatabaseURL)
	}
}
