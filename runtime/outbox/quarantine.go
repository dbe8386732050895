package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// QuarantinedRow describes a row the relay stopped publishing after
// Options.MaxAttempts failures.
type QuarantinedRow struct {
	ID          int64
	Topic, Key  string
	Attempts    int
	LastError   string
	EnqueuedAt  time.Time
	Quarantined time.Time
	// EventID and EventType are the row's ce_id and ce_type headers.
	EventID, EventType string
}

// Quarantined lists up to limit quarantined rows of table t, oldest
// first (limit <= 0: 100).
func Quarantined(ctx context.Context, pool *pgxpool.Pool, t Table, limit int) ([]QuarantinedRow, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	s := t.stmts()
	if _, err := s.tableOID(ctx, pool); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, s.quarantined, limit)
	if err != nil {
		return nil, fmt.Errorf("eventgen: listing quarantined rows of %s: %w", s.table, err)
	}
	var out []QuarantinedRow
	var q QuarantinedRow
	_, err = pgx.ForEachRow(rows, []any{&q.ID, &q.Topic, &q.Key, &q.Attempts, &q.LastError, &q.EnqueuedAt, &q.Quarantined, &q.EventID, &q.EventType}, func() error {
		out = append(out, q)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventgen: listing quarantined rows of %s: %w", s.table, err)
	}
	return out, nil
}

// Retry releases quarantined rows of table t, those with the given IDs or,
// with no IDs, all of them: their attempts restart from zero, the relays
// are notified, and each is published again before its key's later rows
// (its id keeps its place). It returns how many rows it released; IDs
// that are not quarantined rows are ignored.
func Retry(ctx context.Context, pool *pgxpool.Pool, t Table, ids ...int64) (int64, error) {
	if err := t.validate(); err != nil {
		return 0, err
	}
	s := t.stmts()
	if _, err := s.tableOID(ctx, pool); err != nil {
		return 0, err
	}
	if ids == nil {
		ids = []int64{}
	}
	var n int64
	if err := pool.QueryRow(ctx, s.retry, ids, s.channel).Scan(&n); err != nil {
		return 0, fmt.Errorf("eventgen: releasing quarantined rows of %s: %w", s.table, err)
	}
	return n, nil
}
