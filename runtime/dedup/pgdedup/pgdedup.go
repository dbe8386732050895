// Package pgdedup is the PostgreSQL dedup store (pgx v5): Store records
// each processed event in the same transaction as the handler's effects,
// so that effects and "processed" commit or roll back together, and keeps
// a consumer group's offsets in that transaction for exactly-once effects
// into the database. Cleanup deletes expired records in small batches.
// Migrate creates the tables from the same SQL the generator writes
// (templates.RenderSQL). docs/dedup.md describes the tables and when to
// choose this store.
package pgdedup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/internal/pgddl"
	"github.com/eventgen/eventgen/templates"
)

// DefaultTTL is how long a key is remembered when neither the item nor
// Options.TTL says: generated consumers always pass the event's dedup.ttl.
const DefaultTTL = 7 * 24 * time.Hour

// Options configure a Store and Migrate. A zero field takes its default.
// Schema, Table and OffsetsTable must be plain identifiers (lower-case
// letters, digits and underscores, not starting with a digit:
// templates.CheckName, the rule of the outbox's table too); they are
// always quoted in SQL.
type Options struct {
	// Schema is the PostgreSQL schema of the tables. Default "": the
	// connection's search_path.
	Schema string
	// Table is the dedup table. Default "eventgen_dedup"
	// (templates.DefaultDedupTable).
	Table string
	// OffsetsTable is the offsets table of exactly-once consumers. Default
	// "eventgen_offsets" (templates.DefaultOffsetsTable).
	OffsetsTable string
	// TTL is how long a processed key is kept when the item sets none.
	// Default 7 days (DefaultTTL); must not be negative.
	TTL time.Duration
}

// ErrInvalidOptions is matched by the error of New or Migrate given
// invalid Options; every invalid field is named.
var ErrInvalidOptions = errors.New("pgdedup: invalid options")

func (o Options) tables() templates.SQLTables {
	return templates.SQLTables{Schema: o.Schema, Dedup: o.Table, Offsets: o.OffsetsTable}
}

// optionFields names Options' fields in the errors of templates' validation.
var optionFields = templates.SQLTables{Schema: "pgdedup.Options.Schema", Dedup: "pgdedup.Options.Table", Offsets: "pgdedup.Options.OffsetsTable"}

func (o Options) quoted() (templates.QuotedSQLTables, error) {
	var errs []error
	q, err := o.tables().Quoted(optionFields)
	if err != nil {
		errs = append(errs, err)
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("pgdedup.Options.TTL must not be negative, got %v", o.TTL))
	}
	if len(errs) > 0 {
		return q, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return q, nil
}

// Store is a dedup.BatchOffsetStore[pgx.Tx] on a connection pool. It is safe
// for concurrent use. Each Process or ProcessAt call is one transaction:
//
//  1. one INSERT ... ON CONFLICT ... RETURNING learns which of the batch's
//     keys are new (or expired, then taken over), keys sorted so that two
//     batches sharing keys lock them in the same order and cannot
//     deadlock; a key another transaction has just inserted waits for it
//     to commit (then it is a Duplicate) or roll back (then it is new);
//  2. each new item's handler runs inside a SAVEPOINT, with the
//     transaction: on failure the savepoint is rolled back (its effects
//     undone, the others' kept) and its key's row deleted, so it stays
//     retryable;
//  3. one COMMIT makes every effect and every key visible together.
//
// ProcessBatch and ProcessBatchAt replace step 2 with one handler call for
// all the new items, in one savepoint (see ProcessBatch).
type Store struct {
	pool *pgxpool.Pool
	ttl  time.Duration
	q    templates.QuotedSQLTables

	insertKeys, deleteKey, deleteKeys   string
	deleteExpired                       string
	lockOffset, loadOffsets, saveOffset string
	initOffset                          string
}

