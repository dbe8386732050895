package templates

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidName is matched by the error for a table or schema name that
// is not a plain SQL identifier (see CheckName). The outbox's and the
// dedup store's table names are checked by the same rule.
var ErrInvalidName = errors.New("invalid SQL name")

// MaxIdent is the longest identifier PostgreSQL keeps (NAMEDATALEN-1
// bytes); it silently truncates longer ones, so that two long names could
// meet on one table.
const MaxIdent = 63

// CheckName reports why name, configured as field (e.g.
// "pgdedup.Options.Table"), is not a plain identifier of at most max
// bytes: lower-case ASCII letters, digits and underscores, not starting
// with a digit. Such a name means the same quoted and unquoted, so the
// table eventgen creates (always quoted, see QuoteIdent) is the one an
// operator's unquoted query finds. The error matches ErrInvalidName and
// names field.
func CheckName(field, name string, max int) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidName, field)
	case len(name) > max:
		return fmt.Errorf("%w: %s %q is %d bytes, more than %d", ErrInvalidName, field, name, len(name), max)
	case name[0] >= '0' && name[0] <= '9':
		return fmt.Errorf("%w: %s %q starts with a digit", ErrInvalidName, field, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: %s %q contains %q; use lower-case letters, digits and underscores", ErrInvalidName, field, name, rune(c))
		}
	}
	return nil
}

// CheckSchema is CheckName for a schema, which must also not be one of
// PostgreSQL's own: names starting with pg_ are reserved for the system
// (CREATE SCHEMA refuses them), and pg_catalog, pg_toast and
// information_schema hold the catalogs.
func CheckSchema(field, name string) error {
	if err := CheckName(field, name, MaxIdent); err != nil {
		return err
	}
	if strings.HasPrefix(name, "pg_") || name == "information_schema" {
		return fmt.Errorf("%w: %s %q is a system schema name (pg_*, information_schema)", ErrInvalidName, field, name)
	}
	return nil
}

// QuoteIdent quotes a PostgreSQL identifier. Every table, index, schema
// and channel name eventgen puts into SQL goes through it, after
// CheckName; doubling quotes keeps it safe even if the check were
// bypassed.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QualifiedName returns the quoted name, qualified by the quoted schema
// unless schema is empty (then the connection's search_path finds it),
// e.g. "shop"."eventgen_outbox".
func QualifiedName(schema, name string) string {
	if schema == "" {
		return QuoteIdent(name)
	}
	return QuoteIdent(schema) + "." + QuoteIdent(name)
}
