// Package pgddl applies the runtime's idempotent DDL (CREATE ... IF NOT
// EXISTS): what pgdedup.Migrate and outbox.Migrate run.
package pgddl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/templates"
)

// Migration is what one Migrate call creates.
type Migration struct {
	// Schema, when not empty, is created first if it does not exist: a
	// plain identifier (templates.CheckName).
	Schema string
	// DDL creates the tables and indexes, if they do not exist.
	DDL string
	// Relations are the tables and indexes DDL creates.
	Relations []templates.Relation
}

// lockKey is the transaction-scoped advisory lock every Migrate takes
// ("eventgen" in ASCII): one for all of them, since the dedup tables and
// the outbox table may share a schema that both would create.
const lockKey = 0x6576656e7467656e

// insufficientPrivilege is PostgreSQL's SQLSTATE 42501.
const insufficientPrivilege = "42501"

// Apply runs m in one transaction, under the advisory lock, so that
// processes starting together do not race on CREATE ... IF NOT EXISTS.
//
// A service often runs as a role that may use its tables but not create
// or alter them (a migration role created them). PostgreSQL checks the
// privilege before it checks existence, so even DDL that would change
// nothing fails for that role ("permission denied for schema", "must be
// owner of table"). Apply then checks m.Relations: when every one exists,
// it returns nil, as it would have for their owner; otherwise the error
// names the missing ones. The schema is created only when it is missing:
// CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
// schema exists, which the schema's own owner often lacks.
func Apply(ctx context.Context, pool *pgxpool.Pool, m Migration) error {
	var schemaErr error
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockKey)); err != nil {
			return err
		}
		if m.Schema != "" {
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", m.Schema).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				if _, err := tx.Exec(ctx, "CREATE SCHEMA "+templates.QuoteIdent(m.Schema)); err != nil {
					schemaErr = fmt.Errorf("creating schema %s: %w", templates.QuoteIdent(m.Schema), err)
					return schemaErr
				}
			}
		}
		_, err := tx.Exec(ctx, m.DDL)
		return err
	})
	var pe *pgconn.PgError
	if err == nil || schemaErr != nil || !errors.As(err, &pe) || pe.Code != insufficientPrivilege {
		return err
	}
	missing, qerr := Missing(ctx, pool, m.Relations)
	switch {
	case qerr != nil:
		return fmt.Errorf("%w (checking whether the tables exist: %w)", err, qerr)
	case len(missing) > 0:
		return fmt.Errorf("%w; missing: %s; run Migrate as a role that may create them (the tables' owner, or one with CREATE on the schema)",
			err, strings.Join(missing, ", "))
	}
	return nil
}

// Missing describes, in the order given, the relations that do not exist:
// a table that is not an ordinary or partitioned table (resolved through
// the search_path like the DDL's unqualified names), an index that is not
// an index of its table.
func Missing(ctx context.Context, pool *pgxpool.Pool, relations []templates.Relation) ([]string, error) {
	tables := make([]string, len(relations))
	indexes := make([]string, len(relations))
	for i, r := range relations {
		tables[i], indexes[i] = r.Table, r.Index
	}
	rows, err := pool.Query(ctx, `
SELECT r.i::int FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(tbl, idx, i)
WHERE NOT EXISTS (
	SELECT FROM pg_class t
	WHERE t.oid = to_regclass(r.tbl) AND t.relkind IN ('r', 'p')
	  AND (r.idx = '' OR EXISTS (
		SELECT FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
		WHERE x.indrelid = t.oid AND ic.relname = r.idx)))
ORDER BY r.i`, tables, indexes)
	if err != nil {
		return nil, err
	}
	ns, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, n := range ns {
		r := relations[n-1]
		if r.Index == "" {
			missing = append(missing, "table "+r.Table)
		} else {
			missing = append(missing, "index "+templates.QuoteIdent(r.Index)+" on "+r.Table)
		}
	}
	return missing, nil
}
