package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsTransient reports whether err is the database's trouble rather than the event's: the
// connection failed or was lost, the server is shutting down or out of resources, it is
// read-only (a failover in progress), or the transaction lost a race (serialization failure,
// deadlock, lock timeout). Such a failure is retried and never dead-lettered as poison, even when
// a ping succeeds (docs/design.md §"Guarantees").
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),          // insufficient resources (disk full, too many connections)
			strings.HasPrefix(pgErr.Code, "57"),          // operator intervention (shutdown, cannot connect now, canceled)
			strings.HasPrefix(pgErr.Code, "58"),          // system error (I/O)
			pgErr.Code == "25006",                        // read-only transaction: a failover or a read-only replica
			pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock
			pgErr.Code == "55P03": // lock not available
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded)
}

// CheckWritable reports an error unless the database takes writes: it answers, is not a standby
// in recovery and does not default to read-only transactions. A ping alone passes during a
// failover that left the old writer read-only, when every write still fails.
func (s *Store) CheckWritable(ctx context.Context) error {
	var recovering bool
	var readOnly string
	err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')`).Scan(&recovering, &readOnly)
	if err != nil {
		return s.noteErr(fmt.Errorf("database unavailable: %w", err))
	}
	if recovering || readOnly == "on" {
		return errors.New("database unavailable: it is read-only (in recovery or default_transaction_read_only=on)")
	}
	return nil
}
