package pgdedup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/deduptest"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
	"github.com/eventgen/eventgen/templates"
)

// newStore migrates a fresh schema and returns a Store on it.
func newStore(t *testing.T, opts Options) (*Store, *pgxpool.Pool, string) {
	t.Helper()
	return newStoreTB(t, opts)
}

func newStoreB(b *testing.B) (*Store, *pgxpool.Pool, string) { return newStoreTB(b, Options{}) }

func newStoreTB(t testing.TB, opts Options) (*Store, *pgxpool.Pool, string) {
	t.Helper()
	pool, schema := svctest.Postgres(t, 8)
	if opts.Schema == "" {
		opts.Schema = schema
	}
	if err := Migrate(t.Context(), pool, opts); err != nil {
		t.Fatal(err)
	}
	s, err := New(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, pool, schema
}

func TestConformance(t *testing.T) {
	deduptest.Run(t, func(t *testing.T) deduptest.Harness[pgx.Tx] {
		s, pool, _ := newStore(t, Options{})
		// A deferrable constraint violated inside a handler fails only at
		// COMMIT: the store's own failure, after every handler succeeded.
		if _, err := pool.Exec(t.Context(), `CREATE TABLE fail_commit (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)`); err != nil {
			t.Fatal(err)
		}
		return deduptest.Harness[pgx.Tx]{
			Store: s,
			FailCommit: func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO fail_commit VALUES (1), (1)`)
				return err
			},
		}
	})
	deduptest.RunOffsets(t, func(t *testing.T) dedup.OffsetStore[pgx.Tx] {
		s, _, _ := newStore(t, Options{})
		return s
	})
}

func TestBatchConformance(t *testing.T) {
	deduptest.RunBatch(t, func(t *testing.T) deduptest.BatchHarness[pgx.Tx] {
		s, pool, _ := newStore(t, Options{})
		if _, err := pool.Exec(t.Context(), `CREATE TABLE batch_effects (id text PRIMARY KEY, n int NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		return deduptest.BatchHarness[pgx.Tx]{
			Store: s,
			Apply: func(ctx context.Context, tx pgx.Tx, ids []string) error {
				_, err := tx.Exec(ctx, `INSERT INTO batch_effects (id, n) SELECT unnest($1::text[]), 1
ON CONFLICT (id) DO UPDATE SET n = batch_effects.n + 1`, ids)
				return err
			},
			Effects: func(t *testing.T) map[string]int {
				rows, err := pool.Query(t.Context(), `SELECT id, n FROM batch_effects`)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				var id string
				var n int
				if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { got[id] = n; return nil }); err != nil {
					t.Fatal(err)
				}
				return got
			},
		}
	})
}

// ledger is the business table of the effect tests: balance += amount.
func ledger(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), `CREATE TABLE ledger (account text PRIMARY KEY, balance bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func credit(account string, amount int64, then error) func(context.Context, pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO ledger VALUES ($1, $2) ON CONFLICT (account) DO UPDATE SET balance = ledger.balance + excluded.balance`, account, amount)
		if err != nil {
			return err
		}
		return then
	}
}

