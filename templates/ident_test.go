package templates

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"eventgen_outbox", "_x", "a1", "t", strings.Repeat("a", MaxIdent)} {
		if err := CheckName("f", name, MaxIdent); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		}
	}
	for name, why := range map[string]string{
		"":                              "is empty",
		"Outbox":                        `contains 'O'`,
		"1abc":                          "starts with a digit",
		"bad schema":                    `contains ' '`,
		`x"; DROP TABLE y; --`:          `contains '"'`,
		"café":                          `contains 'Ã'`,
		strings.Repeat("a", MaxIdent+1): "more than 63",
	} {
		err := CheckName("pkg.Options.Table", name, MaxIdent)
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "pkg.Options.Table") || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalidName naming pkg.Options.Table and saying %q", name, err, why)
		}
	}
}

func TestQuoting(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"", "eventgen_outbox"}:     `"eventgen_outbox"`,
		{"shop", "eventgen_outbox"}: `"shop"."eventgen_outbox"`,
		{"", `a"b`}:                 `"a""b"`, // never valid, still harmless
	} {
		if got := QualifiedName(in[0], in[1]); got != want {
			t.Errorf("QualifiedName(%q, %q) = %s, want %s", in[0], in[1], got, want)
		}
	}
}

// TestOneRuleForEveryTable: the outbox's and the dedup store's tables
// accept and refuse the same names, each error naming the field it came
// from, and the DDL quotes what it was given.
func TestOneRuleForEveryTable(t *testing.T) {
	for _, name := range []string{"Upper", "1st", "has space", `q"uote`, strings.Repeat("n", MaxIdent+1)} {
		outboxErr := OutboxTable{Name: name}.Validate("outbox.Table")
		dedupErr := SQLTables{Dedup: name}.Validate(SQLTables{Dedup: "pgdedup.Options.Table"})
		offsetsErr := SQLTables{Offsets: name}.Validate(SQLTables{})
		schemaErr := SQLTables{Schema: name}.Validate(SQLTables{})
		for _, c := range []struct {
			err   error
			field string
		}{{outboxErr, "outbox.Table.Name"}, {dedupErr, "pgdedup.Options.Table"}, {offsetsErr, "SQLTables.Offsets"}} {
			if !errors.Is(c.err, ErrInvalidName) || !strings.Contains(c.err.Error(), c.field) {
				t.Errorf("%q: %v, want ErrInvalidName naming %s", name, c.err, c.field)
			}
		}
		if !errors.Is(schemaErr, ErrInvalidName) {
			t.Errorf("schema %q: %v, want ErrInvalidName", name, schemaErr)
		}
		if _, err := OutboxDDL(OutboxTable{Name: name}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("OutboxDDL(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := RenderSQL(SQLTables{Dedup: name}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("RenderSQL(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	// Every name, index included, is quoted.
	ddl, err := OutboxDDL(OutboxTable{Schema: "shop", Name: "events_out"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`CREATE TABLE IF NOT EXISTS "shop"."events_out"`, `"events_out_pending" ON "shop"."events_out"`} {
		if !strings.Contains(ddl, want) {
			t.Errorf("OutboxDDL does not contain %s:\n%s", want, ddl)
		}
	}
	sql, err := RenderSQL(SQLTables{Schema: "shop", Dedup: "seen", Offsets: "offs"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"shop"."seen"`, `"seen_expires_at_idx" ON "shop"."seen"`, `"shop"."offs"`} {
		if !strings.Contains(sql, want) {
			t.Errorf("RenderSQL does not contain %s:\n%s", want, sql)
		}
	}
}

// TestSystemSchemasAreRefused: a schema named pg_* or information_schema
// is PostgreSQL's: CREATE SCHEMA refuses pg_*, pg_catalog and pg_toast
// refuse tables, and information_schema took them (found by review:
// Migrate then failed with the server's error, or put eventgen's tables
// among the catalogs).
func TestSystemSchemasAreRefused(t *testing.T) {
	for _, name := range []string{"pg_shop", "pg_catalog", "pg_toast", "information_schema"} {
		for _, err := range []error{
			OutboxTable{Schema: name}.Validate("outbox.Table"),
			SQLTables{Schema: name}.Validate(SQLTables{Schema: "pgdedup.Options.Schema"}),
		} {
			if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "system schema") {
				t.Errorf("schema %q: %v, want ErrInvalidName saying it is a system schema", name, err)
			}
		}
	}
	for _, name := range []string{"shop", "pgshop", "information"} {
		if err := CheckSchema("f", name); err != nil {
			t.Errorf("CheckSchema(%q) = %v, want nil", name, err)
		}
	}
}