// New returns a Store using pool. The tables must exist (Migrate, or the
// generated <schema>_postgres.gen.sql). It does not connect.
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	q, err := opts.quoted()
	if err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, fmt.Errorf("%w: pgdedup.New: pool is nil", ErrInvalidOptions)
	}
	s := &Store{pool: pool, ttl: dedup.TTLOr(opts.TTL, DefaultTTL), q: q}
	s.insertKeys = `INSERT INTO ` + q.Dedup + ` AS d (consumer_group, event, id, expires_at)
SELECT k.g, k.e, k.i, now() + k.ttl * interval '1 microsecond'
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS k(g, e, i, ttl, n)
ORDER BY k.n
ON CONFLICT (consumer_group, event, id) DO UPDATE
SET processed_at = now(), expires_at = excluded.expires_at
WHERE d.expires_at <= now()
RETURNING d.consumer_group, d.event, d.id`
	s.deleteKey = `DELETE FROM ` + q.Dedup + ` WHERE consumer_group = $1 AND event = $2 AND id = $3`
	s.deleteKeys = `DELETE FROM ` + q.Dedup + ` WHERE (consumer_group, event, id) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`
	s.deleteExpired = `DELETE FROM ` + q.Dedup + ` WHERE ctid = ANY(ARRAY(
SELECT ctid FROM ` + q.Dedup + ` WHERE expires_at < now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))`
	s.initOffset = `INSERT INTO ` + q.Offsets + ` (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, -1)
ON CONFLICT (consumer_group, topic, partition) DO NOTHING`
	s.lockOffset = `SELECT next_offset FROM ` + q.Offsets + ` WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE`
	s.saveOffset = `UPDATE ` + q.Offsets + ` SET next_offset = $4, updated_at = now() WHERE consumer_group = $1 AND topic = $2 AND partition = $3`
	s.loadOffsets = `SELECT partition, next_offset FROM ` + q.Offsets + ` WHERE consumer_group = $1 AND topic = $2 AND next_offset >= 0`
	return s, nil
}

// Migrate creates the tables, indexes (and the schema, if Options.Schema
// is set) that Store needs, if they do not exist. It runs the same SQL as
// the generated <schema>_postgres.gen.sql, under a transaction-scoped
// advisory lock (shared with outbox.Migrate) so that processes starting
// together do not race. A role
// that may use the tables but not create them (they were created by a
// migration role) gets nil once they all exist, and an error naming the
// missing ones otherwise.
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	if _, err := opts.quoted(); err != nil {
		return err
	}
	ddl, err := templates.RenderSQL(opts.tables())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	err = pgddl.Apply(ctx, pool, pgddl.Migration{Schema: opts.Schema, DDL: ddl, Relations: opts.tables().Relations()})
	if err != nil {
		return fmt.Errorf("pgdedup: migrate: %w", err)
	}
	return nil
}

// Process implements dedup.Store (see Store for how).
func (s *Store) Process(ctx context.Context, batch []dedup.Item[pgx.Tx]) error {
	return s.inTx(ctx, batch, func(tx pgx.Tx) error { return s.processItems(ctx, tx, batch, nil) })
}

// inTx runs fn in a transaction and commits it; on any error every item
// of batch is set back to Pending (nothing of it was committed).
func (s *Store) inTx(ctx context.Context, batch []dedup.Item[pgx.Tx], fn func(pgx.Tx) error) error {
	reset := func() {
		for i := range batch {
			batch[i].Outcome, batch[i].Err = dedup.Pending, nil
		}
	}
	reset()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgdedup: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		reset()
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		reset()
		return fmt.Errorf("pgdedup: commit: %w", err)
	}
	return nil
}

// recordKeys records, with one statement in tx, the keys of the batch's
// items that may run (first occurrences with a Handle, not marked in
// decided) and returns the repeats (dedup.MarkRepeats) and the keys that
// are new (fresh). When no item may run, it resolves every undecided
// item's outcome itself and returns a nil fresh.
func (s *Store) recordKeys(ctx context.Context, tx pgx.Tx, batch []dedup.Item[pgx.Tx], decided []bool) (first []int, fresh map[dedup.Key]bool, err error) {
	first = dedup.MarkRepeats(batch)
	isDecided := func(i int) bool { return decided != nil && decided[i] }
	type keyTTL struct {
		k   dedup.Key
		ttl time.Duration
	}
	var keys []keyTTL
	for i := range batch {
		if first[i] < 0 && batch[i].Handle != nil && !isDecided(i) {
			keys = append(keys, keyTTL{batch[i].Key, dedup.TTLOr(batch[i].TTL, s.ttl)})
		}
	}
	if len(keys) == 0 {
		for i := range batch {
			if !isDecided(i) {
				s.resolveWithoutRun(batch, first, i)
			}
		}
		return nil, nil, nil
	}
	// Sorted keys lock their rows in one order in every transaction.
	slices.SortFunc(keys, func(a, b keyTTL) int {
		return cmpKey(a.k, b.k)
	})
	gs, es, ids, ttls := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		gs[i], es[i], ids[i], ttls[i] = k.k.Group, k.k.Event, k.k.ID, k.ttl.Microseconds()
	}
	rows, err := tx.Query(ctx, s.insertKeys, gs, es, ids, ttls)
	if err != nil {
		return nil, nil, fmt.Errorf("pgdedup: recording keys: %w", err)
	}
	fresh = make(map[dedup.Key]bool, len(keys))
	var k dedup.Key
	_, err = pgx.ForEachRow(rows, []any{&k.Group, &k.Event, &k.ID}, func() error {
		fresh[k] = true
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("pgdedup: recording keys: %w", err)
	}
	return first, fresh, nil
}

