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

// Apply creates what m creates, if it does not exist yet.
//
// When every relation of m exists already (the usual case: every start of
// a service), Apply runs no DDL and takes no lock: CREATE INDEX IF NOT
// EXISTS would take a SHARE lock on the table even then, waiting for
// every open transaction that writes to it and blocking writers meanwhile.
// Otherwise it runs m in one transaction under an advisory lock, one for
// every Migrate (the dedup tables and the outbox table may share a schema
// that both would create), so that processes starting together do not
// race on CREATE ... IF NOT EXISTS. The schema is created only when it is
// missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
// when the schema exists, which the schema's own owner often lacks.
//
// A service often runs as a role that may use its tables but not create
// or alter them (a migration role created them). If the DDL is refused
// for lack of privilege, the error names what is still missing.
func Apply(ctx context.Context, pool *pgxpool.Pool, m Migration) error {
	if missing, err := Missing(ctx, pool, m.Relations); err == nil && len(missing) == 0 {
		return nil
	} // An error here (no USAGE on the schema, say) is left for the DDL to report.
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
	return nil // created meanwhile by a process that may
}

// Missing describes, in the order given, the relations that are not
// there: a table that does not exist or is not an ordinary or partitioned
// table, an index that is not an index of its table. Unqualified names
// resolve through the search_path, as the runtime's own statements do: a
// table found in a later schema of the path is the one the store or the
// relay uses, and it counts as present.
func Missing(ctx context.Context, pool *pgxpool.Pool, relations []templates.Relation) ([]string, error) {
	tables := make([]string, len(relations))
	indexes := make([]string, len(relations))
	for i, r := range relations {
		tables[i], indexes[i] = r.Table, r.Index
	}
	rows, err := pool.Query(ctx, `
SELECT r.i::int, coalesce(c.relkind::text, '')
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(tbl, idx, i)
LEFT JOIN pg_class c ON c.oid = to_regclass(r.tbl)
WHERE c.oid IS NULL OR c.relkind NOT IN ('r', 'p') OR r.idx <> '' AND NOT EXISTS (
	SELECT FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
	WHERE x.indrelid = c.oid AND ic.relname = r.idx)
ORDER BY r.i`, tables, indexes)
	if err != nil {
		return nil, err
	}
	var missing []string
	var n int32
	var kind string
	_, err = pgx.ForEachRow(rows, []any{&n, &kind}, func() error {
		r := relations[n-1]
		switch {
		case r.Index != "":
			missing = append(missing, "index "+templates.QuoteIdent(r.Index)+" on "+r.Table)
		case kind != "":
			missing = append(missing, "table "+r.Table+" (a "+kindName(kind)+" has that name)")
		default:
			missing = append(missing, "table "+r.Table)
		}
		return nil
	})
	return missing, err
}

// kindName names a pg_class.relkind.
func kindName(relkind string) string {
	switch relkind {
	case "v":
		return "view"
	case "m":
		return "materialized view"
	case "S":
		return "sequence"
	case "f":
		return "foreign table"
	case "c":
		return "composite type"
	case "i", "I":
		return "index"
	}
	return "relation of kind " + relkind
}
