package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config says how to reach the database. Exactly one of DatabaseURL and
// SecretID is used; DatabaseURL wins when both are set.
type Config struct {
	// DatabaseURL is a PostgreSQL URL or DSN, for local use (DATABASE_URL).
	DatabaseURL string
	// SecretID names a Secrets Manager secret in the format RDS writes:
	// {"username","password","host","port","dbname"}.
	SecretID string
	// Secrets reads SecretID. Required when SecretID is set.
	Secrets *secretsmanager.Client
	// SSLMode is the TLS mode of connections made from the secret
	// (DATABASE_SSLMODE): verify-full, verify-ca, require or disable; allow
	// and prefer are refused since they may fall back to plaintext. Defaults
	// to verify-full, checked against SSLRootCert.
	SSLMode string
	// SSLRootCert is a PEM file of the CAs trusted for the server's
	// certificate (DATABASE_SSLROOTCERT). Defaults to the Amazon RDS CA
	// bundle built into the binary (package rdsca).
	SSLRootCert string
	// MaxConns bounds the pool. Defaults to 4.
	MaxConns int32
	// ReadOnly makes every transaction of every connection read-only
	// (default_transaction_read_only, set when the connection starts): a
	// statement that writes fails with SQLSTATE 25006. The query function and
	// the CLI's reads use it. Defaults to read-write.
	ReadOnly bool
}

// The environment variables ConfigFromEnv reads; the functions and the CLI
// take their database settings from them.
const (
	EnvDatabaseURL = "DATABASE_URL"
	EnvSecretID    = "DATABASE_SECRET_ID"
	EnvSSLMode     = "DATABASE_SSLMODE"
	EnvSSLRootCert = "DATABASE_SSLROOTCERT"
)

// ConfigFromEnv reads DATABASE_URL, DATABASE_SECRET_ID, DATABASE_SSLMODE and
// DATABASE_SSLROOTCERT through getenv (os.Getenv, or a test's map), so every
// binary reads the same names the same way.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		DatabaseURL: getenv(EnvDatabaseURL),
		SecretID:    getenv(EnvSecretID),
		SSLMode:     getenv(EnvSSLMode),
		SSLRootCert: getenv(EnvSSLRootCert),
	}
}

// defaultConnectTimeout bounds one connection attempt unless the URL sets connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// Open creates the process's one pool (reuse it across invocations) and
// returns a store on it. It does not connect until first use.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4
	}
	var creds *secretCredentials
	var poolCfg *pgxpool.Config
	var err error
	switch {
	case cfg.DatabaseURL != "":
		if cfg.SSLMode != "" || cfg.SSLRootCert != "" {
			// They would be silently ignored: the URL carries its own sslmode and sslrootcert.
			return nil, fmt.Errorf("%s and %s apply to %s; with %s put sslmode and sslrootcert in the URL",
				EnvSSLMode, EnvSSLRootCert, EnvSecretID, EnvDatabaseURL)
		}
		poolCfg, err = pgxpool.ParseConfig(cfg.DatabaseURL)
		if err != nil {
			// The parse error may echo the URL, password included.
			return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or DSN")
		}
	case cfg.SecretID != "":
		if cfg.Secrets == nil {
			return nil, errors.New("a Secrets Manager client is needed to read the database secret")
		}
		policy, err := newTLSPolicy(cfg.SSLMode, cfg.SSLRootCert)
		if err != nil {
			return nil, err
		}
		// Host, port and TLS come from the secret in BeforeConnect; this
		// only makes the config pgx requires (it must come from
		// ParseConfig). Its TLS settings are not used: parsed without a
		// host, pgx would pick a Unix socket and drop them.
		poolCfg, err = pgxpool.ParseConfig("sslmode=disable")
		if err != nil {
			return nil, fmt.Errorf("error making the database pool's settings: %w", err)
		}
		creds = &secretCredentials{client: cfg.Secrets, secretID: cfg.SecretID, tls: policy}
		poolCfg.BeforeConnect = creds.apply
	default:
		return nil, errors.New("no database configured: set DATABASE_URL or DATABASE_SECRET_ID")
	}
	poolCfg.MaxConns = cfg.MaxConns
	if cfg.ReadOnly {
		// A startup parameter, so it holds from the connection's first statement, before any
		// query of ours runs; the secret's BeforeConnect keeps RuntimeParams.
		if poolCfg.ConnConfig.RuntimeParams == nil {
			poolCfg.ConnConfig.RuntimeParams = map[string]string{}
		}
		poolCfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	poolCfg.MaxConnIdleTime = 5 * time.Minute
	if poolCfg.ConnConfig.ConnectTimeout == 0 {
		// A server that drops packets must fail a connection attempt, not hang a handler until
		// its invocation's deadline: the outage gate can only act on an error.
		poolCfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("error creating the database pool: %w", err)
	}
	s := New(pool)
	if creds != nil {
		s.onAuthFailure = creds.invalidate
	}
	return s, nil
}

// secretCredentials caches the database secret and fills every new
// connection's settings from it.
type secretCredentials struct {
	client   *secretsmanager.Client
	secretID string
	tls      *tlsPolicy

	mu     sync.Mutex
	cached *rdsSecret
}

// rdsSecret is the JSON RDS stores for a database user.
type rdsSecret struct {
	Username string          `json:"username"`
	Password string          `json:"password"`
	Host     string          `json:"host"`
	Port     json.RawMessage `json:"port"`
	DBName   string          `json:"dbname"`
}

func (c *secretCredentials) apply(ctx context.Context, cc *pgx.ConnConfig) error {
	sec, err := c.get(ctx)
	if err != nil {
		return err
	}
	port, err := parsePort(sec.Port)
	if err != nil {
		return fmt.Errorf("database secret %s: %w", c.secretID, err)
	}
	cc.Host = sec.Host
	cc.Port = port
	cc.User = sec.Username
	cc.Password = sec.Password
	cc.Database = sec.DBName
	if cc.Database == "" {
		cc.Database = "postgres"
	}
	// One target, with exactly the TLS the mode asks for: no fallback (to
	// plaintext, or to whatever PG* variables named) is ever tried, and a
	// server that declines TLS fails the connection.
	cc.TLSConfig = c.tls.config(sec.Host)
	cc.Fallbacks = nil
	cc.SSLNegotiation = ""
	return nil
}

func (c *secretCredentials) get(ctx context.Context) (*rdsSecret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil {
		return c.cached, nil
	}
	out, err := c.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(c.secretID)})
	if err != nil {
		return nil, fmt.Errorf("error reading database secret %s: %w", c.secretID, err)
	}
	var sec rdsSecret
	if out.SecretString == nil || json.Unmarshal([]byte(*out.SecretString), &sec) != nil {
		// Never echo the secret's text.
		return nil, fmt.Errorf("database secret %s is not the JSON RDS writes ({username, password, host, port, dbname})", c.secretID)
	}
	if sec.Username == "" || sec.Host == "" {
		return nil, fmt.Errorf("database secret %s lacks username or host", c.secretID)
	}
	c.cached = &sec
	return &sec, nil
}

func (c *secretCredentials) invalidate() {
	c.mu.Lock()
	c.cached = nil
	c.mu.Unlock()
}

func parsePort(raw json.RawMessage) (uint16, error) {
	if len(raw) == 0 {
		return 5432, nil
	}
	var n json.Number
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		n = json.Number(s)
	} else if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("port %s is not a number", raw)
	}
	p, err := strconv.ParseUint(string(n), 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %q is not a valid TCP port", n)
	}
	return uint16(p), nil
}
