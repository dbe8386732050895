package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Stats describes an outbox table and a relay publishing it.
type Stats struct {
	// At is when the table was last measured (zero before the first time).
	At time.Time
	// Backlog counts the rows waiting to be published: not published, not
	// quarantined (rows waiting for a next attempt included).
	Backlog int64
	// OldestUnpublished is the age of the oldest row of the backlog,
	// zero when it is empty.
	OldestUnpublished time.Duration
	// Quarantined counts the rows quarantined after MaxAttempts failures,
	// waiting for Retry.
	Quarantined int64
	// Published counts the rows this relay published since Run started.
	Published uint64
	// PublishedPerSecond is this relay's rate over the last StatsInterval.
	PublishedPerSecond float64
	// Shards is how many of the table's Shards this relay owns, Relays how
	// many relays of the table are running (at the last rebalance).
	Shards, Relays int
}

// Stats returns the relay's statistics: the table's as measured at
// Stats.At (every Options.StatsInterval), the relay's own counters as of
// now.
func (r *Relay) Stats() Stats {
	r.statsMu.Lock()
	st := r.stats
	r.statsMu.Unlock()
	st.Published = r.published.Load()
	st.Shards, st.Relays = int(r.shards.Load()), int(r.relays.Load())
	return st
}

// statsLoop refreshes Stats every StatsInterval until ctx is done.
func (r *Relay) statsLoop(ctx context.Context) {
	tick := time.NewTicker(r.opts.StatsInterval)
	defer tick.Stop()
	var prev uint64
	prevAt := time.Now()
	for {
		st, err := Inspect(ctx, r.pool, r.stmts.table)
		if err != nil && ctx.Err() == nil {
			r.opts.Logger.Warn("eventgen: outbox relay: measuring the table", "table", r.stmts.table.String(), "err", err)
		}
		if err == nil {
			now := time.Now()
			pub := r.published.Load()
			st.Published = pub
			if secs := now.Sub(prevAt).Seconds(); secs > 0 {
				st.PublishedPerSecond = float64(pub-prev) / secs
			}
			prev, prevAt = pub, now
			st.Shards, st.Relays = int(r.shards.Load()), int(r.relays.Load())
			r.statsMu.Lock()
			r.stats = st
			r.statsMu.Unlock()
			if r.opts.OnStats != nil {
				r.opts.OnStats(st)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Inspect measures the outbox table t: its backlog, the age of its oldest
// unpublished row and its quarantined rows (the fields of Stats that do
// not describe a relay). It reads every unpublished row's index entry: run
// it every few seconds, not per batch.
func Inspect(ctx context.Context, pool *pgxpool.Pool, t Table) (Stats, error) {
	if err := t.validate(); err != nil {
		return Stats{}, err
	}
	s := t.stmts()
	if _, err := s.tableOID(ctx, pool); err != nil {
		return Stats{}, err
	}
	var st Stats
	var oldest float64
	if err := pool.QueryRow(ctx, s.stats).Scan(&st.Backlog, &oldest, &st.Quarantined); err != nil {
		return Stats{}, fmt.Errorf("eventgen: measuring outbox table %s: %w", s.table, err)
	}
	st.OldestUnpublished = time.Duration(oldest * float64(time.Second))
	st.At = time.Now()
	return st, nil
}
