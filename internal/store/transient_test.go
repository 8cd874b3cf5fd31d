package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestIsTransient(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"08006": true, "53100": true, "53300": true, "57P01": true, "57P03": true, "58030": true,
		"25006": true, "40001": true, "40P01": true, "55P03": true,
		"22021": false, "23505": false, "42P01": false, "54000": false,
	} {
		err := fmt.Errorf("applying: %w", &pgconn.PgError{Code: code})
		require.Equal(t, want, IsTransient(err), code)
	}
	require.True(t, IsTransient(io.ErrUnexpectedEOF))
	require.True(t, IsTransient(context.DeadlineExceeded))
	require.False(t, IsTransient(errors.New("poison")))
	require.False(t, IsTransient(nil))
}

// A database that answers pings but takes no writes (the old writer after a failover, or
// default_transaction_read_only) fails the probe, so the gate pauses rather than letting every
// event fail into the dead-letter queue.
func TestCheckWritableRefusesAReadOnlyDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.store.CheckWritable(b.ctx))
	u, err := url.Parse(b.url)
	require.NoError(t, err)
	name := strings.TrimPrefix(u.Path, "/")
	_, err = b.store.Pool().Exec(b.ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET default_transaction_read_only = on")
	require.NoError(t, err)
	ro, err := Open(b.ctx, Config{DatabaseURL: b.url})
	require.NoError(t, err)
	defer ro.Close()
	require.NoError(t, ro.Pool().Ping(b.ctx), "it still answers a ping")
	require.ErrorContains(t, ro.CheckWritable(b.ctx), "it is read-only")
}

func TestDatabaseURLRefusesTheSecretPathsTLSVariables(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), Config{DatabaseURL: "postgres://u@127.0.0.1:1/db", SSLMode: "verify-full"})
	require.ErrorContains(t, err, "put sslmode and sslrootcert in the URL")
}
