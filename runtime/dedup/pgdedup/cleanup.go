package pgdedup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Defaults of CleanupOptions.
const (
	DefaultCleanupBatch    = 1000
	DefaultCleanupInterval = time.Minute
)

// CleanupOptions configure RunCleanup. A zero field takes its default.
type CleanupOptions struct {
	// BatchSize is how many expired rows one DELETE removes (one short
	// transaction each). Default 1000 (DefaultCleanupBatch).
	BatchSize int
	// Interval is the wait between two cleanup passes. Default 1 min
	// (DefaultCleanupInterval).
	Interval time.Duration
	// Logger receives a line per pass that deleted rows and per failed
	// pass. Default: discards.
	Logger *slog.Logger
}

// execer is what runs the cleanup's statement: the pool, or a transaction
// in tests.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// deleteExpiredBatch deletes at most n expired rows in one statement. It
// locks only expired rows, skips those another transaction holds (a
// handler taking an expired key over), and finds them through the
// expires_at index: it never waits for a handler, and handlers working on
// live keys never wait for it.
func (s *Store) deleteExpiredBatch(ctx context.Context, q execer, n int) (int64, error) {
	tag, err := q.Exec(ctx, s.deleteExpired, n)
	if err != nil {
		return 0, fmt.Errorf("pgdedup: deleting expired keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteExpired deletes the expired dedup records, batchSize rows per
// statement (DefaultCleanupBatch if batchSize ≤ 0), each statement its own
// short transaction, until a statement finds fewer than batchSize. It
// returns how many rows it deleted. It is never a table-wide DELETE.
func (s *Store) DeleteExpired(ctx context.Context, batchSize int) (int64, error) {
	if batchSize <= 0 {
		batchSize = DefaultCleanupBatch
	}
	var total int64
	for {
		n, err := s.deleteExpiredBatch(ctx, s.pool, batchSize)
		total += n
		if err != nil || n < int64(batchSize) {
			return total, err
		}
	}
}

// RunCleanup calls DeleteExpired every opts.Interval until ctx is done,
// then returns nil. A failed pass is logged and tried again at the next
// interval: the cleanup never stops a consumer. Run it in a goroutine next
// to the consumers, in one or more processes (concurrent cleanups skip
// each other's rows).
func (s *Store) RunCleanup(ctx context.Context, opts CleanupOptions) error {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultCleanupBatch
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultCleanupInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		n, err := s.DeleteExpired(ctx, opts.BatchSize)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("eventgen: dedup cleanup failed; trying again at the next interval", "table", s.q.Dedup, "deleted", n, "error", err)
		case n > 0:
			log.Info("eventgen: dedup cleanup", "table", s.q.Dedup, "deleted", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
