package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/templates"
)

// Relay publishes the rows of an outbox table to Kafka and then deletes
// them (or marks them published, with a retention). Several relays may run
// on one table, in one process or many: they share the table's Shards
// shards, each owned by one relay at a time, so that a key's rows are
// published in order by one relay (see docs/outbox.md).
//
// A crash anywhere leaves each row either published and deleted, or still
// in the table, to be published again by the next relay that owns its
// shard: duplicates on the wire (with the same ce_id) happen only after a
// crash between a publication and its deletion, or after a failure Kafka
// reported for a record it had in fact written.
type Relay struct {
	pool  *pgxpool.Pool
	opts  Options
	stmts *statements

	published atomic.Uint64 // rows published by this relay
	shards    atomic.Int32  // shards owned now
	relays    atomic.Int32  // live relays seen at the last rebalance

	statsMu sync.Mutex
	stats   Stats
}

// NewRelay checks opts (every invalid field named in one error matching
// ErrInvalidOptions) and returns a relay for the table opts.Table of the
// database pool connects to. It connects to nothing: Run does.
func NewRelay(pool *pgxpool.Pool, opts Options) (*Relay, error) {
	var errs []error
	if pool == nil {
		errs = append(errs, fmt.Errorf("%w: the pool is nil", ErrInvalidOptions))
	}
	if err := opts.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	return &Relay{pool: pool, opts: opts, stmts: opts.Table.stmts()}, nil
}

// Run publishes until ctx is done, then finishes the batch in flight
// (waiting up to Options.ShutdownTimeout for its acknowledgements and the
// deletion of its rows) and returns nil. It holds one connection of its
// own to PostgreSQL (opened with the pool's configuration, outside the
// pool) for its shard locks, LISTEN and the batches' statements, and uses
// the pool for statistics and cleanup. A lost connection or a failing
// statement ends the session: its shards are released and Run connects
// again after a backoff. Run returns an error when it cannot start: the
// producer cannot connect to Kafka, or the table does not exist
// (ErrNoTable).
func (r *Relay) Run(ctx context.Context) error {
	if _, err := r.stmts.tableOID(ctx, r.pool); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	prod, err := kafka.NewAtLeastOnceProducer(r.opts.Kafka)
	if err != nil {
		return fmt.Errorf("eventgen: outbox relay: %w", err)
	}
	defer prod.Close()

	statsCtx, stopStats := context.WithCancel(ctx)
	var statsDone sync.WaitGroup
	statsDone.Go(func() { r.statsLoop(statsCtx) })
	defer func() {
		stopStats()
		statsDone.Wait()
	}()

	failures := 0
	for {
		progressed, err := r.session(ctx, prod)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNoTable) {
			return err
		}
		if progressed {
			failures = 0
		}
		failures++
		wait := r.opts.backoff(failures)
		r.opts.Logger.Warn("eventgen: outbox relay session ended, reconnecting", "table", r.stmts.table.String(), "err", err, "after", wait)
		if sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// session runs one connection's life: join the table's relays, listen,
// then rebalance shards and publish batches until ctx is done or a
// statement fails. progressed reports whether any batch was finished, so
// that Run resets its backoff.
func (r *Relay) session(ctx context.Context, prod *kafka.AtLeastOnceProducer) (progressed bool, err error) {
	cfg := r.pool.Config().ConnConfig
	var notified atomic.Bool
	cfg.OnNotification = func(*pgconn.PgConn, *pgconn.Notification) { notified.Store(true) }
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "eventgen-relay"
	}
	// The session only deletes (or marks) published rows and records
	// failures: if PostgreSQL crashed before such a commit reached the disk,
	// the rows would be published again, with the same ce_id, which is what
	// a relay crash does anyway. Not waiting for the WAL flush takes the
	// fsync out of every batch. Services' enqueues are not affected.
	cfg.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("eventgen: outbox relay: connecting to PostgreSQL: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx) // ends the session: PostgreSQL releases its shard locks
		r.shards.Store(0)
	}()
	oid, err := r.stmts.tableOID(ctx, conn)
	if err != nil {
		return false, err
	}
	sh := &shardSet{conn: conn, oid: oid, owned: map[int16]bool{}}
	if err := sh.join(ctx); err != nil {
		return false, err
	}
	if !r.opts.DisableNotify {
		if _, err := conn.Exec(ctx, "LISTEN "+templates.QuoteIdent(r.stmts.channel)); err != nil {
			return false, fmt.Errorf("eventgen: outbox relay: LISTEN: %w", err)
		}
	}
	var nextRebalance, nextCleanup time.Time
	outages := 0
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(nextRebalance) {
			if err := sh.rebalance(ctx); err != nil {
				return progressed, err
			}
			r.shards.Store(int32(len(sh.owned)))
			r.relays.Store(int32(sh.relays))
			nextRebalance = now.Add(r.opts.RebalanceInterval)
		}
		if r.opts.Retention > 0 && !now.Before(nextCleanup) {
			if err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
				r.opts.Logger.Warn("eventgen: outbox relay: deleting published rows", "table", r.stmts.table.String(), "err", err)
			}
			nextCleanup = now.Add(r.opts.PollInterval)
		}
		owned := sh.list()
		if len(owned) == 0 {
			if err := r.idle(ctx, conn, &notified, time.Until(nextRebalance)); err != nil {
				return progressed, err
			}
			continue
		}
		notified.Store(false) // a notification after this point triggers another fetch
		rows, err := r.fetch(ctx, conn, owned)
		if err != nil {
			return progressed, err
		}
		if len(rows) == 0 {
			if err := r.idle(ctx, conn, &notified, min(r.opts.PollInterval, time.Until(nextRebalance))); err != nil {
				return progressed, err
			}
			continue
		}
		res := r.publish(ctx, prod, rows)
		if err := r.finish(ctx, conn, res); err != nil {
			return progressed, err
		}
		progressed = true
		if res.outage {
			outages++
			wait := r.opts.backoff(outages)
			r.opts.Logger.Warn("eventgen: outbox relay: no record of the batch was published; pausing", "table", r.stmts.table.String(), "err", res.firstErr, "pause", wait)
			if sleep(ctx, wait) != nil {
				return progressed, nil
			}
		} else {
			outages = 0
		}
	}
	return progressed, nil
}

