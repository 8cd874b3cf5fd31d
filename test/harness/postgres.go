package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	envDatabaseURL = "STACKSEAM_TEST_DATABASE_URL"
	envPGBinDir    = "STACKSEAM_TEST_PG_BINDIR"

	// pgStartTimeout bounds how long a server may take to accept
	// connections; crash recovery after an immediate stop is the slow case.
	pgStartTimeout = 60 * time.Second
	// pgStopTimeout bounds a fast shutdown before the server is killed.
	pgStopTimeout = 30 * time.Second
)

// DatabaseServer is a PostgreSQL server on which the harness creates test
// databases: one the harness started (Stop, Start and Restart work on it) or
// the one named by STACKSEAM_TEST_DATABASE_URL.
type DatabaseServer struct {
	baseURL url.URL // the maintenance database; test databases swap the path
	managed bool    // the harness started it and may stop it
	shared  bool    // the process-wide server behind DatabaseURL

	// Set only when managed.
	binDir  string
	dir     string // holds data/ and the Unix socket; owned by the server's user
	dataDir string
	port    int
	cred    *syscall.Credential // who the server runs as when we are root

	mu      sync.Mutex // serialises admin statements, Stop and Start
	proc    *pgProcess // nil while stopped
	admin   *pgx.Conn  // on the maintenance database; nil until needed
	stopped bool       // Stop was called and Start was not
}

type pgProcess struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *tailBuffer
}

var (
	sharedDBMu  sync.Mutex
	sharedDB    *DatabaseServer
	sharedDBErr error
)

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
// STACKSEAM_TEST_DATABASE_URL is set.
func NewDatabaseServer(t testing.TB) *DatabaseServer {
	t.Helper()
	s, err := startDatabaseServer(workDir(t), "private")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() {
		s.shutdown()
		if err := os.RemoveAll(s.dir); err != nil {
			t.Logf("harness: removing %s: %v", s.dir, err)
		}
	})
	return s
}

func sharedDatabase(t testing.TB) *DatabaseServer {
	t.Helper()
	requireMain(t)
	sharedDBMu.Lock()
	defer sharedDBMu.Unlock()
	if sharedDB == nil && sharedDBErr == nil {
		if raw := os.Getenv(envDatabaseURL); raw != "" {
			sharedDB, sharedDBErr = externalDatabaseServer(raw)
		} else {
			sharedDB, sharedDBErr = startDatabaseServer(workDir(t), "shared")
		}
		if sharedDB != nil {
			sharedDB.shared = true
			s := sharedDB
			atExit(func() {
				s.shutdown()
				sharedDBMu.Lock()
				sharedDB, sharedDBErr = nil, nil
				sharedDBMu.Unlock()
			})
		}
	}
	if sharedDBErr != nil {
		t.Fatalf("harness: %v", sharedDBErr)
	}
	return sharedDB
}

func externalDatabaseServer(raw string) (*DatabaseServer, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, fmt.Errorf("%s must be a URL like postgres://user:password@host:5432/postgres?sslmode=disable", envDatabaseURL)
	}
	if _, err := pgx.ParseConfig(raw); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", envDatabaseURL, err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/postgres"
	}
	return &DatabaseServer{baseURL: *u}, nil
}

// DatabaseURL creates a fresh, empty database on s, dropped at the end of
// the test, and returns its URL.
func (s *DatabaseServer) DatabaseURL(t testing.TB) string {
	t.Helper()
	name := databaseName(t.Name())
	if err := s.adminExec("CREATE DATABASE " + pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("harness: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE because a test may leave connections open; failures are
		// only logged since the whole cluster is thrown away anyway.
		err := s.adminExec("DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)")
		if err != nil {
			t.Logf("harness: dropping database %s: %v", name, err)
		}
	})
	u := s.baseURL
	u.Path = "/" + name
	return u.String()
}

// Port returns the TCP port the server listens on (0 for an external one).
func (s *DatabaseServer) Port() int { return s.port }

// Stop stops the server (fast shutdown). See StopDatabase.
func (s *DatabaseServer) Stop(t testing.TB) {
	t.Helper()
	s.requireManaged(t, "Stop")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if s.shared && !s.stopped {
		// The shared server must be up for the tests that follow.
		t.Cleanup(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.stopped {
				if err := s.startLocked(); err != nil {
					t.Errorf("harness: restarting the database server after the test: %v", err)
				}
			}
		})
	}
	s.stopped = true
}

// Start starts a stopped server again on the same port and data directory.
func (s *DatabaseServer) Start(t testing.TB) {
	t.Helper()
	s.requireManaged(t, "Start")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(); err != nil {
		t.Fatalf("harness: restarting the database server: %v", err)
	}
}

// Restart stops the server, waits down and starts it again on the same port
// and data directory. Admin calls (such as DatabaseURL) wait meanwhile.
func (s *DatabaseServer) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	s.requireManaged(t, "Restart")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	time.Sleep(down)
	if err := s.startLocked(); err != nil {
		t.Fatalf("harness: restarting the database server: %v", err)
	}
}

func (s *DatabaseServer) requireManaged(t testing.TB, what string) {
	t.Helper()
	if !s.managed {
		t.Fatalf("harness: %s needs a database server the harness started, but %s points at an external one; "+
			"unset it or use NewDatabaseServer", what, envDatabaseURL)
	}
}

