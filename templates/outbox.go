package templates

import (
	"bytes"
	"errors"
	"fmt"
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

// maxOutboxTable leaves room for the longest index suffix ("_published")
// within PostgreSQL's identifiers.
const maxOutboxTable = MaxIdent - len("_published")

// OutboxTable names an outbox table: an optional schema and a table name.
// Both must be plain identifiers (CheckName); they are always quoted in
// the SQL. An empty Schema leaves the table to the connection's
// search_path; an empty Name is DefaultOutboxTable.
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

// Validate reports every name of t (after WithDefaults) that is not a
// plain identifier (CheckName), in one error matching ErrInvalidName;
// field says where t was configured, e.g. "outbox.Options.Table", and the
// messages name field.Schema and field.Name.
func (t OutboxTable) Validate(field string) error {
	t = t.WithDefaults()
	var errs []error
	if t.Schema != "" {
		errs = append(errs, CheckSchema(field+".Schema", t.Schema))
	}
	errs = append(errs, CheckName(field+".Name", t.Name, maxOutboxTable))
	return errors.Join(errs...)
}

// Qualified returns the quoted, schema-qualified name, e.g.
// "shop"."eventgen_outbox", or "eventgen_outbox" without a schema. Call it
// on a validated table.
func (t OutboxTable) Qualified() string {
	t = t.WithDefaults()
	return QualifiedName(t.Schema, t.Name)
}

// Channel returns the LISTEN/NOTIFY channel of the table: its name,
// without the schema, so that an enqueue that finds the table through the
// search_path and a relay that names its schema meet on one channel. (Relays
// of same-named tables in other schemas then wake each other now and then,
// for nothing.)
func (t OutboxTable) Channel() string { return t.WithDefaults().Name }

// outboxIndexSuffixes name the outbox table's indexes.
var outboxIndexSuffixes = [...]string{"_pending", "_held", "_published"}

// Relations returns the table and indexes OutboxDDL creates. Call it on a
// validated t.
func (t OutboxTable) Relations() []Relation {
	t = t.WithDefaults()
	rels := []Relation{{Table: t.Qualified()}}
	for _, suffix := range outboxIndexSuffixes {
		rels = append(rels, Relation{Table: t.Qualified(), Index: t.Name + suffix})
	}
	return rels
}

var outboxTemplate = template.Must(Parse("outbox.sql.tmpl", nil))

// OutboxDDL returns the SQL that creates the outbox table t and its
// indexes, if they do not exist yet (not t's schema: outbox.Migrate
// creates that first). The generated SQL file and the runtime's
// outbox.Migrate both use it, so that they cannot differ.
func OutboxDDL(t OutboxTable) (string, error) {
	if err := t.Validate("OutboxTable"); err != nil {
		return "", err
	}
	t = t.WithDefaults()
	var buf bytes.Buffer
	err := outboxTemplate.Execute(&buf, struct {
		Table, PendingIndex, HeldIndex, PublishedIndex string
		Shards, ShardMask                              int
	}{
		Table:          t.Qualified(),
		PendingIndex:   QuoteIdent(t.Name + outboxIndexSuffixes[0]),
		HeldIndex:      QuoteIdent(t.Name + outboxIndexSuffixes[1]),
		PublishedIndex: QuoteIdent(t.Name + outboxIndexSuffixes[2]),
		Shards:         OutboxShards,
		ShardMask:      OutboxShards - 1,
	})
	if err != nil {
		return "", fmt.Errorf("outbox SQL template: %w", err)
	}
	return buf.String(), nil
}