// processItems records the batch's new keys and runs their handlers, each
// in a savepoint, inside tx. Items marked in decided (when not nil) already
// have their outcome. Outcomes are set in place and in order, so that a
// handler sees the earlier items' outcomes.
func (s *Store) processItems(ctx context.Context, tx pgx.Tx, batch []dedup.Item[pgx.Tx], decided []bool) error {
	first, fresh, err := s.recordKeys(ctx, tx, batch, decided)
	if err != nil || fresh == nil {
		return err
	}
	isDecided := func(i int) bool { return decided != nil && decided[i] }
	htx := &handlerTx{Tx: tx}
	saved := false // a savepoint "eventgen_item" is open
	for i := range batch {
		it := &batch[i]
		if isDecided(i) {
			continue
		}
		if first[i] >= 0 || it.Handle == nil || !fresh[it.Key] {
			s.resolveWithoutRun(batch, first, i)
			continue
		}
		// The item's savepoint (after releasing the previous one) goes
		// out with the handler's first statement, in one round trip; a
		// handler that sends none needs none.
		htx.pending = openSavepoint
		if saved {
			htx.pending = nextSavepoint
		}
		herr := it.Handle(ctx, htx)
		if htx.pending == nil {
			saved = true
		}
		if herr != nil {
			if htx.pending == nil {
				if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT eventgen_item"); err != nil {
					return fmt.Errorf("pgdedup: rolling back a failed handler: %w", err)
				}
			}
			if _, err := tx.Exec(ctx, s.deleteKey, it.Key.Group, it.Key.Event, it.Key.ID); err != nil {
				return fmt.Errorf("pgdedup: releasing the key of a failed handler: %w", err)
			}
			it.Outcome, it.Err = dedup.Failed, herr
			continue
		}
		htx.pending = nil
		it.Outcome = dedup.Handled
	}
	if htx.err != nil {
		return htx.err
	}
	return nil
}

// ProcessBatch implements dedup.BatchStore, in one transaction: the keys
// are recorded as in Process, then handle runs every new item at once in a
// savepoint (the SAVEPOINT goes out with handle's first statement). When
// that call fails, its savepoint is rolled back and the first failing item
// is found by bisection, each try in a savepoint: a try that succeeds keeps
// its effects (they are not run again), one that fails is rolled back and
// halved, so a batch of n items with a failing one costs about log2(n)
// more calls. The keys of the failed item and of the items left Pending
// after it are deleted with one statement.
func (s *Store) ProcessBatch(ctx context.Context, batch []dedup.Item[pgx.Tx], handle dedup.BatchFunc[pgx.Tx]) error {
	return s.inTx(ctx, batch, func(tx pgx.Tx) error { return s.processBatchItems(ctx, tx, batch, nil, handle) })
}

// processBatchItems is processItems with one handler for the batch (see
// ProcessBatch).
func (s *Store) processBatchItems(ctx context.Context, tx pgx.Tx, batch []dedup.Item[pgx.Tx], decided []bool, handle dedup.BatchFunc[pgx.Tx]) error {
	first, fresh, err := s.recordKeys(ctx, tx, batch, decided)
	if err != nil || fresh == nil {
		return err
	}
	isDecided := func(i int) bool { return decided != nil && decided[i] }
	var run []int // the items to run, in order
	for i := range batch {
		if !isDecided(i) && first[i] < 0 && batch[i].Handle != nil && fresh[batch[i].Key] {
			run = append(run, i)
		}
	}
	kept, failed, herr, err := s.bisect(ctx, tx, run, handle)
	if err != nil {
		return err
	}
	if kept < len(run) {
		// Release the keys of the failed item and of those after it.
		n := len(run) - kept
		gs, es, ids := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		for _, i := range run[kept:] {
			gs, es, ids = append(gs, batch[i].Key.Group), append(es, batch[i].Key.Event), append(ids, batch[i].Key.ID)
		}
		if _, err := tx.Exec(ctx, s.deleteKeys, gs, es, ids); err != nil {
			return fmt.Errorf("pgdedup: releasing the keys of a failed batch handler: %w", err)
		}
	}
	pos := 0 // run[pos] is the next item to run
	for i := range batch {
		switch {
		case isDecided(i):
		case pos < len(run) && run[pos] == i:
			switch {
			case pos < kept:
				batch[i].Outcome = dedup.Handled
			case pos == failed:
				batch[i].Outcome, batch[i].Err = dedup.Failed, herr
			default:
				batch[i].Outcome = dedup.Pending
			}
			pos++
		default:
			s.resolveWithoutRun(batch, first, i)
		}
	}
	return nil
}

