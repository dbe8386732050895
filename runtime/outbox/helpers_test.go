package outbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// EnvPostgresURL points the tests at PostgreSQL.
const EnvPostgresURL = "EVENTGEN_POSTGRES_URL"

const defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func postgresURL() string {
	if u := os.Getenv(EnvPostgresURL); u != "" {
		return u
	}
	return defaultPostgresURL
}

// redacted returns a connection URL without its password, for messages.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable connection URL)"
	}
	return u.Redacted()
}

// needPostgres fails the test (or skips it outside CI) when PostgreSQL
// cannot be reached, saying how to start it.
func needPostgres(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("PostgreSQL at %s (%s) is not reachable: %v; start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set %s",
		redacted(postgresURL()), EnvPostgresURL, err, EnvPostgresURL)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (skipped because CI is unset)")
}

// testDB is a fresh PostgreSQL schema for one test, dropped at its end,
// with a pool whose connections use it as their search_path.
type testDB struct {
	schema string
	pool   *pgxpool.Pool
}

func newTestDB(t testing.TB) *testDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(30*time.Second))
	defer cancel()
	admin, err := pgx.Connect(ctx, postgresURL())
	if err != nil {
		needPostgres(t, err)
	}
	defer admin.Close(context.Background())
	schema := fmt.Sprintf("outbox_test_%d_%08x", os.Getpid(), rand.Uint32())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, postgresURL())
		if err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	pool := schemaPool(t, schema, 8)
	return &testDB{schema: schema, pool: pool}
}

// schemaPool returns a pool of up to maxConns connections using schema.
func schemaPool(t testing.TB, schema string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(postgresURL())
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgresURL, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migrate creates the default outbox table in the test's schema.
func (db *testDB) migrate(t testing.TB) {
	t.Helper()
	if err := Migrate(context.Background(), db.pool, Table{}); err != nil {
		t.Fatal(err)
	}
}

// count runs a count query.
func (db *testDB) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// seqEvent is the test event: key k, sequence number seq within its key.
func seqEvent(et *event.Type, k string, seq int) *testevent.Order {
	return testevent.New(et, k+"/"+strconv.Itoa(seq), k, int64(seq))
}

// enqueue writes one event in its own transaction.
func enqueue(t testing.TB, pool *pgxpool.Pool, e event.Event) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		return Enqueue(context.Background(), tx, e)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// relayOptions are test options: fast polls, rebalances and backoffs.
func relayOptions(brokers []string) Options {
	return Options{
		Kafka:             kafka.Config{Brokers: brokers, Tune: kafkatest.FastTune},
		PollInterval:      200 * time.Millisecond,
		RebalanceInterval: 100 * time.Millisecond,
		StatsInterval:     100 * time.Millisecond,
		RetryBackoff:      20 * time.Millisecond,
		MaxRetryBackoff:   200 * time.Millisecond,
	}
}

// runRelay runs a relay in the background until the test ends or stop is
// called; stop returns Run's error.
func runRelay(t testing.TB, pool *pgxpool.Pool, o Options) (r *Relay, stop func() error) {
	t.Helper()
	r, err := NewRelay(pool, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if stopped {
			return runErr
		}
		stopped = true
		cancel()
		select {
		case runErr = <-done:
		case <-time.After(kafkatest.Timeout(30 * time.Second)):
			t.Errorf("relay did not stop within 30 s of cancel")
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// published is one record read back from the topic.
type published struct {
	key  string
	seq  int
	ceID string
	p    int32
	off  int64
}

// decodePublished reads a test event's key and seq from a record.
func decodePublished(t testing.TB, m *sarama.ConsumerMessage) published {
	t.Helper()
	var o testevent.Order
	if err := o.UnmarshalJSON(m.Value); err != nil {
		t.Fatalf("record %d/%d: %v", m.Partition, m.Offset, err)
	}
	id, _ := kafka.HeaderValue(m.Headers, event.HeaderID)
	if string(m.Key) != o.Customer {
		t.Fatalf("record %d/%d: key %q, event's key %q", m.Partition, m.Offset, m.Key, o.Customer)
	}
	return published{key: o.Customer, seq: int(o.Amount), ceID: id, p: m.Partition, off: m.Offset}
}

// readTopic returns the topic's records (decoded), partition by partition,
// each in offset order.
func readTopic(t testing.TB, brokers []string, topic string) []published {
	t.Helper()
	var out []published
	for _, m := range kafkatest.ReadAll(t, brokers, topic) {
		out = append(out, decodePublished(t, m))
	}
	return out
}

// waitTopic waits until the topic holds at least n records.
func waitTopic(t testing.TB, brokers []string, topic string, partitions, n int, d time.Duration) {
	t.Helper()
	client := kafkatest.NewClient(t, brokers, kafkatest.ClientOptions{ReadUncommitted: true})
	kafkatest.WaitFor(t, d, fmt.Sprintf("%d records on %s", n, topic), func() bool {
		if err := client.RefreshMetadata(topic); err != nil {
			return false
		}
		var total int64
		for p := range int32(partitions) {
			off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return false
			}
			total += off
		}
		return total >= int64(n)
	})
}

// check is what the checker found on a topic.
type check struct {
	events     int // distinct (key, seq) seen
	lost       []string
	violations []string
	dups       map[string]int // ce_id → extra copies
}

func (c check) String() string {
	var dup int
	for _, n := range c.dups {
		dup += n
	}
	return fmt.Sprintf("%d events, %d lost, %d order violations, %d duplicates", c.events, len(c.lost), len(c.violations), dup)
}

// checkTopic compares the records with what was committed: want[key] is
// the number of events of key (seq 0..n-1). Per-key order is judged on
// first occurrences (what a consumer with dedup acts on): the first copy
// of seq s must come after the first copy of seq s-1, in one partition.
func checkTopic(recs []published, want map[string]int) check {
	c := check{dups: map[string]int{}}
	type ks struct {
		key string
		seq int
	}
	first := map[ks]int{} // → position of the first copy in its partition
	next := map[string]int{}
	byCE := map[string]int{}
	for i, r := range recs {
		byCE[r.ceID]++
		if byCE[r.ceID] > 1 {
			c.dups[r.ceID]++
		}
		k := ks{r.key, r.seq}
		if _, ok := first[k]; ok {
			continue
		}
		first[k] = i
		if r.seq != next[r.key] {
			c.violations = append(c.violations, fmt.Sprintf("key %s: seq %d first seen when %d was expected (partition %d offset %d)", r.key, r.seq, next[r.key], r.p, r.off))
		}
		if r.seq >= next[r.key] {
			next[r.key] = r.seq + 1
		}
	}
	c.events = len(first)
	for key, n := range want {
		for s := range n {
			if _, ok := first[ks{key, s}]; !ok {
				c.lost = append(c.lost, fmt.Sprintf("%s/%d", key, s))
			}
		}
	}
	return c
}

// firstN returns at most n items of s, for messages.
func firstN(s []string, n int) string {
	if len(s) > n {
		return strings.Join(s[:n], "; ") + fmt.Sprintf("; ... (%d more)", len(s)-n)
	}
	return strings.Join(s, "; ")
}
