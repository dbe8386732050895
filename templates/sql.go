package templates

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Default table names of the SQL eventgen generates (see SQLTables).
const (
	DefaultDedupTable   = "eventgen_dedup"
	DefaultOffsetsTable = "eventgen_offsets"
)

// SQLTables names the tables of eventgen's PostgreSQL DDL: the dedup
// records and the consumer offsets. A zero field takes its default. Names
// are validated (letters, digits and underscores, not starting with a
// digit, short enough for PostgreSQL's 63-byte identifiers with the index
// suffix) and always quoted in SQL, never spliced raw.
type SQLTables struct {
	// Schema is the PostgreSQL schema of the tables. Default "": the
	// connection's search_path (usually public).
	Schema string
	// Dedup is the dedup table. Default "eventgen_dedup".
	Dedup string
	// Offsets is the offsets table. Default "eventgen_offsets".
	Offsets string
}

// ErrInvalidName is matched by the error of a table or schema name that is
// not a plain SQL identifier.
var ErrInvalidName = errors.New("invalid SQL name")

// dedupIndexSuffix names the dedup table's expiry index.
const dedupIndexSuffix = "_expires_at_idx"

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

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
// matching ErrInvalidName; field names the struct in the messages, e.g.
// "pgdedup.Options".
func (t SQLTables) Validate(field string) error {
	t = t.WithDefaults()
	var errs []error
	check := func(name, v string, max int) {
		switch {
		case !identRE.MatchString(v):
			errs = append(errs, fmt.Errorf("%w: %s.%s %q: use letters, digits and underscores, not starting with a digit", ErrInvalidName, field, name, v))
		case len(v) > max:
			errs = append(errs, fmt.Errorf("%w: %s.%s %q is %d bytes, more than %d", ErrInvalidName, field, name, v, len(v), max))
		}
	}
	if t.Schema != "" {
		check("Schema", t.Schema, 63)
	}
	check("Dedup", t.Dedup, 63-len(dedupIndexSuffix))
	check("Offsets", t.Offsets, 63)
	if t.Dedup == t.Offsets {
		errs = append(errs, fmt.Errorf("%w: %s.Dedup and %s.Offsets are both %q", ErrInvalidName, field, field, t.Dedup))
	}
	return errors.Join(errs...)
}

// QuoteIdent quotes a PostgreSQL identifier.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QuotedSQLTables are the quoted, schema-qualified names of SQLTables,
// ready for SQL text.
type QuotedSQLTables struct {
	Schema     string // "" when SQLTables.Schema is empty
	Dedup      string
	DedupIndex string // unqualified: an index lives in its table's schema
	Offsets    string
}

// Quoted validates t and returns its names quoted (with defaults).
func (t SQLTables) Quoted(field string) (QuotedSQLTables, error) {
	if err := t.Validate(field); err != nil {
		return QuotedSQLTables{}, err
	}
	t = t.WithDefaults()
	q := func(name string) string {
		if t.Schema == "" {
			return QuoteIdent(name)
		}
		return QuoteIdent(t.Schema) + "." + QuoteIdent(name)
	}
	out := QuotedSQLTables{Dedup: q(t.Dedup), DedupIndex: QuoteIdent(t.Dedup + dedupIndexSuffix), Offsets: q(t.Offsets)}
	if t.Schema != "" {
		out.Schema = QuoteIdent(t.Schema)
	}
	return out, nil
}

// RenderSQL returns the DDL of eventgen's PostgreSQL tables (dedup records
// and offsets, their indexes and comments), idempotent (CREATE ... IF NOT
// EXISTS). The generator writes it into <schema>_postgres.gen.sql and
// pgdedup.Migrate executes it, so the two cannot differ.
func RenderSQL(t SQLTables) (string, error) {
	q, err := t.Quoted("SQLTables")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if q.Schema != "" {
		fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n\n", q.Schema)
	}
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
