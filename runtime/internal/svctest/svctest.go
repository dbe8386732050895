// Package svctest gives tests an isolated piece of the PostgreSQL and Redis
// servers they share with other packages' tests (go test ./... runs
// packages in parallel, and CI reuses the servers): a fresh PostgreSQL
// schema per test, dropped at the end, and a Redis key prefix per test,
// whose keys are deleted at the end. A test that cannot reach a server
// fails with how to start it; outside CI (CI unset) it is skipped instead,
// saying why.
package svctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Default addresses, overridden by EVENTGEN_POSTGRES_URL and
// EVENTGEN_REDIS_ADDR.
const (
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultRedisAddr   = "127.0.0.1:6379"
)

// PostgresURL returns the test database's URL.
func PostgresURL() string {
	if u := os.Getenv("EVENTGEN_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// RedisAddr returns the test Redis server's host:port.
func RedisAddr() string {
	if a := os.Getenv("EVENTGEN_REDIS_ADDR"); a != "" {
		return a
	}
	return DefaultRedisAddr
}

// unreachable fails (in CI) or skips the test because service is down.
func unreachable(t testing.TB, service, start string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s is unreachable (%v); start it with: %s", service, err, start)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (skipped because CI is unset)")
}

// Name returns a random lower-case name starting with prefix, for schemas,
// key prefixes and consumer groups.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Postgres creates a fresh schema and returns a pool whose connections use
// it as their search_path (so unqualified tables land there), and the
// schema's name. The schema is dropped and the pool closed at the end of
// the test.
func Postgres(t testing.TB, maxConns int32) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := adminPool(t, ctx)
	schema := Name("t_")
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	pool, err := schemaPool(ctx, schema, "", maxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
		admin.Close()
	})
	return pool, schema
}

// adminPool connects to the test database as the URL's user, or fails
// (outside CI skips) t with how to start PostgreSQL.
func adminPool(t testing.TB, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	admin, err := pgxpool.New(ctx, PostgresURL())
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		unreachable(t, "PostgreSQL", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", err)
	}
	return admin
}

// schemaPool returns a pool of the test database with schema as its
// search_path, connecting as role (the URL's user when empty), with at
// most maxConns connections (pgx's default when 0).
func schemaPool(ctx context.Context, schema, role string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(PostgresURL())
	if err != nil {
		return nil, err
	}
	if role != "" {
		cfg.ConnConfig.User, cfg.ConnConfig.Password = role, ""
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Role creates a login role with no privileges but USAGE on schema, and
// returns a pool of connections as that role with schema as their
// search_path, and the role's name: a service's least-privileged role, to
// which the test grants what it needs. Connecting as the new role relies
// on the test server's trust authentication, as the default URL's does.
// The pool is closed, and the role's privileges and the role dropped, at
// the end of the test (register it after Postgres, whose schema drop must
// come after).
func Role(t testing.TB, schema string) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := adminPool(t, ctx)
	role := Name("r_")
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		admin.Close()
		t.Fatalf("creating role %s (the test's PostgreSQL user needs CREATEROLE): %v", role, err)
	}
	var pool *pgxpool.Pool // closed before the role is dropped
	t.Cleanup(func() {
		if pool != nil {
			pool.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// DROP OWNED drops what the role owns in this database (a test may
		// give it a schema) and revokes its privileges there.
		if _, err := admin.Exec(ctx, "DROP OWNED BY "+role); err != nil {
			t.Errorf("dropping role %s's privileges: %v", role, err)
		}
		if _, err := admin.Exec(ctx, "DROP ROLE "+role); err != nil {
			t.Errorf("dropping role %s: %v", role, err)
		}
		admin.Close()
	})
	if _, err := admin.Exec(ctx, "GRANT USAGE ON SCHEMA "+schema+" TO "+role); err != nil {
		t.Fatalf("granting role %s usage on schema %s: %v", role, schema, err)
	}
	pool, err := schemaPool(ctx, schema, role, 0)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("connecting as role %s (the test server must trust local connections of new roles): %v", role, err)
	}
	return pool, role
}

// Redis returns a client of the test server and a key prefix no other test
// uses; the keys under the prefix are deleted at the end of the test.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		unreachable(t, "Redis", `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`, err)
	}
	prefix := Name("eventgen-test:") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
		c.Close()
	})
	return c, prefix
}