// bisect runs handle on the items run inside tx and returns how many of
// them (a prefix) have their effects kept, and the index in run of the
// first item that failed on its own (-1: none) with its error. A try runs
// handle on run[lo:hi] in a savepoint, rolled back if it fails. The first
// try is the whole of run; after a failure, the range is halved until one
// item is left: successful halves are kept and the search continues after
// them. The failing item's error is that of a call with that item alone;
// if it succeeds alone, it is kept and the items after it stay to run
// again (a failure that depends on the items before cannot be pinned on
// one item).
func (s *Store) bisect(ctx context.Context, tx pgx.Tx, run []int, handle dedup.BatchFunc[pgx.Tx]) (kept, failed int, herr, err error) {
	if len(run) == 0 {
		return 0, -1, nil, nil
	}
	htx := &handlerTx{Tx: tx}
	saved := false // a savepoint "eventgen_item" is open
	try := func(lo, hi int) (error, error) {
		htx.pending = openSavepoint
		if saved {
			htx.pending = nextSavepoint
		}
		herr := handle(ctx, htx, run[lo:hi:hi])
		sent := htx.pending == nil
		htx.pending = nil
		if sent {
			saved = true
		}
		if htx.err != nil {
			return nil, htx.err
		}
		if herr != nil && sent {
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT eventgen_item"); err != nil {
				return nil, fmt.Errorf("pgdedup: rolling back a failed batch handler: %w", err)
			}
		}
		return herr, nil
	}
	herr, err = try(0, len(run))
	if err != nil || herr == nil {
		return len(run), -1, nil, err
	}
	// [lo, hi) fails after run[:lo] is kept; [flo, fhi) gave herr.
	lo, hi, flo, fhi := 0, len(run), 0, len(run)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		e, err := try(lo, mid)
		if err != nil {
			return 0, -1, nil, err
		}
		if e == nil {
			lo = mid
			continue
		}
		hi, flo, fhi, herr = mid, lo, mid, e
	}
	if flo != lo || fhi != lo+1 {
		if herr, err = try(lo, lo+1); err != nil {
			return 0, -1, nil, err
		}
		if herr == nil {
			return lo + 1, -1, nil, nil
		}
	}
	return lo, lo, herr, nil
}

// The statements that open an item's savepoint: the first item's, and a
// later one's, which releases the previous item's (its effects stay in the
// transaction) so that subtransactions do not pile up.
var (
	openSavepoint = []string{"SAVEPOINT eventgen_item"}
	nextSavepoint = []string{"RELEASE SAVEPOINT eventgen_item", "SAVEPOINT eventgen_item"}
)

// resolveWithoutRun sets the outcome of an item whose handler does not
// run: a repeat of an earlier item, an item without Handle, a recorded key.
func (s *Store) resolveWithoutRun(batch []dedup.Item[pgx.Tx], first []int, i int) {
	it := &batch[i]
	switch {
	case first[i] >= 0:
		it.Outcome = dedup.ResolveRepeat(batch[first[i]].Outcome)
	case it.Handle == nil:
		it.Outcome, it.Err = dedup.Failed, dedup.ErrNoHandle
	default:
		it.Outcome = dedup.Duplicate
	}
}

