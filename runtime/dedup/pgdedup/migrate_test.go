package pgdedup

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
)

// TestMigrateByARoleThatDoesNotOwnTheTables: a service usually runs as a
// role that may use its tables but not create or alter them (a migration
// role created them). Migrate at the service's start must then succeed, as
// it does for the owner, and the store work; with an index missing, its
// error names the index and the way out.
//
// Failed before the fix: PostgreSQL checks privileges before existence,
// so the DDL failed although it would have changed nothing ("permission
// denied for database" on CREATE SCHEMA IF NOT EXISTS, "permission denied
// for schema" on CREATE TABLE IF NOT EXISTS, "must be owner" on COMMENT).
func TestMigrateByARoleThatDoesNotOwnTheTables(t *testing.T) {
	_, owner, schema := newStore(t, Options{}) // migrated by the owner
	app, role := svctest.Role(t, schema)
	ctx := t.Context()
	if _, err := owner.Exec(ctx, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+schema+" TO "+role); err != nil {
		t.Fatal(err)
	}
	// With the schema named and through the search_path.
	for _, opts := range []Options{{Schema: schema}, {}} {
		if err := Migrate(ctx, app, opts); err != nil {
			t.Fatalf("Migrate(%+v) by role %s, every table and index there: %v", opts, role, err)
		}
	}
	s, err := New(app, Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	b := []dedup.Item[pgx.Tx]{item("g", "1", func(context.Context, pgx.Tx) error { return nil })}
	if err := s.Process(ctx, b); err != nil || b[0].Outcome != dedup.Handled {
		t.Fatalf("Process by role %s: %v %s", role, err, b[0].Outcome)
	}

	if _, err := owner.Exec(ctx, "DROP INDEX "+schema+".eventgen_dedup_expires_at_idx"); err != nil {
		t.Fatal(err)
	}
	err = Migrate(ctx, app, Options{Schema: schema})
	if err == nil {
		t.Fatalf("Migrate by role %s with the expiry index missing = nil, want an error naming it", role)
	}
	msg := err.Error()
	for _, want := range []string{"pgdedup: migrate", "permission denied", `"eventgen_dedup_expires_at_idx"`, "run Migrate as a role that may create them"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(msg, `"eventgen_offsets"`) {
		t.Errorf("error names the offsets table, which exists:\n%v", err)
	}
	// The owner's Migrate puts the index back; the role's passes again.
	if err := Migrate(ctx, owner, Options{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, app, Options{Schema: schema}); err != nil {
		t.Fatalf("Migrate by role %s after the owner's: %v", role, err)
	}
}

// TestMigrateByTheOwnerOfASchema: a role that owns the schema named in
// Options.Schema but may not create schemas (no CREATE on the database,
// the default for roles other than the database's owner) creates the
// tables there. Failed before the fix: CREATE SCHEMA IF NOT EXISTS, which
// PostgreSQL refuses such a role although the schema exists.
func TestMigrateByTheOwnerOfASchema(t *testing.T) {
	owner, schema := svctest.Postgres(t, 2)
	app, role := svctest.Role(t, schema)
	ctx := t.Context()
	own := role + "_own"
	// Dropped with the role's objects (svctest.Role's DROP OWNED).
	if _, err := owner.Exec(ctx, "CREATE SCHEMA "+own+" AUTHORIZATION "+role); err != nil {
		t.Fatal(err)
	}
	opts := Options{Schema: own}
	if err := Migrate(ctx, app, opts); err != nil {
		t.Fatalf("Migrate(%+v) by the schema's owner %s: %v", opts, role, err)
	}
	s, err := New(app, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := []dedup.Item[pgx.Tx]{item("g", "1", func(context.Context, pgx.Tx) error { return nil })}
	if err := s.Process(ctx, b); err != nil || b[0].Outcome != dedup.Handled {
		t.Fatalf("Process by role %s: %v %s", role, err, b[0].Outcome)
	}
}

// TestMigrateByARoleThatMayNotCreateTheSchema: the schema named in Options
// does not exist and the role may not create schemas: the error says so,
// and only that (not a list of every table as missing).
func TestMigrateByARoleThatMayNotCreateTheSchema(t *testing.T) {
	_, schema := svctest.Postgres(t, 2)
	app, role := svctest.Role(t, schema)
	opts := Options{Schema: role + "_new"}
	err := Migrate(t.Context(), app, opts)
	if err == nil {
		t.Fatalf("Migrate(%+v) by role %s, which may not create schemas = nil", opts, role)
	}
	msg := err.Error()
	if !strings.Contains(msg, `creating schema "`+opts.Schema+`"`) || !strings.Contains(msg, "permission denied") || strings.Contains(msg, "missing") {
		t.Fatalf("error does not say that the schema could not be created, and only that:\n%v", err)
	}
}
