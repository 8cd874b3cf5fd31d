package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// migrationLockKey is the advisory lock that serialises migrations when many
// processes (Lambda containers, local workers) start at once.
const migrationLockKey = 0x5374_6163_6b73 // "Stacks"

// Migration is one embedded schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order. File names are
// NNN_name.up.sql.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("error reading embedded migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".up.sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s is not named NNN_name.up.sql", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("error reading migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies the embedded migrations that the database has not seen yet.
// It is safe to call from many processes at once: they queue on an advisory
// lock and each migration runs in its own transaction, recorded in
// stackseam_migrations.
func (s *Store) Migrate(ctx context.Context) (applied []int, err error) {
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.noteErr(fmt.Errorf("error connecting to migrate: %w", err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return nil, s.noteErr(fmt.Errorf("error taking the migration lock: %w", err))
	}
	defer func() {
		// A session lock outlives errors; release it even if ctx is done.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	}()
	if err := s.ensureSchema(ctx, conn.Conn()); err != nil {
		return nil, s.noteErr(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS stackseam_migrations (
		version    integer PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("error creating stackseam_migrations: %w", err)
	}
	rows, _ := conn.Query(ctx, "SELECT version FROM stackseam_migrations")
	done, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("error reading applied migrations: %w", err)
	}
	seen := map[int]bool{}
	for _, v := range done {
		seen[v] = true
	}
	for _, m := range migrations {
		if seen[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO stackseam_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("error applying migration %03d_%s: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}