func cmpKey(a, b dedup.Key) int {
	if c := strings.Compare(a.Group, b.Group); c != 0 {
		return c
	}
	if c := strings.Compare(a.Event, b.Event); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// errTxOwned is returned to a handler that tries to end the store's
// transaction.
var errTxOwned = errors.New("pgdedup: the transaction belongs to the dedup store; a handler must not commit or roll it back")

// handlerTx is the transaction given to handlers: the store's, except that
// Commit and Rollback are refused (the store commits the batch; a handler
// fails by returning an error), and that the item's savepoint is sent with
// the handler's first statement: in the same round trip for Exec (a
// pgx.Batch; the savepoint comes first, so a failing statement leaves it
// in place), before it otherwise. Begin opens a nested savepoint as usual.
type handlerTx struct {
	pgx.Tx
	pending []string // the savepoint statements not sent yet
	err     error    // a savepoint that failed to open: the batch fails
}

func (*handlerTx) Commit(context.Context) error   { return errTxOwned }
func (*handlerTx) Rollback(context.Context) error { return errTxOwned }

// flush sends the pending savepoint statements on their own.
func (h *handlerTx) flush(ctx context.Context) error {
	if h.pending == nil {
		return nil
	}
	var b pgx.Batch
	for _, sql := range h.pending {
		b.Queue(sql)
	}
	h.pending = nil
	if err := h.Tx.SendBatch(ctx, &b).Close(); err != nil {
		h.err = fmt.Errorf("pgdedup: savepoint: %w", err)
		return h.err
	}
	return nil
}

func (h *handlerTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if h.pending == nil {
		return h.Tx.Exec(ctx, sql, args...)
	}
	var b pgx.Batch
	for _, sp := range h.pending {
		b.Queue(sp)
	}
	h.pending = nil
	var tag pgconn.CommandTag
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	br := h.Tx.SendBatch(ctx, &b)
	for range len(b.QueuedQueries) - 1 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			h.err = fmt.Errorf("pgdedup: savepoint: %w", err)
			return tag, h.err
		}
	}
	if err := br.Close(); err != nil {
		return tag, err
	}
	return tag, nil
}

func (h *handlerTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := h.flush(ctx); err != nil {
		return nil, err
	}
	return h.Tx.Query(ctx, sql, args...)
}

func (h *handlerTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := h.flush(ctx); err != nil {
		return errRow{err}
	}
	return h.Tx.QueryRow(ctx, sql, args...)
}

func (h *handlerTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if h.pending != nil {
		pre := append([]*pgx.QueuedQuery(nil), b.QueuedQueries...)
		b.QueuedQueries = b.QueuedQueries[:0]
		for _, sp := range h.pending {
			b.Queue(sp)
		}
		b.QueuedQueries = append(b.QueuedQueries, pre...)
		n := len(h.pending)
		h.pending = nil
		br := h.Tx.SendBatch(ctx, b)
		for range n {
			if _, err := br.Exec(); err != nil {
				h.err = fmt.Errorf("pgdedup: savepoint: %w", err)
			}
		}
		return br
	}
	return h.Tx.SendBatch(ctx, b)
}

func (h *handlerTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := h.flush(ctx); err != nil {
		return 0, err
	}
	return h.Tx.CopyFrom(ctx, table, columns, src)
}

func (h *handlerTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := h.flush(ctx); err != nil {
		return nil, err
	}
	return h.Tx.Prepare(ctx, name, sql)
}

func (h *handlerTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := h.flush(ctx); err != nil {
		return nil, err
	}
	return h.Tx.Begin(ctx)
}

func (h *handlerTx) LargeObjects() pgx.LargeObjects {
	_ = h.flush(context.Background())
	return h.Tx.LargeObjects()
}

// Conn gives the handler the connection itself: statements sent through it
// bypass the savepoint, which is therefore opened first.
func (h *handlerTx) Conn() *pgx.Conn {
	_ = h.flush(context.Background())
	return h.Tx.Conn()
}

// errRow is the Row of a QueryRow whose savepoint failed.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// LoadOffsets implements dedup.OffsetStore.
func (s *Store) LoadOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, s.loadOffsets, group, topic)
	if err != nil {
		return nil, fmt.Errorf("pgdedup: loading offsets of %s/%s: %w", group, topic, err)
	}
	out := map[int32]int64{}
	var p int32
	var off int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error {
		out[p] = off
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pgdedup: loading offsets of %s/%s: %w", group, topic, err)
	}
	return out, nil
}