func balance(t *testing.T, pool *pgxpool.Pool, account string) int64 {
	t.Helper()
	var b int64
	err := pool.QueryRow(t.Context(), `SELECT balance FROM ledger WHERE account = $1`, account).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func item(g, id string, h func(context.Context, pgx.Tx) error) dedup.Item[pgx.Tx] {
	return dedup.Item[pgx.Tx]{Key: dedup.Key{Group: g, Event: "Credit", ID: id}, TTL: time.Hour, Handle: h}
}

// Effects commit with the key and roll back with a failed handler, whose
// savepoint also undoes a statement error (an aborted transaction) without
// touching the other items' effects.
func TestEffectsAtomicWithKey(t *testing.T) {
	s, pool, _ := newStore(t, Options{})
	ledger(t, pool)
	boom := errors.New("boom")
	batch := []dedup.Item[pgx.Tx]{
		item("g", "1", credit("acc", 10, nil)),
		item("g", "2", credit("acc", 100, boom)), // effect written, then the handler fails
		item("g", "3", func(ctx context.Context, tx pgx.Tx) error { // a statement error aborts the transaction
			_, err := tx.Exec(ctx, `SELECT 1/0`)
			return err
		}),
		item("g", "4", credit("acc", 1000, nil)),
		item("g", "5", func(ctx context.Context, tx pgx.Tx) error { // a query, then a failing batch
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
				return err
			}
			if err := credit("acc", 10000, nil)(ctx, tx); err != nil {
				return err
			}
			var b pgx.Batch
			b.Queue(`SELECT 1/0`)
			return tx.SendBatch(ctx, &b).Close()
		}),
		item("g", "6", func(context.Context, pgx.Tx) error { return boom }), // fails without a statement
		item("g", "7", credit("acc", 100000, nil)),
	}
	if err := s.Process(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range batch {
		got = append(got, it.Outcome.String())
	}
	if fmt.Sprint(got) != "[handled failed failed handled failed failed handled]" {
		t.Fatalf("outcomes %s", got)
	}
	if b := balance(t, pool, "acc"); b != 101010 {
		t.Fatalf("balance %d, want 101010: only the handled items' effects commit", b)
	}
	if _, err := pool.Exec(t.Context(), `UPDATE ledger SET balance = balance - 100000`); err != nil {
		t.Fatal(err)
	}
	if b := balance(t, pool, "acc"); b != 1010 {
		t.Fatalf("balance %d, want 1010: only the handled items' effects commit", b)
	}
	// Redelivery: 1 and 4 are duplicates, 2 runs again and commits.
	batch = []dedup.Item[pgx.Tx]{item("g", "1", credit("acc", 10, nil)), item("g", "2", credit("acc", 100, nil)), item("g", "4", credit("acc", 1000, nil))}
	if err := s.Process(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if b := balance(t, pool, "acc"); b != 1110 {
		t.Fatalf("balance %d after the redelivery, want 1110", b)
	}
}

func TestHandlerCannotEndTheTransaction(t *testing.T) {
	s, _, _ := newStore(t, Options{})
	for _, end := range []func(pgx.Tx) error{
		func(tx pgx.Tx) error { return tx.Commit(context.Background()) },
		func(tx pgx.Tx) error { return tx.Rollback(context.Background()) },
	} {
		b := []dedup.Item[pgx.Tx]{item("g", "1", func(ctx context.Context, tx pgx.Tx) error { return end(tx) })}
		if err := s.Process(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		if b[0].Outcome != dedup.Failed || !errors.Is(b[0].Err, errTxOwned) {
			t.Fatalf("a handler ending the transaction: %s %v, want failed with errTxOwned", b[0].Outcome, b[0].Err)
		}
	}
}

// Batches that share keys in opposite orders do not deadlock: keys are
// inserted sorted.
func TestOverlappingBatchesDoNotDeadlock(t *testing.T) {
	s, _, _ := newStore(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for round := range 30 {
				var b []dedup.Item[pgx.Tx]
				for k := range 20 {
					id := k
					if w%2 == 1 {
						id = 19 - k
					}
					b = append(b, item(fmt.Sprintf("r%d", round), fmt.Sprint(id), func(ctx context.Context, tx pgx.Tx) error { return nil }))
				}
				if err := s.Process(context.Background(), b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent overlapping batches: %v", err)
	}
}

func TestOptionsValidatedAndQuoted(t *testing.T) {
	_, err := New(nil, Options{Schema: "bad schema", Table: `x"; DROP TABLE y; --`, OffsetsTable: "1abc", TTL: -1})
	if !errors.Is(err, ErrInvalidOptions) || !errors.Is(err, templates.ErrInvalidName) {
		t.Fatalf("err = %v, want ErrInvalidOptions and templates.ErrInvalidName", err)
	}
	for _, want := range []string{"pgdedup.Options.Schema", "pgdedup.Options.Table", "pgdedup.Options.OffsetsTable", "pgdedup.Options.TTL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	// Upper case would make the quoted name differ from the unquoted one
	// an operator types: refused, like the outbox's table names.
	if _, err := New(nil, Options{Table: "Processed_Events"}); !errors.Is(err, templates.ErrInvalidName) || !strings.Contains(err.Error(), "pgdedup.Options.Table") {
		t.Fatalf("New with an upper-case table = %v, want templates.ErrInvalidName naming pgdedup.Options.Table", err)
	}
	// A schema of its own and names of one's own: quoted, and found by
	// unquoted SQL too.
	pool, schema := svctest.Postgres(t, 2)
	opts := Options{Schema: schema + "_own", Table: "processed_events", OffsetsTable: "consumer_offsets"}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP SCHEMA "`+opts.Schema+`" CASCADE`) })
	for range 2 { // Migrate is idempotent
		if err := Migrate(t.Context(), pool, opts); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := []dedup.Item[pgx.Tx]{item("g", "1", func(context.Context, pgx.Tx) error { return nil })}
	if err := s.Process(t.Context(), b); err != nil || b[0].Outcome != dedup.Handled {
		t.Fatalf("Process on quoted tables: %v %s", err, b[0].Outcome)
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM `+opts.Schema+`.processed_events`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows in the table: %d, %v", n, err)
	}
}

func TestConnectNeverShowsThePassword(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	for _, dsn := range []string{
		"postgres://postgres:" + pw + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", // refused
		"postgres://postgres:" + pw + "@127.0.0.1:notaport/test",                            // unparsable
		"host=127.0.0.1 port=1 user=postgres password=" + pw + " dbname=test connect_timeout=2",
		"postgres://postgres:" + pw + "@127.0.0.1:5432/test?sslmode=disable&search_path=%ZZ", // bad escape
	} {
		_, err := Connect(t.Context(), dsn)
		if err == nil {
			t.Fatalf("Connect(%s) succeeded", Redact(dsn))
		}
		if !errors.Is(err, ErrConnect) {
			t.Errorf("error %v does not match ErrConnect", err)
		}
		for e := error(err); e != nil; e = errors.Unwrap(e) {
			if strings.Contains(e.Error(), pw) {
				t.Fatalf("error shows the password: %v", e)
			}
		}
		if strings.Contains(Redact(dsn), pw) {
			t.Fatalf("Redact(dsn) shows the password: %s", Redact(dsn))
		}
		t.Logf("%v", err)
	}
	pool, err := Connect(t.Context(), svctest.PostgresURL())
	if err != nil {
		t.Skipf("no server to check a successful Connect: %v", err)
	}
	pool.Close()
}