// idle waits up to d for a notification (or, with DisableNotify, sleeps
// d). A notification received during an earlier statement ends it at
// once. It returns an error only when the connection failed.
func (r *Relay) idle(ctx context.Context, conn *pgx.Conn, notified *atomic.Bool, d time.Duration) error {
	if d <= 0 || notified.Load() {
		return nil
	}
	if r.opts.DisableNotify {
		_ = sleep(ctx, d)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := conn.PgConn().WaitForNotification(wctx)
	if err != nil && wctx.Err() == nil {
		return fmt.Errorf("eventgen: outbox relay: waiting for notifications: %w", err)
	}
	return nil
}

// row is one outbox row being published.
type row struct {
	id       int64
	topic    string
	key      string
	headers  []byte // the JSON object
	payload  []byte
	attempts int32
}

// fetch reads the next batch of publishable rows of the owned shards.
func (r *Relay) fetch(ctx context.Context, conn *pgx.Conn, owned []int16) ([]row, error) {
	rs, err := conn.Query(ctx, r.stmts.fetch, owned, r.opts.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("eventgen: outbox relay: reading %s: %w", r.stmts.table, err)
	}
	rows := make([]row, 0, r.opts.BatchSize)
	var rw row
	_, err = pgx.ForEachRow(rs, []any{&rw.id, &rw.topic, &rw.key, &rw.headers, &rw.payload, &rw.attempts}, func() error {
		rows = append(rows, rw)
		rw = row{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventgen: outbox relay: reading %s: %w", r.stmts.table, err)
	}
	return rows, nil
}

// finish records a batch's outcome in one implicit transaction: the
// acknowledged rows are deleted (or marked published), the failed ones
// get an attempt, a next-attempt time and, at MaxAttempts, quarantine. It
// runs even when ctx is done (bounded by ShutdownTimeout), so that a
// shutdown does not republish what Kafka acknowledged.
func (r *Relay) finish(ctx context.Context, conn *pgx.Conn, res batchResult) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.ShutdownTimeout)
	defer cancel()
	var b pgx.Batch
	if len(res.acked) > 0 {
		if r.opts.Retention > 0 {
			b.Queue(r.stmts.markPublished, res.acked)
		} else {
			b.Queue(r.stmts.deletePublished, res.acked)
		}
	}
	if len(res.failed) > 0 {
		ids := make([]int64, len(res.failed))
		errs := make([]string, len(res.failed))
		waits := make([]int64, len(res.failed))
		for i, f := range res.failed {
			ids[i], errs[i] = f.row.id, f.err.Error()
			waits[i] = r.opts.backoff(int(f.row.attempts) + 1).Microseconds()
		}
		b.Queue(r.stmts.failed, ids, errs, waits, r.opts.MaxAttempts)
	}
	if h := r.opts.hooks; h != nil && h.loseDeleteEvery > 0 {
		if h.batches++; h.batches%h.loseDeleteEvery == 0 {
			b = pgx.Batch{}
		}
	}
	if b.Len() > 0 {
		if err := conn.SendBatch(fctx, &b).Close(); err != nil {
			return fmt.Errorf("eventgen: outbox relay: recording a batch in %s: %w", r.stmts.table, err)
		}
	}
	r.published.Add(uint64(len(res.acked)))
	for _, f := range res.failed {
		if int(f.row.attempts)+1 >= r.opts.MaxAttempts {
			r.opts.Logger.Warn("eventgen: outbox row quarantined; its key's later rows wait until it is retried",
				"table", r.stmts.table.String(), "id", f.row.id, "topic", f.row.topic, "key", f.row.key,
				"attempts", f.row.attempts+1, "err", f.err)
		}
	}
	if r.opts.hooks != nil && r.opts.hooks.finished != nil {
		r.opts.hooks.finished()
	}
	return nil
}

// cleanup deletes rows published more than Retention ago, CleanupBatch per
// statement, until none is left or ctx is done.
func (r *Relay) cleanup(ctx context.Context) error {
	for ctx.Err() == nil {
		tag, err := r.pool.Exec(ctx, r.stmts.cleanup, r.opts.Retention.Microseconds(), r.opts.CleanupBatch)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < int64(r.opts.CleanupBatch) {
			return nil
		}
	}
	return nil
}

// sleep waits for d or until ctx is done, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
