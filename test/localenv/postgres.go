package localenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// pgStartTimeout bounds how long a server may take to accept
	// connections; crash recovery after an immediate stop is the slow case.
	pgStartTimeout = 60 * time.Second
	// pgStopTimeout bounds a fast shutdown before the server is killed.
	pgStopTimeout = 30 * time.Second
)

// Postgres is a PostgreSQL server on which databases are created: one
// StartPostgres started (Stop, Start and Restart work on it), or an
// external one named by URL. It is safe for concurrent use.
type Postgres struct {
	baseURL url.URL // the maintenance database; databases swap the path
	managed bool    // we started it and may stop it

	// Set only when managed.
	binDir  string
	dir     string // holds data/ and the Unix socket; owned by the server's user
	dataDir string
	port    int
	cred    *syscall.Credential // who the server runs as when we are root
	setup   pgSetup
	// rootCert is the PEM file of the CA that issued the server's
	// certificate; set when the server is TLS-only.
	rootCert string

	mu      sync.Mutex // serialises admin statements, Stop and Start
	proc    *pgProcess // nil while stopped
	admin   *pgx.Conn  // on the maintenance database; nil until needed
	stopped bool       // Stop was called and Start was not
}

type pgProcess struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *TailBuffer
}

// ExternalPostgres returns a Postgres for a running server, given a URL of
// a user who may CREATE DATABASE. It cannot be stopped.
func ExternalPostgres(raw string) (*Postgres, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, errors.New("want a URL like postgres://user:password@host:5432/postgres?sslmode=disable")
	}
	if _, err := pgx.ParseConfig(raw); err != nil {
		return nil, fmt.Errorf("parsing the database URL: %w", err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/postgres"
	}
	return &Postgres{baseURL: *u}, nil
}

// PostgresOption changes how StartPostgres sets up its server.
type PostgresOption func(*pgSetup)

type pgSetup struct {
	tlsOnly bool
	durable bool
}

// TLSOnly makes the server accept TCP connections over TLS only, like RDS
// with rds.force_ssl=1: ssl=on, a certificate for 127.0.0.1 and localhost
// issued by a throwaway CA made for the server (RootCertPath), and only
// hostssl lines in pg_hba.conf, with password (SCRAM) authentication. URLs
// the server hands out say sslmode=verify-full and name the CA.
func TLSOnly() PostgresOption { return func(s *pgSetup) { s.tlsOnly = true } }

// Durable turns fsync, synchronous_commit and full_page_writes on, as RDS
// runs; by default they are off, since the cluster is thrown away.
func Durable() PostgresOption { return func(s *pgSetup) { s.durable = true } }

