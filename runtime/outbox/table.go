package outbox

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/internal/pgddl"
	"github.com/eventgen/eventgen/templates"
)

// Shards is how many shards the outbox table divides keys into: a key's
// rows are published by the relay that owns its shard, so it is also the
// most relays that share one table usefully.
const Shards = templates.OutboxShards

// Table names an outbox table. Schema and Name must be plain SQL
// identifiers (lower-case ASCII letters, digits and underscores, not
// starting with a digit: templates.CheckName, the rule of the dedup
// store's tables too); they are always quoted in SQL, never spliced raw. The zero value is the default table, "eventgen_outbox", found
// through the connection's search_path.
type Table struct {
	// Schema qualifies the table. Default "": the search_path decides.
	Schema string
	// Name is the table's name. Default "eventgen_outbox".
	Name string
}

// String returns the table's quoted, qualified name as used in SQL.
func (t Table) String() string { return t.tt().Qualified() }

func (t Table) tt() templates.OutboxTable {
	return templates.OutboxTable{Schema: t.Schema, Name: t.Name}.WithDefaults()
}

func (t Table) withDefaults() Table {
	tt := t.tt()
	return Table{Schema: tt.Schema, Name: tt.Name}
}

// validate reports a schema or name that is not a plain identifier.
func (t Table) validate() error { return t.validateAs("outbox.Table") }

// validateAs is validate with the messages naming field, where t was
// configured. The rule and the quoting are templates' (CheckName,
// QuoteIdent), shared with the dedup store's tables and the generator.
func (t Table) validateAs(field string) error {
	if err := t.tt().Validate(field); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTable, err)
	}
	return nil
}

// DDL returns the SQL that creates t and its indexes if they do not exist
// (the same text as the outbox part of the generated SQL file).
func (t Table) DDL() (string, error) {
	ddl, err := templates.OutboxDDL(t.tt())
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidTable, err)
	}
	return ddl, nil
}

// Migrate creates the outbox table t and its indexes (and its schema, if
// t names one) if they do not exist, in one transaction, under an advisory
// lock shared with pgdedup.Migrate; it changes nothing when they do. The SQL is t.DDL(),
// the text the generator writes in the schema's SQL file, so that applying
// either gives the same table. A role that may use the table but not
// create it (a migration role did) gets nil once the table and its
// indexes exist, and an error naming the missing ones otherwise.
func Migrate(ctx context.Context, pool *pgxpool.Pool, t Table) error {
	ddl, err := t.DDL()
	if err != nil {
		return err
	}
	if err := pgddl.Apply(ctx, pool, pgddl.Migration{Schema: t.Schema, DDL: ddl, Relations: t.tt().Relations()}); err != nil {
		return fmt.Errorf("eventgen: migrating outbox table %s: %w", t, err)
	}
	return nil
}

// statements are the SQL statements of one table, built once.
type statements struct {
	table   Table
	channel string
	// enqueue inserts a row ($1 topic, $2 key, $3 headers, $4 payload)
	// and, with $5 a channel, notifies it on commit: one round trip.
	enqueue string
	// fetch reads up to $2 publishable rows of shards $1 in id order: not
	// published, not quarantined, not waiting for a next attempt, and with
	// no earlier row of the same key that is quarantined or waiting (rows
	// without a key have no order to keep).
	fetch string
	// published deletes (or marks, with a retention) the rows $1.
	deletePublished, markPublished string
	// failed records a failed attempt of rows $1 with errors $2, their
	// next attempt $3 microseconds from now, quarantining those that
	// reach $4 attempts.
	failed string
	// cleanup deletes up to $2 rows published more than $1 microseconds ago.
	cleanup string
	stats   string
	// retry releases quarantined rows ($1: their IDs, or empty for all).
	retry       string
	quarantined string
	regclass    string
}

var stmtCache sync.Map // Table (with defaults) → *statements