// ProcessAt implements dedup.OffsetStore: the partition's offset row is
// created if missing and locked (SELECT ... FOR UPDATE) first, so that two
// owners of the partition (a rebalance in progress, a zombie) serialise
// on it and the second skips what the first committed.
func (s *Store) ProcessAt(ctx context.Context, at dedup.Partition, batch []dedup.Item[pgx.Tx], offsets []int64) (int64, error) {
	return s.processAt(ctx, at, batch, offsets, func(tx pgx.Tx, decided []bool) error {
		return s.processItems(ctx, tx, batch, decided)
	})
}

// ProcessBatchAt implements dedup.BatchOffsetStore: ProcessAt, with the
// handlers run as in ProcessBatch.
func (s *Store) ProcessBatchAt(ctx context.Context, at dedup.Partition, batch []dedup.Item[pgx.Tx], offsets []int64, handle dedup.BatchFunc[pgx.Tx]) (int64, error) {
	return s.processAt(ctx, at, batch, offsets, func(tx pgx.Tx, decided []bool) error {
		return s.processBatchItems(ctx, tx, batch, decided, handle)
	})
}

// processAt is ProcessAt with proc processing the undecided items.
func (s *Store) processAt(ctx context.Context, at dedup.Partition, batch []dedup.Item[pgx.Tx], offsets []int64, proc func(tx pgx.Tx, decided []bool) error) (int64, error) {
	stored := int64(-1)
	if len(offsets) != len(batch) {
		return stored, dedup.ErrOffsets(len(batch), len(offsets))
	}
	next := stored
	err := s.inTx(ctx, batch, func(tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(s.initOffset, at.Group, at.Topic, at.Partition)
		b.Queue(s.lockOffset, at.Group, at.Topic, at.Partition).QueryRow(func(r pgx.Row) error { return r.Scan(&stored) })
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("pgdedup: locking the offset of %s/%d: %w", at.Topic, at.Partition, err)
		}
		decided := make([]bool, len(batch))
		for i := range batch {
			switch {
			case offsets[i] < stored:
				batch[i].Outcome, decided[i] = dedup.Duplicate, true // processed by an earlier owner
			case batch[i].Handle == nil:
				batch[i].Outcome, decided[i] = dedup.Handled, true // passed without effects
			}
		}
		if err := proc(tx, decided); err != nil {
			return err
		}
		next = dedup.NextOffset(batch, offsets, stored)
		if next == stored {
			return nil
		}
		if _, err := tx.Exec(ctx, s.saveOffset, at.Group, at.Topic, at.Partition, next); err != nil {
			return fmt.Errorf("pgdedup: storing the offset of %s/%d: %w", at.Topic, at.Partition, err)
		}
		return nil
	})
	if err != nil {
		return stored, err
	}
	return next, nil
}

// ErrConnect is matched by Connect's errors.
var ErrConnect = errors.New("pgdedup: cannot connect to PostgreSQL")

// Connect opens a pool on dsn (a postgres:// URL or key=value string) and
// pings it. Its errors never contain the DSN's password: they show the
// DSN with the password replaced by "xxxxx", and the cause's text with any
// occurrence of the password replaced too (the cause itself is not
// wrapped, since pgx's parse errors carry the raw string).
func Connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	fail := func(err error) error {
		return fmt.Errorf("%w %s: %s", ErrConnect, Redact(dsn), scrub(err.Error(), password(dsn)))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fail(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fail(err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fail(err)
	}
	return pool, nil
}

// Redact returns dsn with its password replaced by "xxxxx", for logs.
func Redact(dsn string) string {
	if pw := password(dsn); pw != "" {
		return strings.ReplaceAll(dsn, pw, "xxxxx")
	}
	return dsn
}

// password returns the password in dsn, "" if none is found.
func password(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if pw, ok := u.User.Password(); ok {
			// The raw (escaped) form is what the string contains.
			if raw := strings.SplitN(strings.TrimPrefix(u.User.String(), u.User.Username()), ":", 2); len(raw) == 2 && raw[1] != "" {
				return raw[1]
			}
			return pw
		}
		return ""
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		// An unparsable URL: take what sits between ':' and '@' in the
		// authority.
		auth, _, _ := strings.Cut(dsn[i+3:], "/")
		if at := strings.LastIndex(auth, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(auth[:at], ":"); ok {
				return pw
			}
		}
	}
	return ""
}

func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "xxxxx")
	if un, err := url.PathUnescape(secret); err == nil && un != secret && un != "" {
		s = strings.ReplaceAll(s, un, "xxxxx")
	}
	return s
}
