package pgddl

import (
	"slices"
	"testing"

	"github.com/eventgen/eventgen/runtime/internal/svctest"
	"github.com/eventgen/eventgen/templates"
)

// TestMissingChecksWhatTheDDLWouldHaveMade: the check that lets a role
// that may not run the DDL pass must be no more lenient than the DDL is for
// the owner. A view by the table's name is not the table (the owner's
// Migrate fails on it), and an index by the right name on another table
// (or in another schema of the search_path) is not the table's index.
//
// The first version of the check looked names up with to_regclass alone
// and took both for present.
func TestMissingChecksWhatTheDDLWouldHaveMade(t *testing.T) {
	pool, schema := svctest.Postgres(t, 2)
	ctx := t.Context()
	for _, stmt := range []string{
		`CREATE TABLE good (k int)`,
		`CREATE INDEX good_k ON good (k)`,
		`CREATE VIEW looks_like_a_table AS SELECT 1 AS k`,
		`CREATE TABLE other (k int)`,
		`CREATE INDEX good_elsewhere ON other (k)`,
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	q := templates.QualifiedName(schema, "good")
	rels := []templates.Relation{
		{Table: `"good"`},
		{Table: q, Index: "good_k"},
		{Table: `"looks_like_a_table"`},
		{Table: q, Index: "good_elsewhere"},
		{Table: `"absent"`},
		{Table: `"absent"`, Index: "absent_k"},
	}
	got, err := Missing(ctx, pool, rels)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`table "looks_like_a_table" (a view has that name)`,
		`index "good_elsewhere" on ` + q,
		`table "absent"`,
		`index "absent_k" on "absent"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Missing = %q, want %q", got, want)
	}
}
