package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultSchema is the PostgreSQL schema stackseam's tables live in unless DATABASE_SCHEMA names
// another: a schema of their own, so stackseam can share a database with CloudSeam, whose
// `stacks` table is in `public` (README.md, "Running the state manager").
const DefaultSchema = "stackseam"

// EnvSchema is the environment variable that names the schema (ConfigFromEnv).
const EnvSchema = "DATABASE_SCHEMA"

// schemaPattern is what a schema name may be: a plain lower-case identifier, so it needs no
// quoting anywhere (search_path, DDL) and cannot be one of PostgreSQL's own (pg_*).
var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CheckSchema reports why name cannot be stackseam's schema, or nil.
func CheckSchema(name string) error {
	if !schemaPattern.MatchString(name) || strings.HasPrefix(name, "pg_") {
		return fmt.Errorf("%s %q must be 1 to 63 lower-case letters, digits and _, not starting with a digit or pg_", EnvSchema, name)
	}
	return nil
}

// tablesBeforeSchemas are the tables migrations created before stackseam had a schema of its own
// (in `public`, the default search_path): ensureSchema moves them into it.
var tablesBeforeSchemas = []string{"stackseam_migrations", "stacks", "history", "outbox", "processed_events",
	"rejections", "parked_outbox", "machine_versions"}

// ensureSchema makes the store's schema and checks that the connection uses it: every statement
// names tables without a schema and relies on search_path, which Open sets to the schema alone
// (so CloudSeam's public.stacks is never seen). A deployment made before stackseam had a schema of
// its own keeps its tables in `public`; the first run of this version moves them, in one
// transaction, under the migration lock (ALTER TABLE … SET SCHEMA keeps their rows, indexes and
// sequences). It runs on conn, which holds the migration lock.
func (s *Store) ensureSchema(ctx context.Context, conn *pgx.Conn) error {
	schema := s.schemaName()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		return fmt.Errorf("error creating the schema %s: %w", schema, err)
	}
	var current *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
		return fmt.Errorf("error reading the connection's schema: %w", err)
	}
	if current == nil || *current != schema {
		got := "none"
		if current != nil {
			got = *current
		}
		return fmt.Errorf("the connection's search_path must start with the schema %s (store.Open sets it), not %s", schema, got)
	}
	if schema == "public" {
		return nil
	}
	var ours, before bool
	err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass('public.stackseam_migrations') IS NOT NULL`,
		schema+".stackseam_migrations").Scan(&ours, &before)
	if err != nil {
		return fmt.Errorf("error looking for an earlier deployment's tables: %w", err)
	}
	if ours || !before {
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, table := range tablesBeforeSchemas {
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", "public."+table).Scan(&exists); err != nil {
				return fmt.Errorf("error looking for public.%s: %w", table, err)
			}
			if !exists {
				continue
			}
			if _, err := tx.Exec(ctx, "ALTER TABLE public."+table+" SET SCHEMA "+schema); err != nil {
				return fmt.Errorf("error moving public.%s into the schema %s: %w", table, schema, err)
			}
		}
		return nil
	})
}

// schemaName is the store's schema: DefaultSchema unless Open was given another.
func (s *Store) schemaName() string {
	if s.schema == "" {
		return DefaultSchema
	}
	return s.schema
}
