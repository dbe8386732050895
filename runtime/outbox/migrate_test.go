package outbox

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
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
	for _, want := range []string{"permission denied", `"eventgen_outbox_held"`, "generated SQL file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), `"eventgen_outbox_pending"`) {
		t.Errorf("error names an index that exists:\n%v", err)
	}
}
