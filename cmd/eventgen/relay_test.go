package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/eventgen/eventgen/runtime/outbox"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// order returns a valid OrderPlaced of the demo schema.
func order(i int) *shop.OrderPlaced {
	return &shop.OrderPlaced{
		OrderID: event.NewUUID(), CustomerID: "c" + strconv.Itoa(i), Total: shop.Money{Cents: 100, Currency: "EUR"},
		Status: shop.OrderStatusPending, Items: []string{"sku"}, PlacedAt: time.Now(),
	}
}

const testPassword = "s3cr3t-Pa55"

// postgresURLWithPassword returns the test database's URL carrying a
// password (PostgreSQL trusts local connections here, so any password
// works), and that password: the one of EVENTGEN_POSTGRES_URL if it has
// one.
func postgresURLWithPassword(t *testing.T) (dsn, password string) {
	t.Helper()
	raw := os.Getenv("EVENTGEN_POSTGRES_URL")
	if raw == "" {
		raw = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		t.Fatalf("EVENTGEN_POSTGRES_URL must be a URL with a user")
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return raw, p
	}
	u.User = url.UserPassword(u.User.Username(), testPassword)
	return u.String(), testPassword
}

// testSchema creates a fresh schema (dropped at the end) and returns a pool
// using it, or skips/fails like the runtime's tests when PostgreSQL is down.
func testSchema(t *testing.T, dsn string) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		msg := "PostgreSQL is unreachable (" + redactDSN(dsn) + "); start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (skipped because CI is unset)")
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "cli_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, err = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
		if err != nil {
			t.Errorf("dropping %s: %v", schema, err)
		}
	})
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return schema, pool
}

// syncBuffer is a bytes.Buffer safe for the relay's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRelayNeverShowsThePassword(t *testing.T) {
	dsn, pw := postgresURLWithPassword(t)
	unreachable := "postgres://someone:" + testPassword + "@127.0.0.1:1/nodb?sslmode=disable&connect_timeout=5"
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"relay", "--postgres", dsn, "-h"}, exitOK},
		{"retry help", []string{"relay", "retry", "--postgres", dsn, "--help"}, exitOK},
		{"unreachable", []string{"relay", "--postgres", unreachable, "--brokers", "127.0.0.1:1"}, exitFail},
		{"unreachable retry", []string{"relay", "retry", "--postgres", unreachable, "--all"}, exitFail},
		{"unreachable quarantined", []string{"relay", "quarantined", "--postgres", unreachable}, exitFail},
		{"bad port", []string{"relay", "--postgres", "postgres://u:" + testPassword + "@127.0.0.1:notaport/x", "--brokers", "b:1"}, exitUsage},
		{"key=value", []string{"relay", "--postgres", "host=127.0.0.1 port=1 user=u password=" + testPassword + " dbname=x connect_timeout=5", "--brokers", "b:1"}, exitFail},
		{"key=value quoted", []string{"relay", "--postgres", "host=127.0.0.1 port=1 user=u password='" + testPassword + "' dbname=x connect_timeout=5", "--brokers", "b:1"}, exitFail},
		{"missing brokers", []string{"relay", "--postgres", dsn}, exitUsage},
		{"bad flag", []string{"relay", "--postgres", dsn, "--brokers", "b:1", "--nope"}, exitUsage},
		{"no table", []string{"relay", "--postgres", dsn, "--brokers", "127.0.0.1:1", "--schema", "no_such_schema_here"}, exitFail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runRelay(context.Background(), c.args[1:], &stdout, &stderr, false)
			out := stdout.String() + stderr.String()
			if code != c.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, c.code, out)
			}
			if strings.Contains(out, testPassword) || strings.Contains(out, pw) {
				t.Fatalf("the password appears in the output:\n%s", out)
			}
			if c.code == exitOK && !strings.Contains(out, "-postgres") {
				t.Errorf("help does not describe --postgres:\n%s", out)
			}
			if c.code != exitOK && out == "" {
				t.Errorf("no message")
			}
		})
	}
}