// adminExec runs one statement on the maintenance database, reconnecting
// once if the connection was lost (for example across a restart).
func (s *DatabaseServer) adminExec(sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.managed && s.proc == nil {
		return errors.New("the database server is stopped (StopDatabase without StartDatabase)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if s.admin == nil || s.admin.IsClosed() {
			if s.admin, err = pgx.Connect(ctx, s.baseURL.String()); err != nil {
				s.admin = nil
				return fmt.Errorf("connecting to %s: %w", redact(s.baseURL), err)
			}
		}
		if _, err = s.admin.Exec(ctx, sql); err == nil || !s.admin.IsClosed() {
			return err
		}
	}
	return err
}

// shutdown stops a managed server for good and closes the admin connection.
func (s *DatabaseServer) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *DatabaseServer) stopLocked() {
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.admin.Close(ctx)
		cancel()
		s.admin = nil
	}
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	// SIGINT is PostgreSQL's fast shutdown: it disconnects clients (SIGTERM
	// would wait for them) and leaves a clean data directory for Start.
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(pgStopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// startDatabaseServer creates a cluster in a new directory under parent and
// starts it on a free port.
func startDatabaseServer(parent, label string) (*DatabaseServer, error) {
	binDir, err := findPGBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, "pg-"+label+"-"+randomHex(4))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s to the postgres user: %w", dir, err)
		}
	}
	s := &DatabaseServer{
		managed: true,
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		cred:    cred,
	}
	if err := s.initdb(); err != nil {
		return nil, err
	}
	// The port is only reserved until we close the probe listener, so
	// another process can take it first; retry on a new port when that
	// happens.
	for attempt := 1; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			return nil, err
		}
		s.baseURL = url.URL{
			Scheme:   "postgres",
			User:     url.User("postgres"),
			Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
			Path:     "/postgres",
			RawQuery: "sslmode=disable",
		}
		s.mu.Lock()
		err = s.startLocked()
		s.mu.Unlock()
		if err == nil {
			return s, nil
		}
		if attempt == 5 || !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
	}
}

func (s *DatabaseServer) initdb() error {
	cmd := exec.Command(filepath.Join(s.binDir, "initdb"),
		"-D", s.dataDir,
		"-U", "postgres",
		"--auth=trust", // throwaway, listening on loopback only
		"-E", "UTF8",
		"--no-locale",
		"--no-sync",
		"--no-instructions",
	)
	cmd.Dir = s.dir
	cmd.Env = pgEnv()
	cmd.SysProcAttr = childAttr(s.cred)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb -D %s failed: %w\n%s", s.dataDir, err, out)
	}
	return nil
}

// startLocked starts the server process and waits until it accepts
// connections. The postgres binary is run directly — not through pg_ctl,
// which goes through a shell — so that it is our child: it gets SIGKILL if
// the test process dies, and we see when it exits.
func (s *DatabaseServer) startLocked() error {
	if s.proc != nil {
		s.stopped = false
		return nil
	}
	log := newTailBuffer(64 << 10)
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"),
		"-D", s.dataDir,
		"-k", s.dir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		// Durability is pointless for a throwaway cluster and costs time.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
	)
	cmd.Dir = s.dir
	cmd.Env = pgEnv()
	cmd.Stdout, cmd.Stderr = log, log
	// As root it runs as postgres through Credential rather than runuser:
	// runuser forks, and its child would outlive us if we were killed.
	cmd.SysProcAttr = childAttr(s.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &pgProcess{cmd: cmd, exited: make(chan struct{}), log: log}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()

	deadline := time.Now().Add(pgStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.baseURL.String())
		cancel()
		if err == nil {
			s.admin, s.proc, s.stopped = conn, p, false
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("postgres on port %d exited while starting (%v); its log:\n%s", s.port, cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
			return fmt.Errorf("postgres did not accept connections on port %d within %s (last error: %v); its log:\n%s",
				s.port, pgStartTimeout, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgEnv is the environment of initdb and postgres: a fixed locale and time
// zone, and none of the caller's PG* variables.
func pgEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "TZ=UTC"}
}

// pgCredential returns whom to run PostgreSQL as: nobody else unless we are
// root, which initdb and postgres refuse to be.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root, which PostgreSQL refuses, and there is no `postgres` user to run it as; " +
			"install the server with `make deps` (it creates the user), or run the tests as a normal user")
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user's uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user's gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false}, nil
}

// findPGBinDir looks for initdb and postgres: $STACKSEAM_TEST_PG_BINDIR,
// Debian's version 15 directory, `pg_config --bindir`, PATH, and lastly any
// other Debian version directory, newest first.
func findPGBinDir() (string, error) {
	if dir := os.Getenv(envPGBinDir); dir != "" {
		if hasPGServer(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%s=%s holds no initdb and postgres", envPGBinDir, dir)
	}
	candidates := []string{"/usr/lib/postgresql/15/bin"}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	if path, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		candidates = append(candidates, filepath.Dir(path))
	}
	others, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(others)))
	candidates = append(candidates, others...)
	for _, dir := range candidates {
		if hasPGServer(dir) {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/15/bin, " +
		"`pg_config --bindir` or PATH; run `make deps` (see README), or set " + envPGBinDir +
		", or point " + envDatabaseURL + " at a running server")
}

func hasPGServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// databaseName makes a valid, unique database name that still says which
// test it belongs to, for whoever looks at the server while tests run.
func databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 40 {
		name = name[:40]
	}
	return "t_" + name + "_" + randomHex(5)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// redact hides a password in u for error messages.
func redact(u url.URL) string { return u.Redacted() }
