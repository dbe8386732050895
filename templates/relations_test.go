package templates

import (
	"regexp"
	"slices"
	"testing"
)

var (
	createTable = regexp.MustCompile(`CREATE TABLE IF NOT EXISTS (\S+)`)
	createIndex = regexp.MustCompile(`CREATE INDEX IF NOT EXISTS (\S+) ON (\S+) `)
	schemaOf    = regexp.MustCompile(`^("[^"]+")\.`)
)

// created lists, sorted, the relations ddl creates, qualified as
// Relations names them: tables as written, indexes with their table's
// schema.
func created(ddl string) []string {
	var out []string
	for _, m := range createTable.FindAllStringSubmatch(ddl, -1) {
		out = append(out, m[1])
	}
	for _, m := range createIndex.FindAllStringSubmatch(ddl, -1) {
		name := m[1]
		if s := schemaOf.FindStringSubmatch(m[2]); s != nil {
			name = s[1] + "." + name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// names qualifies rels as created does: an index with its table's schema.
func names(rels []Relation) []string {
	var out []string
	for _, r := range rels {
		name := r.Table
		if r.Index != "" {
			name = QuoteIdent(r.Index)
			if s := schemaOf.FindStringSubmatch(r.Table); s != nil {
				name = s[1] + "." + name
			}
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// TestRelationsAreWhatTheDDLCreates: the Migrate functions check that
// Relations exist when a role may not run the DDL (runtime/internal/pgddl);
// a table or index added to a template but not to Relations would pass
// that check while missing.
func TestRelationsAreWhatTheDDLCreates(t *testing.T) {
	for _, tt := range []SQLTables{{}, {Schema: "shop", Dedup: "seen", Offsets: "offs"}} {
		ddl, err := RenderSQL(tt)
		if err != nil {
			t.Fatal(err)
		}
		got := names(tt.Relations())
		if want := created(ddl); !slices.Equal(got, want) {
			t.Errorf("%+v: Relations() = %q, the DDL creates %q", tt, got, want)
		}
	}
	for _, ot := range []OutboxTable{{}, {Schema: "shop", Name: "ob"}} {
		ddl, err := OutboxDDL(ot)
		if err != nil {
			t.Fatal(err)
		}
		got := names(ot.Relations())
		if want := created(ddl); !slices.Equal(got, want) || len(want) != 4 {
			t.Errorf("%+v: Relations() = %q, the DDL creates %q", ot, got, want)
		}
	}
}
