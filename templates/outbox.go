package templates

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
)

// OutboxShards is how many shards the outbox table divides keys into (the
// shard column is hashtext(key) & (OutboxShards-1)). Relays share the
// shards, so it is also the most relays that can publish one table at
// once. It is part of the table's definition: changing it needs a new
// table.
const OutboxShards = 64

// DefaultOutboxTable is the name of the outbox table when none is
// configured.
const DefaultOutboxTable = "eventgen_outbox"

// ErrInvalidIdentifier is matched by the error for a table or schema name
// that is not a plain SQL identifier (see OutboxTable).
var ErrInvalidIdentifier = errors.New("invalid SQL identifier")

// maxTableName leaves room for the longest index suffix within
// PostgreSQL's 63-byte identifiers.
const (
	maxTableName  = 63 - len("_published")
	maxSchemaName = 63
)

// OutboxTable names an outbox table: an optional schema and a table name.
// Both must be plain identifiers, lower-case ASCII letters, digits and
// underscores, not starting with a digit (so that they mean the same
// quoted and unquoted); they are always quoted in the SQL. An empty Schema
// leaves the table to the connection's search_path; an empty Name is
// DefaultOutboxTable.
type OutboxTable struct {
	Schema string
	Name   string
}

// WithDefaults returns t with an empty Name set to DefaultOutboxTable.
func (t OutboxTable) WithDefaults() OutboxTable {
	if t.Name == "" {
		t.Name = DefaultOutboxTable
	}
	return t
}

// Validate reports, naming each, the fields of t (after WithDefaults) that
// are not plain identifiers; the errors match ErrInvalidIdentifier.
func (t OutboxTable) Validate() error {
	t = t.WithDefaults()
	var errs []error
	if err := checkIdent(t.Name, maxTableName); err != nil {
		errs = append(errs, fmt.Errorf("table name: %w", err))
	}
	if t.Schema != "" {
		if err := checkIdent(t.Schema, maxSchemaName); err != nil {
			errs = append(errs, fmt.Errorf("schema name: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Qualified returns the quoted, schema-qualified name, e.g.
// "shop"."eventgen_outbox", or "eventgen_outbox" without a schema. Call it
// on a validated table.
func (t OutboxTable) Qualified() string {
	t = t.WithDefaults()
	if t.Schema == "" {
		return quoteIdent(t.Name)
	}
	return quoteIdent(t.Schema) + "." + quoteIdent(t.Name)
}

// Channel returns the LISTEN/NOTIFY channel of the table: its name,
// without the schema, so that an enqueue that finds the table through the
// search_path and a relay that names its schema meet on one channel. (Relays
// of same-named tables in other schemas then wake each other now and then,
// for nothing.)
func (t OutboxTable) Channel() string { return t.WithDefaults().Name }

// checkIdent reports why s is not a plain identifier of at most max bytes.
func checkIdent(s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidIdentifier)
	case len(s) > max:
		return fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidIdentifier, s, max)
	case s[0] >= '0' && s[0] <= '9':
		return fmt.Errorf("%w: %q starts with a digit", ErrInvalidIdentifier, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: %q contains %q; use lower-case letters, digits and underscores", ErrInvalidIdentifier, s, rune(c))
		}
	}
	return nil
}

// quoteIdent quotes a validated identifier. Doubling quotes keeps it safe
// even if validation were bypassed.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

var outboxTemplate = template.Must(Parse("outbox.sql.tmpl", nil))

// OutboxDDL returns the SQL that creates the outbox table t and its
// indexes, if they do not exist yet. The generated SQL file and the
// runtime's outbox.Migrate both use it, so that they cannot differ.
func OutboxDDL(t OutboxTable) (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	t = t.WithDefaults()
	var buf bytes.Buffer
	err := outboxTemplate.Execute(&buf, struct {
		Table, PendingIndex, HeldIndex, PublishedIndex string
		Shards, ShardMask                              int
	}{
		Table:          t.Qualified(),
		PendingIndex:   quoteIdent(t.Name + "_pending"),
		HeldIndex:      quoteIdent(t.Name + "_held"),
		PublishedIndex: quoteIdent(t.Name + "_published"),
		Shards:         OutboxShards,
		ShardMask:      OutboxShards - 1,
	})
	if err != nil {
		return "", fmt.Errorf("outbox SQL template: %w", err)
	}
	return buf.String(), nil
}
