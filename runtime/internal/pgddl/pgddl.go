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
)

// insufficientPrivilege is PostgreSQL's SQLSTATE 42501.
const insufficientPrivilege = "42501"

// Apply runs ddl in one transaction, after lock: a statement that takes a
// transaction-scoped advisory lock, so that processes starting together do
// not race on CREATE ... IF NOT EXISTS.
//
// A service often runs as a role that may use its tables but not create
// or alter them (a migration role created them). PostgreSQL checks the
// privilege before it checks existence, so even DDL that would change
// nothing fails for that role ("permission denied for schema", "must be
// owner of table"). Apply then checks relations, the tables and indexes
// ddl creates: when every one exists, it returns nil, as it would have for
// their owner; otherwise the error names the missing ones.
func Apply(ctx context.Context, pool *pgxpool.Pool, lock, ddl string, relations []string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, ddl)
		return err
	})
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) || pe.Code != insufficientPrivilege {
		return err
	}
	missing, qerr := Missing(ctx, pool, relations)
	switch {
	case qerr != nil:
		return fmt.Errorf("%w (checking whether the tables exist: %w)", err, qerr)
	case len(missing) > 0:
		return fmt.Errorf("%w: this role may not create %s; create them as a role that may (their owner, or one with CREATE on the schema), e.g. by applying the generated SQL file",
			err, strings.Join(missing, ", "))
	}
	return nil
}

// Missing returns the relations (quoted, optionally schema-qualified
// names, resolved like the DDL's through the search_path) that do not
// exist, in the order given.
func Missing(ctx context.Context, pool *pgxpool.Pool, relations []string) ([]string, error) {
	rows, err := pool.Query(ctx, `SELECT r FROM unnest($1::text[]) WITH ORDINALITY AS x(r, i) WHERE to_regclass(r) IS NULL ORDER BY i`, relations)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