// TestRelayCommandPublishes runs `eventgen relay --migrate` with a DSN that
// carries a password, as on a terminal: it creates the table, publishes
// what is enqueued, shows its progress, stops on cancel, and never prints
// the password.
func TestRelayCommandPublishes(t *testing.T) {
	dsn, pw := postgresURLWithPassword(t)
	schema, pool := testSchema(t, dsn)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runRelay(ctx, []string{"--postgres", dsn, "--schema", schema, "--brokers", strings.Join(c.Brokers(), ","), "--migrate", "--poll", "50ms"},
			&stdout, &stderr, true)
	}()
	tbl := outbox.Table{Schema: schema}
	kafkatest.WaitFor(t, 30*time.Second, "the relay to create the table", func() bool {
		_, err := outbox.Inspect(ctx, pool, tbl)
		return err == nil
	})
	for i := range 20 {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return tbl.Enqueue(ctx, tx, order(i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	client := kafkatest.NewClient(t, c.Brokers(), kafkatest.ClientOptions{})
	kafkatest.ReadN(t, client, (&shop.OrderPlaced{}).EventType().Topic, 1, 20, 30*time.Second)
	kafkatest.WaitFor(t, 30*time.Second, "a progress line", func() bool { return strings.Contains(stderr.String(), "20 published") })
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("relay did not stop")
	}
	out := stdout.String() + stderr.String()
	if !strings.Contains(out, "backlog 0") || !strings.Contains(out, "stopped after publishing 20 rows") {
		t.Errorf("output:\n%s", out)
	}
	if strings.Contains(out, pw) {
		t.Fatalf("the password appears in the output:\n%s", out)
	}
}

func TestRelayRetryAndQuarantined(t *testing.T) {
	dsn, _ := postgresURLWithPassword(t)
	schema, pool := testSchema(t, dsn)
	ctx := context.Background()
	tbl := outbox.Table{Schema: schema}
	if err := outbox.Migrate(ctx, pool, tbl); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return tbl.Enqueue(ctx, tx, order(i))
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Quarantine two rows as a relay would have.
	if _, err := pool.Exec(ctx, "UPDATE eventgen_outbox SET attempts = 5, last_error = 'too large', quarantined_at = now() WHERE id <= 2"); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := runRelay(ctx, args, &stdout, &stderr, false)
		return code, stdout.String() + stderr.String()
	}
	code, out := cli("quarantined", "--postgres", dsn, "--schema", schema)
	if code != exitOK || !strings.Contains(out, "too large") || strings.Count(out, "shop.orders.placed") != 2 || strings.Count(out, "shop.OrderPlaced.v1") != 2 {
		t.Fatalf("quarantined: exit %d\n%s", code, out)
	}
	if code, out := cli("retry", "--postgres", dsn, "--schema", schema); code != exitUsage {
		t.Fatalf("retry without --all or --id: exit %d\n%s", code, out)
	}
	if code, out := cli("retry", "--postgres", dsn, "--schema", schema, "--id", "x"); code != exitUsage {
		t.Fatalf("retry --id x: exit %d\n%s", code, out)
	}
	if code, out := cli("retry", "--postgres", dsn, "--schema", schema, "--id", "1"); code != exitOK || !strings.Contains(out, "released 1 quarantined row of") {
		t.Fatalf("retry --id 1: exit %d\n%s", code, out)
	}
	if code, out := cli("retry", "--postgres", dsn, "--schema", schema, "--all"); code != exitOK || !strings.Contains(out, "released 1 quarantined row of") {
		t.Fatalf("retry --all: exit %d\n%s", code, out)
	}
	if code, out := cli("quarantined", "--postgres", dsn, "--schema", schema); code != exitOK || !strings.Contains(out, "no quarantined rows") {
		t.Fatalf("quarantined after retry: exit %d\n%s", code, out)
	}
}