// stmts returns the statements of t, which must be valid.
func (t Table) stmts() *statements {
	t = t.withDefaults()
	if s, ok := stmtCache.Load(t); ok {
		return s.(*statements)
	}
	q := t.String()
	r := strings.NewReplacer("{t}", q)
	s := &statements{
		table:   t,
		channel: t.tt().Channel(),
		enqueue: r.Replace(`WITH wake AS (SELECT pg_notify($5, ''))
INSERT INTO {t} (topic, key, headers, payload) SELECT $1, $2, $3::jsonb, $4::bytea FROM wake`),
		fetch: r.Replace(`SELECT o.id, o.topic, o.key, o.headers, o.payload, o.attempts
FROM {t} o
WHERE o.published_at IS NULL AND o.quarantined_at IS NULL
  AND o.shard = ANY($1::int2[])
  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
  AND (o.key = '' OR NOT EXISTS (
    SELECT 1 FROM {t} h
    WHERE h.key = o.key AND h.id < o.id AND h.published_at IS NULL
      AND (h.quarantined_at IS NOT NULL OR h.next_attempt_at > now())))
ORDER BY o.id
LIMIT $2`),
		deletePublished: r.Replace(`DELETE FROM {t} WHERE id = ANY($1::int8[])`),
		markPublished:   r.Replace(`UPDATE {t} SET published_at = now(), next_attempt_at = NULL WHERE id = ANY($1::int8[])`),
		failed: r.Replace(`UPDATE {t} AS o
SET attempts = o.attempts + 1,
    last_error = f.err,
    next_attempt_at = now() + f.wait_us * interval '1 microsecond',
    quarantined_at = CASE WHEN o.attempts + 1 >= $4 THEN now() END
FROM unnest($1::int8[], $2::text[], $3::int8[]) AS f(id, err, wait_us)
WHERE o.id = f.id`),
		cleanup: r.Replace(`DELETE FROM {t} WHERE id = ANY(ARRAY(
  SELECT id FROM {t}
  WHERE published_at < now() - $1 * interval '1 microsecond'
  ORDER BY published_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED))`),
		stats: r.Replace(`SELECT count(*) FILTER (WHERE quarantined_at IS NULL),
  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE quarantined_at IS NULL)), 0)::float8,
  count(*) FILTER (WHERE quarantined_at IS NOT NULL)
FROM {t} WHERE published_at IS NULL`),
		retry: r.Replace(`WITH released AS (
  UPDATE {t} SET quarantined_at = NULL, attempts = 0, next_attempt_at = NULL
  WHERE quarantined_at IS NOT NULL AND published_at IS NULL
    AND (cardinality($1::int8[]) = 0 OR id = ANY($1::int8[]))
  RETURNING id),
wake AS (SELECT pg_notify($2, ''))
SELECT count(*) FROM released, wake`),
		quarantined: r.Replace(`SELECT id, topic, key, attempts, coalesce(last_error, ''), created_at, quarantined_at,
  coalesce(headers->>'ce_id', ''), coalesce(headers->>'ce_type', '')
FROM {t} WHERE quarantined_at IS NOT NULL AND published_at IS NULL
ORDER BY id LIMIT $1`),
		regclass: `SELECT to_regclass($1)::oid`,
	}
	actual, _ := stmtCache.LoadOrStore(t, s)
	return actual.(*statements)
}

// querier is what the functions taking a pool or a connection need.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// tableOID returns the OID of t as the connection resolves it (through
// its search_path when t has no schema), or ErrNoTable.
func (s *statements) tableOID(ctx context.Context, q querier) (uint32, error) {
	var oid *uint32
	if err := q.QueryRow(ctx, s.regclass, s.table.String()).Scan(&oid); err != nil {
		return 0, fmt.Errorf("eventgen: looking up outbox table %s: %w", s.table, err)
	}
	if oid == nil {
		return 0, fmt.Errorf("%w: %s (run outbox.Migrate, or apply the generated SQL)", ErrNoTable, s.table)
	}
	return *oid, nil
}