// StartPostgres creates a cluster in a new directory under parent (named
// after label) and starts it on a free port of 127.0.0.1, by default
// accepting plaintext connections without a password and with durability
// off: it is thrown away (see TLSOnly and Durable for a server shaped like
// production). As root it runs as the postgres user. Stop it with Shutdown;
// the caller removes parent.
func StartPostgres(parent, label string, opts ...PostgresOption) (*Postgres, error) {
	var setup pgSetup
	for _, o := range opts {
		o(&setup)
	}
	binDir, err := FindPGBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, "pg-"+label+"-"+RandomHex(4))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s to the postgres user: %w", dir, err)
		}
	}
	s := &Postgres{
		managed: true,
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		cred:    cred,
		setup:   setup,
	}
	password := ""
	if setup.tlsOnly {
		password = RandomHex(16)
	}
	if err := s.initdb(password); err != nil {
		return nil, err
	}
	query := "sslmode=disable"
	if setup.tlsOnly {
		if err := s.setUpTLS(); err != nil {
			return nil, err
		}
		query = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.rootCert}}.Encode()
	}
	user := url.User("postgres")
	if password != "" {
		user = url.UserPassword("postgres", password)
	}
	// The port is only reserved until we close the probe listener, so
	// another process can take it first; retry on a new port when that
	// happens.
	for attempt := 1; ; attempt++ {
		s.port, err = FreePort()
		if err != nil {
			return nil, err
		}
		s.baseURL = url.URL{
			Scheme:   "postgres",
			User:     user,
			Host:     "127.0.0.1:" + strconv.Itoa(s.port),
			Path:     "/postgres",
			RawQuery: query,
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

// Managed reports whether StartPostgres started the server.
func (s *Postgres) Managed() bool { return s.managed }

// Port returns the TCP port the server listens on (0 for an external one).
func (s *Postgres) Port() int { return s.port }

// Dir returns the directory holding the cluster ("" for an external one).
func (s *Postgres) Dir() string { return s.dir }

// PID is the server's postmaster process id, 0 while it is stopped or when the server is not
// ours (ExternalPostgres). Its backends are its children.
func (s *Postgres) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// RootCertPath returns the PEM file of the CA that issued a TLS-only
// server's certificate, what clients must trust (DATABASE_SSLROOTCERT,
// PGSSLROOTCERT); "" when the server is not TLS-only.
func (s *Postgres) RootCertPath() string { return s.rootCert }

// AdminURL returns the URL of the maintenance database, as the superuser.
func (s *Postgres) AdminURL() string { return s.baseURL.String() }

// AppDatabase is a database with a login role of its own that owns it: what
// an application is given, where the tests' own connections use the
// superuser.
type AppDatabase struct {
	// Name is the database's name, and its owner's.
	Name string
	// URL reaches the database as the superuser (for the test's own checks).
	URL string
	// User and Password are the owner's credentials.
	User, Password string
	// Host and Port are the server's TCP address.
	Host string
	Port string
}

// Secret returns the credentials as the JSON RDS stores in Secrets Manager:
// {"username","password","engine","host","port","dbname"}.
func (d AppDatabase) Secret() string {
	port, _ := strconv.Atoi(d.Port)
	raw, _ := json.Marshal(map[string]any{"username": d.User, "password": d.Password, "engine": "postgres",
		"host": d.Host, "port": port, "dbname": d.Name})
	return string(raw)
}

// CreateAppDatabase creates an empty database and a login role of the same
// name, with a random password, that owns it (DropDatabase drops both).
func (s *Postgres) CreateAppDatabase(name string) (AppDatabase, error) {
	password := RandomHex(16)
	role := pgx.Identifier{name}.Sanitize()
	// The password is made here from hex digits, so quoting it is safe.
	if err := s.adminExec("CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'"); err != nil {
		return AppDatabase{}, fmt.Errorf("creating role %s: %w", name, err)
	}
	if err := s.adminExec("CREATE DATABASE " + role + " OWNER " + role); err != nil {
		return AppDatabase{}, fmt.Errorf("creating database %s: %w", name, err)
	}
	if err := s.adminExec(testSearchPath(name)); err != nil {
		return AppDatabase{}, err
	}
	u := s.baseURL
	u.Path = "/" + name
	return AppDatabase{Name: name, URL: u.String(), User: name, Password: password, Host: u.Hostname(), Port: u.Port()}, nil
}

// testSearchPath is the statement that lets the tests' own connections to database name read
// stackseam's tables without naming their schema, as the state manager's connections do (store.Open
// sets search_path to the schema itself; internal/store's schema test checks that without this).
// public stays on the path for what tests create themselves.
func testSearchPath(name string) string {
	return "ALTER DATABASE " + pgx.Identifier{name}.Sanitize() + " SET search_path = stackseam, public"
}

// CreateDatabase creates an empty database and returns its URL.
func (s *Postgres) CreateDatabase(name string) (string, error) {
	if err := s.adminExec("CREATE DATABASE " + pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	if err := s.adminExec(testSearchPath(name)); err != nil {
		return "", err
	}
	u := s.baseURL
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops a database, disconnecting whoever is still on it.
func (s *Postgres) DropDatabase(name string) error {
	if err := s.adminExec("DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	// The owner CreateAppDatabase made, if any.
	if err := s.adminExec("DROP ROLE IF EXISTS " + pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("dropping role %s: %w", name, err)
	}
	return nil
}

// Stop stops a managed server (fast shutdown: clients are disconnected)
// until Start, and reports whether it was stopped already.
func (s *Postgres) Stop() (wasStopped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.stopped
	s.stopLocked()
	s.stopped = true
	return was
}

// Stopped reports whether Stop was called without a Start since.
func (s *Postgres) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// Start starts a stopped server again on the same port and data directory,
// so earlier URLs work again. Starting a running server does nothing.
func (s *Postgres) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

// Restart stops the server, waits down and starts it again on the same
// port and data directory. Admin calls (such as CreateDatabase) wait
// meanwhile.
func (s *Postgres) Restart(down time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	time.Sleep(down)
	return s.startLocked()
}

// Shutdown stops a managed server for good and closes the admin
// connection; on an external server it only closes the connection.
func (s *Postgres) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// adminExec runs one statement on the maintenance database, reconnecting
// once if the connection was lost (for example across a restart).
func (s *Postgres) adminExec(sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.managed && s.proc == nil {
		return errors.New("the database server is stopped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if s.admin == nil || s.admin.IsClosed() {
			if s.admin, err = pgx.Connect(ctx, s.baseURL.String()); err != nil {
				s.admin = nil
				return fmt.Errorf("connecting to %s: %w", s.baseURL.Redacted(), err)
			}
		}
		if _, err = s.admin.Exec(ctx, sql); err == nil || !s.admin.IsClosed() {
			return err
		}
	}
	return err
}

func (s *Postgres) stopLocked() {
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

// initdb creates the cluster; with a password, the superuser gets it (a
// TLS-only server asks every client for its password).
func (s *Postgres) initdb(password string) error {
	args := []string{
		"-D", s.dataDir,
		"-U", "postgres",
		"--auth=trust", // throwaway, listening on loopback only; TLS-only servers replace pg_hba.conf
		"-E", "UTF8",
		"--no-locale",
		"--no-sync",
		"--no-instructions",
	}
	if password != "" {
		pwFile := filepath.Join(s.dir, "pwfile")
		if err := s.writeServerFile(pwFile, []byte(password+"\n")); err != nil {
			return err
		}
		defer os.Remove(pwFile)
		args = append(args, "--pwfile="+pwFile)
	}
	cmd := exec.Command(filepath.Join(s.binDir, "initdb"), args...)
	cmd.Dir = s.dir
	cmd.Env = pgEnv()
	cmd.SysProcAttr = ChildAttr(s.cred)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb -D %s failed: %w\n%s", s.dataDir, err, out)
	}
	return nil
}

// pgHBATLSOnly lets TCP clients in only over TLS and with a password, like
// RDS with rds.force_ssl=1; no local (Unix socket) line either, so every
// connection is one the TLS checks apply to.
const pgHBATLSOnly = `# TLS only, like RDS with rds.force_ssl=1: no plaintext line at all.
# TYPE   DATABASE  USER  ADDRESS       METHOD
hostssl  all       all   127.0.0.1/32  scram-sha-256
hostssl  all       all   ::1/128       scram-sha-256
`

// setUpTLS makes a CA for the server, writes its certificate for clients to
// trust (RootCertPath) and the server's certificate and key into the data
// directory, where ssl=on finds them, and replaces pg_hba.conf.
func (s *Postgres) setUpTLS() error {
	ca, err := NewTestCA("stackseam test CA " + filepath.Base(s.dir))
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	s.rootCert = filepath.Join(s.dir, "root.crt")
	if err := os.WriteFile(s.rootCert, ca.PEM(), 0o644); err != nil {
		return fmt.Errorf("writing the test CA's certificate: %w", err)
	}
	for name, data := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM, "pg_hba.conf": []byte(pgHBATLSOnly)} {
		if err := s.writeServerFile(filepath.Join(s.dataDir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// writeServerFile writes a file only the server's user may read (the server
// refuses a key others can read).
func (s *Postgres) writeServerFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if s.cred != nil {
		if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("chown %s to the postgres user: %w", path, err)
		}
	}
	return nil
}

// startLocked starts the server process and waits until it accepts
// connections. The postgres binary is run directly — not through pg_ctl,
// which goes through a shell — so that it is our child: it gets SIGKILL if
// we die, and we see when it exits.
func (s *Postgres) startLocked() error {
	if !s.managed {
		return errors.New("an external database server cannot be started or stopped")
	}
	if s.proc != nil {
		s.stopped = false
		return nil
	}
	log := NewTailBuffer(64 << 10)
	// Durability is pointless for a throwaway cluster and costs time,
	// unless the point is to measure what production (RDS) does.
	durability := "off"
	if s.setup.durable {
		durability = "on"
	}
	args := []string{
		"-D", s.dataDir,
		"-k", s.dir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=" + durability,
		"-c", "synchronous_commit=" + durability,
		"-c", "full_page_writes=" + durability,
		"-c", "max_connections=300",
	}
	if s.setup.tlsOnly {
		args = append(args, "-c", "ssl=on", "-c", "ssl_min_protocol_version=TLSv1.2")
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Env = pgEnv()
	cmd.Stdout, cmd.Stderr = log, log
	// As root it runs as postgres through Credential rather than runuser:
	// runuser forks, and its child would outlive us if we were killed.
	cmd.SysProcAttr = ChildAttr(s.cred)
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
			"install the server with `make deps` (it creates the user), or run as a normal user")
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

// EnvPGBinDir names the variable that says where initdb and postgres are,
// when they are not in the usual places.
const EnvPGBinDir = "STACKSEAM_TEST_PG_BINDIR"

// FindPGBinDir looks for initdb and postgres: $STACKSEAM_TEST_PG_BINDIR,
// Debian's version 15 directory, `pg_config --bindir`, PATH, and lastly any
// other Debian version directory, newest first.
func FindPGBinDir() (string, error) {
	if dir := os.Getenv(EnvPGBinDir); dir != "" {
		if hasPGServer(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%s=%s holds no initdb and postgres", EnvPGBinDir, dir)
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
		"`pg_config --bindir` or PATH; run `make deps` (see README), or set " + EnvPGBinDir)
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

// DatabaseName makes a valid, unique database name that still says what it
// is for (a test's name, say), for whoever looks at the server meanwhile.
func DatabaseName(label string) string {
	name := NameChars(label, '_')
	if len(name) > 40 {
		name = name[:40]
	}
	return "t_" + name + "_" + RandomHex(5)
}
