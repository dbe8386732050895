package templates

import (
	"bytes"
	"errors"
	"fmt"
)

// Default table names of the SQL eventgen generates (see SQLTables).
const (
	DefaultDedupTable   = "eventgen_dedup"
	DefaultOffsetsTable = "eventgen_offsets"
)

// SQLTables names the tables of eventgen's PostgreSQL DDL: the dedup
// records and the consumer offsets. A zero field takes its default. Names
// must be plain identifiers (CheckName), short enough for PostgreSQL's
// 63-byte identifiers with the index suffix, and are always quoted in SQL,
// never spliced raw.
type SQLTables struct {
	// Schema is the PostgreSQL schema of the tables. Default "": the
	// connection's search_path (usually public).
	Schema string
	// Dedup is the dedup table. Default "eventgen_dedup".
	Dedup string
	// Offsets is the offsets table. Default "eventgen_offsets".
	Offsets string
}

// dedupIndexSuffix names the dedup table's expiry index.
const dedupIndexSuffix = "_expires_at_idx"

// WithDefaults returns t with its zero fields set to their defaults.
func (t SQLTables) WithDefaults() SQLTables {
	if t.Dedup == "" {
		t.Dedup = DefaultDedupTable
	}
	if t.Offsets == "" {
		t.Offsets = DefaultOffsetsTable
	}
	return t
}

// Validate reports every invalid name of t (after defaults) in one error
// matching ErrInvalidName. fields says where each name was configured, for
// the messages: pgdedup passes its Options' field names
// ({"pgdedup.Options.Schema", "pgdedup.Options.Table", ...}); an empty
// field is called SQLTables.Schema, SQLTables.Dedup or SQLTables.Offsets.
func (t SQLTables) Validate(fields SQLTables) error {
	t = t.WithDefaults()
	fields = fields.labels()
	var errs []error
	if t.Schema != "" {
		errs = append(errs, CheckSchema(fields.Schema, t.Schema))
	}
	errs = append(errs,
		CheckName(fields.Dedup, t.Dedup, MaxIdent-len(dedupIndexSuffix)),
		CheckName(fields.Offsets, t.Offsets, MaxIdent))
	if t.Dedup == t.Offsets {
		errs = append(errs, fmt.Errorf("%w: %s and %s are both %q", ErrInvalidName, fields.Dedup, fields.Offsets, t.Dedup))
	}
	return errors.Join(errs...)
}

// labels fills the empty fields of field labels with SQLTables' own names.
func (fields SQLTables) labels() SQLTables {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&fields.Schema, "SQLTables.Schema")
	def(&fields.Dedup, "SQLTables.Dedup")
	def(&fields.Offsets, "SQLTables.Offsets")
	return fields
}

// QuotedSQLTables are the quoted, schema-qualified names of SQLTables,
// ready for SQL text.
type QuotedSQLTables struct {
	Dedup      string
	DedupIndex string // unqualified: an index lives in its table's schema
	Offsets    string
}

// Quoted validates t (see Validate for fields) and returns its names
// quoted, with defaults.
func (t SQLTables) Quoted(fields SQLTables) (QuotedSQLTables, error) {
	if err := t.Validate(fields); err != nil {
		return QuotedSQLTables{}, err
	}
	t = t.WithDefaults()
	out := QuotedSQLTables{
		Dedup:      QualifiedName(t.Schema, t.Dedup),
		DedupIndex: QuoteIdent(t.Dedup + dedupIndexSuffix),
		Offsets:    QualifiedName(t.Schema, t.Offsets),
	}
	return out, nil
}

// Relation is a table or index the runtime's DDL creates, for a check that
// it exists (runtime/internal/pgddl).
type Relation struct {
	// Table is the table, quoted and schema-qualified when the schema is
	// named (resolved through the search_path otherwise).
	Table string
	// Index, when not empty, names an index of Table (unquoted: a plain
	// identifier), and the relation is that index.
	Index string
}

// Relations returns the tables and indexes RenderSQL creates. Call it on a
// validated t.
func (t SQLTables) Relations() []Relation {
	t = t.WithDefaults()
	dedup := QualifiedName(t.Schema, t.Dedup)
	return []Relation{
		{Table: dedup},
		{Table: dedup, Index: t.Dedup + dedupIndexSuffix},
		{Table: QualifiedName(t.Schema, t.Offsets)},
	}
}

// RenderSQL returns the DDL of eventgen's PostgreSQL tables (dedup records
// and offsets, their indexes and comments), idempotent (CREATE ... IF NOT
// EXISTS); not t's schema, which pgdedup.Migrate creates first. The
// generator writes it into <schema>_postgres.gen.sql and pgdedup.Migrate
// executes it, so the two cannot differ.
func RenderSQL(t SQLTables) (string, error) {
	q, err := t.Quoted(SQLTables{})
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	for i, name := range []string{"dedup.sql.tmpl", "offsets.sql.tmpl"} {
		tmpl, err := Parse(name, nil)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteString("\n")
		}
		if err := tmpl.Execute(&b, q); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	return b.String(), nil
}
