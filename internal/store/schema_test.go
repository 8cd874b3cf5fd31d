package store

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/harness"
)

// plainDatabase is a fresh database with PostgreSQL's default search_path ("$user", public), as
// a database shared with CloudSeam has: the harness's own default is reset, so only what
// store.Open sets decides where the tables go. It returns the URL and a connection for checks.
func plainDatabase(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	url := harness.DatabaseURL(t)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	var name string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&name))
	_, err = conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" RESET search_path")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET search_path TO DEFAULT")
	require.NoError(t, err)
	return url, conn
}

func tablesIn(t *testing.T, conn *pgx.Conn, schema string) []string {
	t.Helper()
	rows, _ := conn.Query(context.Background(),
		"SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", schema)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

var allTables = []string{"history", "machine_versions", "outbox", "parked_outbox", "processed_events",
	"rejections", "stacks", "stackseam_migrations"}

// TestTablesLiveInTheirOwnSchema: beside CloudSeam's public.stacks, stackseam's tables go to the
// schema stackseam (or the one DATABASE_SCHEMA names), and CloudSeam's table is left alone.
func TestTablesLiveInTheirOwnSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn := plainDatabase(t)
	_, err := conn.Exec(ctx, `CREATE TABLE "stacks" ("id" VARCHAR(30) NOT NULL UNIQUE, "machine" VARCHAR(30) NOT NULL,
		"data" TEXT NOT NULL, CONSTRAINT stacks_pk PRIMARY KEY ("id"));
		INSERT INTO stacks VALUES ('master', 'qa', '{"id":"master"}')`)
	require.NoError(t, err)

	for _, schema := range []string{"", "ops_seam"} {
		st, err := Open(ctx, Config{DatabaseURL: url, Schema: schema})
		require.NoError(t, err)
		applied, err := st.Migrate(ctx)
		require.NoError(t, err)
		require.NotEmpty(t, applied)
		stack, err := st.GetStack(ctx, "master")
		require.NoError(t, err)
		require.Nil(t, stack, "CloudSeam's stack is not stackseam's")
		st.Close()
		if schema == "" {
			schema = DefaultSchema
		}
		require.Equal(t, allTables, tablesIn(t, conn, schema))
	}
	require.Equal(t, []string{"stacks"}, tablesIn(t, conn, "public"), "CloudSeam's table only")
	var data string
	require.NoError(t, conn.QueryRow(ctx, "SELECT data FROM public.stacks WHERE id = 'master'").Scan(&data))
	require.Equal(t, `{"id":"master"}`, data)

	_, err = Open(ctx, Config{DatabaseURL: url, Schema: "Robert'); DROP TABLE stacks;--"})
	require.ErrorContains(t, err, "DATABASE_SCHEMA")
	_, err = Open(ctx, Config{DatabaseURL: url, Schema: "pg_catalog"})
	require.ErrorContains(t, err, "DATABASE_SCHEMA")
}

// TestMigrateMovesAnEarlierDeploymentIntoItsSchema: a deployment made before stackseam had a
// schema of its own has its tables in public; the first Migrate moves them, rows and all, and
// applies nothing twice.
func TestMigrateMovesAnEarlierDeploymentIntoItsSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn := plainDatabase(t)
	old, err := Open(ctx, Config{DatabaseURL: url, Schema: "public"})
	require.NoError(t, err)
	_, err = old.Migrate(ctx)
	require.NoError(t, err)
	old.Close()
	require.Equal(t, allTables, tablesIn(t, conn, "public"))
	_, err = conn.Exec(ctx, `INSERT INTO public.stacks (id, machine, state, version, created_at, state_entered_at, last_activity_at, updated_at)
		VALUES ('feature/login', 'env', 'RUN', 7, now(), now(), now(), now());
		INSERT INTO public.history (stack_id, at, kind) VALUES ('feature/login', now(), 'created')`)
	require.NoError(t, err)

	st, err := Open(ctx, Config{DatabaseURL: url})
	require.NoError(t, err)
	defer st.Close()
	applied, err := st.Migrate(ctx)
	require.NoError(t, err)
	require.Empty(t, applied, "every migration was applied already")
	require.Empty(t, tablesIn(t, conn, "public"))
	require.Equal(t, allTables, tablesIn(t, conn, DefaultSchema))
	stack, err := st.GetStack(ctx, "feature/login")
	require.NoError(t, err)
	require.Equal(t, "RUN", stack.State)
	require.Equal(t, int64(7), stack.Version)
	// The sequences went with their tables: new history rows still get ids.
	_, err = conn.Exec(ctx, "INSERT INTO stackseam.history (stack_id, at, kind) VALUES ('feature/login', now(), 'event')")
	require.NoError(t, err)
	// And again: nothing to move, nothing to apply.
	applied, err = st.Migrate(ctx)
	require.NoError(t, err)
	require.Empty(t, applied)
}
