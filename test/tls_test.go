package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/test/localenv"
)

// requireOnlyTLSConnections checks that the state manager's database user
// has connections open and that every one of them is encrypted. Call it
// while the state manager runs: its pool keeps idle connections.
func (s *system) requireOnlyTLSConnections() {
	s.t.Helper()
	require.NotNil(s.t, s.appDB, "the state manager reaches its database through the secret")
	var total, encrypted int
	var versions string
	require.NoError(s.t, s.db.QueryRow(s.ctx, `SELECT count(*), count(*) FILTER (WHERE l.ssl),
			coalesce(string_agg(DISTINCT coalesce(l.version, 'plaintext'), ','), '')
		FROM pg_stat_activity a JOIN pg_stat_ssl l USING (pid) WHERE a.usename = $1`, s.appDB.User).
		Scan(&total, &encrypted, &versions))
	require.Positive(s.t, total, "the state manager has connections open")
	require.Equal(s.t, total, encrypted, "every connection of the state manager is TLS (%s)", versions)
	s.t.Logf("%d state-manager connections, all TLS (%s)", total, versions)
}

// The shipped state manager, given a CA other than the one that issued the
// server's certificate (or none, so the RDS bundle), does not connect, and
// its log says why. The server takes TLS only, so this is also the case
// where only a connection without verification would have worked. Like any
// unreachable database it pauses consumption (the DatabaseUnavailable alarm's
// metric is written) rather than exiting.
func TestStateManagerRefusesAServerFromAnotherCA(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	otherCA, err := localenv.NewTestCA("not the server's CA")
	require.NoError(t, err)
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	require.NoError(t, os.WriteFile(other, otherCA.PEM(), 0o644))

	for _, rootCert := range []string{other, ""} {
		proc := s.launchStateManager("DATABASE_SSLROOTCERT=" + rootCert)
		proc.WaitForOutput(t, "certificate signed by unknown authority", 60*time.Second)
		proc.WaitForOutput(t, `"databaseAvailable":false`, 60*time.Second)
		_ = proc.Stop()
		require.Contains(t, proc.Output(), `"DatabaseUnavailable":1`, "DATABASE_SSLROOTCERT=%s", rootCert)
		require.NotContains(t, proc.Output(), s.appDB.Password)
	}
	require.Zero(t, s.count(`SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, s.appDB.User))
	require.Zero(t, s.count(`SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('public', 'stackseam')`),
		"nothing was migrated")

	// The same server, CA and secret with the right CA: it connects.
	s.startStateManager(1)
	s.requireOnlyTLSConnections()
}
