package outbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// TestMigrateByARoleThatDoesNotOwnTheTable: a service's role may enqueue
// into an outbox table a migration role created, not create or alter it.
// Migrate at the service's start must succeed then, and Enqueue work; with
// an index missing, the error names it.
//
// Failed before the fix: "permission denied for schema" from CREATE TABLE
// IF NOT EXISTS, which PostgreSQL checks before it looks for the table.
func TestMigrateByARoleThatDoesNotOwnTheTable(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	if err := Migrate(ctx, db.pool, Table{}); err != nil { // the owner's
		t.Fatal(err)
	}
	app, role := svctest.Role(t, db.schema)
	if _, err := db.pool.Exec(ctx, "GRANT SELECT, INSERT, UPDATE, DELETE ON eventgen_outbox TO "+role); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []Table{{}, {Schema: db.schema}} {
		if err := Migrate(ctx, app, tb); err != nil {
			t.Fatalf("Migrate(%+v) by role %s, the table and its indexes there: %v", tb, role, err)
		}
	}
	et := testevent.Type("t", event.AtLeastOnce)
	if err := pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error { return Table{}.Enqueue(ctx, tx, seqEvent(et, "k", 0)) }); err != nil {
		t.Fatalf("Enqueue by role %s: %v", role, err)
	}

	if _, err := db.pool.Exec(ctx, "DROP INDEX eventgen_outbox_held"); err != nil {
		t.Fatal(err)
	}
	err := Migrate(ctx, app, Table{})
	if err == nil {
		t.Fatalf("Migrate by role %s with an index missing = nil, want an error naming it", role)
	}
	for _, want := range []string{"permission denied", `"eventgen_outbox_held"`, "run Migrate as a role that may create them"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), `"eventgen_outbox_pending"`) {
		t.Errorf("error names an index that exists:\n%v", err)
	}
}

// TestMigrateCreatesTheTablesSchema: a table in a schema of its own needs
// no step before Migrate, as with pgdedup.Migrate. Failed before the fix:
// `schema "..." does not exist`.
func TestMigrateCreatesTheTablesSchema(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	tb := Table{Schema: db.schema + "_own", Name: "orders_outbox"}
	t.Cleanup(func() { _, _ = db.pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+tb.Schema+`" CASCADE`) })
	for range 2 { // idempotent
		if err := Migrate(ctx, db.pool, tb); err != nil {
			t.Fatalf("Migrate(%+v): %v", tb, err)
		}
	}
	et := testevent.Type("t", event.AtLeastOnce)
	if err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return tb.Enqueue(ctx, tx, seqEvent(et, "k", 0)) }); err != nil {
		t.Fatalf("Enqueue to %+v: %v", tb, err)
	}
	if n := db.count(t, "SELECT count(*) FROM "+tb.Schema+".orders_outbox"); n != 1 {
		t.Fatalf("%s.orders_outbox holds %d rows, want 1", tb.Schema, n)
	}
}

// TestMigrateByTheOwnerOfASchema: a role that owns the schema its outbox
// table lives in, but may not create schemas (no CREATE on the database,
// the default for roles other than the database's owner), creates the
// table there and, as the table's owner, puts a dropped index back; what
// `eventgen relay --schema ... --migrate` does.
//
// Failed before the fix: CREATE SCHEMA IF NOT EXISTS, which PostgreSQL
// refuses such a role although the schema exists ("permission denied for
// database"), so nothing was created.
func TestMigrateByTheOwnerOfASchema(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	app, role := svctest.Role(t, db.schema)
	own := role + "_own"
	// Dropped with the role's objects (svctest.Role's DROP OWNED).
	if _, err := db.pool.Exec(ctx, "CREATE SCHEMA "+own+" AUTHORIZATION "+role); err != nil {
		t.Fatal(err)
	}
	tb := Table{Schema: own}
	if err := Migrate(ctx, app, tb); err != nil {
		t.Fatalf("Migrate(%+v) by the schema's owner %s: %v", tb, role, err)
	}
	if _, err := app.Exec(ctx, "DROP INDEX "+own+".eventgen_outbox_held"); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, app, tb); err != nil {
		t.Fatalf("Migrate(%+v) by the table's owner, an index dropped: %v", tb, err)
	}
	if n := db.count(t, "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'eventgen_outbox_held'", own); n != 1 {
		t.Fatalf("%s.eventgen_outbox_held: %d, want it put back", own, n)
	}
}

// TestMigrateOutboxAndDedupTogether: a service that migrates its outbox and
// its dedup tables at start, into one new schema, while another process
// does the same (or `eventgen relay --migrate` starts): both Migrate
// functions create the schema, so they must take one lock.
//
// Failed before the fix (each took a lock of its own) on one side of
// nearly every run: duplicate key value violates unique constraint
// "pg_namespace_nspname_index".
func TestMigrateOutboxAndDedupTogether(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	schema := db.schema + "_both"
	drop := func() {
		if _, err := db.pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(drop)
	for range 20 {
		drop()
		errs := make(chan error, 2)
		go func() { errs <- Migrate(ctx, db.pool, Table{Schema: schema}) }()
		go func() { errs <- pgdedup.Migrate(ctx, db.pool, pgdedup.Options{Schema: schema}) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("outbox.Migrate and pgdedup.Migrate into new schema %s at once: %v", schema, err)
			}
		}
	}
	if n := db.count(t, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema); n != 3 {
		t.Fatalf("schema %s holds %d tables, want 3 (outbox, dedup, offsets)", schema, n)
	}
}

// TestMigrateWhenEverythingExistsWaitsForNothing: a service starting while
// others write to the outbox. With the table and its indexes there,
// Migrate must not wait for the writers' transactions, nor make new writers
// (and every other Migrate in the database, behind the advisory lock) wait
// for it.
//
// Failed before the fix (found by review): CREATE INDEX IF NOT EXISTS
// takes a SHARE lock on the table even when the index exists, so Migrate
// waited for the open transaction below until its context ended.
func TestMigrateWhenEverythingExistsWaitsForNothing(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	if err := Migrate(ctx, db.pool, Table{}); err != nil {
		t.Fatal(err)
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	et := testevent.Type("t", event.AtLeastOnce)
	if err := (Table{}).Enqueue(ctx, tx, seqEvent(et, "k", 0)); err != nil { // ROW EXCLUSIVE, held
		t.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, kafkatest.Timeout(10*time.Second))
	defer cancel()
	if err := Migrate(mctx, db.pool, Table{}); err != nil {
		t.Fatalf("Migrate with the table there and a writer's transaction open: %v", err)
	}
}
