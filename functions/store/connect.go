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
	// SSLMode applies to connections made from the secret. Defaults to
	// "require" (RDS enforces TLS from PostgreSQL 15 on).
	SSLMode string
	// MaxConns bounds the pool. Defaults to 4.
	MaxConns int32
}

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
		poolCfg, err = pgxpool.ParseConfig(cfg.DatabaseURL)
		if err != nil {
			// The parse error may echo the URL, password included.
			return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or DSN")
		}
	case cfg.SecretID != "":
		if cfg.Secrets == nil {
			return nil, errors.New("a Secrets Manager client is needed to read the database secret")
		}
		if cfg.SSLMode == "" {
			cfg.SSLMode = "require"
		}
		poolCfg, err = pgxpool.ParseConfig("sslmode=" + cfg.SSLMode)
		if err != nil {
			return nil, fmt.Errorf("invalid SSL mode %q: %w", cfg.SSLMode, err)
		}
		creds = &secretCredentials{client: cfg.Secrets, secretID: cfg.SecretID}
		poolCfg.BeforeConnect = creds.apply
	default:
		return nil, errors.New("no database configured: set DATABASE_URL or DATABASE_SECRET_ID")
	}
	poolCfg.MaxConns = cfg.MaxConns
	poolCfg.MaxConnIdleTime = 5 * time.Minute
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
	// The TLS server name must follow the secret's host, not the empty
	// placeholder the config was parsed with.
	if cc.TLSConfig != nil {
		tls := cc.TLSConfig.Clone()
		tls.ServerName = sec.Host
		cc.TLSConfig = tls
	}
	cc.Fallbacks = nil
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
