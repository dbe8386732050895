package kafka

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// ledgerDB is a fresh schema with the dedup tables and the ledger.
func ledgerDB(t *testing.T, maxConns int32) (*pgxpool.Pool, string) {
	t.Helper()
	pool, schema := svctest.Postgres(t, maxConns)
	if err := pgdedup.Migrate(t.Context(), pool, pgdedup.Options{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), ledgerDDL); err != nil {
		t.Fatal(err)
	}
	return pool, schema
}

func appliedRows(t *testing.T, pool *pgxpool.Pool) int {
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM applied`).Scan(&n); err != nil {
		t.Error(err)
	}
	return n
}

// ledgerMember starts an in-process consumer of the ledger events through
// store; stop ends it and returns Run's error.
func ledgerMember(t *testing.T, brokers []string, et *event.Type, group string, pool *pgxpool.Pool, schema string, met Metrics, retry RetryPolicy) (stop func() error) {
	t.Helper()
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: brokers, Tune: kafkatest.FastTune, Metrics: met},
		GroupID: group, MaxBatch: 100, Retry: retry, ShutdownGrace: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgdedup.New(pool, pgdedup.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	effect := func(ctx context.Context, e testEvent, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, applyEffect, e.K, amount(e.Seq), e.Seq)
		return err
	}
	if et.Guarantee == event.ExactlyOnce {
		HandleExactlyOnce(c, et, decodeTestEvent, dedup.OffsetStore[pgx.Tx](s), func(ctx context.Context, e testEvent, tx pgx.Tx, _ ExactlyOnceRecord) error {
			return effect(ctx, e, tx)
		})
	} else {
		HandleDeduped(c, et, decodeTestEvent, dedup.Store[pgx.Tx](s), func(ctx context.Context, e testEvent, tx pgx.Tx, _ AtLeastOnceRecord) error {
			return effect(ctx, e, tx)
		})
	}
	return runInBackground(t, "member of "+group, c.Run)
}

// Members join and leave mid-stream: partitions move while batches are in
// flight, and no effect is applied twice (at least once with PostgreSQL
// dedup, and exactly once into PostgreSQL).
func TestDedupRebalance(t *testing.T) {
	for _, g := range []event.Guarantee{event.AtLeastOnce, event.ExactlyOnce} {
		t.Run(g.String(), func(t *testing.T) {
			cl := kafkatest.Start(t, kafkatest.Options{Partitions: crashPartitions})
			et := testEventType("Credit", "rebalance-"+g.String(), g)
			et.DedupTTL = time.Hour
			cl.CreateTopic(t, et.Topic, crashPartitions)
			cl.CreateTopic(t, DeadLetterTopic(et.Topic), crashPartitions)
			pool, schema := ledgerDB(t, 12)
			const n, accounts = 4_000, 40
			records := ledgerRecords(n)
			group := "rebalance-" + g.String()
			var met Counters
			retry := RetryPolicy{Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
			// Records arrive in steps while the group changes: A alone;
			// B joins; C joins; A leaves; B leaves; C finishes.
			step := len(records) / 5
			members := map[string]func() error{}
			join := func(name string) { members[name] = ledgerMember(t, cl.Brokers(), et, group, pool, schema, &met, retry) }
			leave := func(name string) {
				if err := members[name](); err != nil {
					t.Fatalf("member %s: %v", name, err)
				}
				delete(members, name)
			}
			progress := func(i int) {
				produceLedger(t, cl.Brokers(), et, records[i*step:min((i+1)*step, len(records))], accounts)
				want := (i + 1) * step / 2 // some of the step handled: the change lands mid-stream
				kafkatest.WaitFor(t, 60*time.Second, "progress", func() bool { return appliedRows(t, pool) >= want })
			}
			join("A")
			progress(0)
			join("B")
			progress(1)
			join("C")
			progress(2)
			leave("A")
			progress(3)
			leave("B")
			produceLedger(t, cl.Brokers(), et, records[4*step:], accounts)
			client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
			kafkatest.WaitFor(t, 90*time.Second, "every record consumed", func() bool {
				if g == event.ExactlyOnce {
					return kafkatest.Sum(storedOffsets(t, pool, group, et.Topic)) >= int64(len(records))
				}
				c, err := kafkatest.Committed(client, group, et.Topic, crashPartitions)
				return err == nil && kafkatest.Sum(c) >= int64(len(records))
			})
			leave("C")
			r := checkLedger(t, pool, n, accounts)
			if !r.clean() || met.Get("Credit", DeadLettered) != 0 {
				t.Fatalf("after 3 joins and 2 leaves: %d lost, %d duplicated (%v), %d wrong balances, %d dead-lettered",
					r.lost, r.duplicated, first(r.dupSeqs), r.wrongBalances, met.Get("Credit", DeadLettered))
			}
			t.Logf("%s: %d events (%d records), 3 joins and 2 leaves mid-stream: 0 lost, 0 duplicated; %d duplicates absorbed",
				g, n, len(records), met.Get("Credit", Duplicates))
		})
	}
}

// pgProxy forwards TCP connections to PostgreSQL; cut closes them all and
// refuses new ones until restore: a database outage.
type pgProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *pgProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *pgProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// A database outage mid-stream: every connection of the consumer's pool is
// cut and new ones refused. Records are retried as infrastructure errors,
// not dead-lettered (even with only 2 attempts), and once the database is
// back nothing is lost or applied twice.
func TestDedupDatabaseOutage(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: crashPartitions})
	et := testEventType("Credit", "outage", event.AtLeastOnce)
	et.DedupTTL = time.Hour
	cl.CreateTopic(t, et.Topic, crashPartitions)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), crashPartitions)
	pool, schema := ledgerDB(t, 4)
	u, err := url.Parse(svctest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.l.Addr().String()
	cfg, err := pgxpool.ParseConfig(withParam(u.String(), "search_path", schema))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	viaProxy, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()
	const n, accounts = 3_000, 40
	records := ledgerRecords(n)
	var met Counters
	stop := ledgerMember(t, cl.Brokers(), et, "outage", viaProxy, schema, &met,
		RetryPolicy{MaxAttempts: 2, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	produceLedger(t, cl.Brokers(), et, records[:len(records)/3], accounts)
	kafkatest.WaitFor(t, 60*time.Second, "a third applied", func() bool { return appliedRows(t, pool) >= len(records)/6 })
	proxy.cut()
	produceLedger(t, cl.Brokers(), et, records[len(records)/3:], accounts)
	kafkatest.WaitFor(t, 60*time.Second, "the consumer to retry the store", func() bool { return met.Get("Credit", InfraRetried) >= 3 })
	during := appliedRows(t, pool)
	proxy.restore()
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "outage", et.Topic, crashPartitions, 90*time.Second)
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	r := checkLedger(t, pool, n, accounts)
	if !r.clean() || met.Get("Credit", DeadLettered) != 0 {
		t.Fatalf("after the outage: %d lost, %d duplicated, %d wrong balances, %d dead-lettered", r.lost, r.duplicated, r.wrongBalances, met.Get("Credit", DeadLettered))
	}
	t.Logf("database outage: %d of %d records applied when it began, %d store calls retried, 0 dead-lettered, then 0 lost and 0 duplicated",
		during, len(records), met.Get("Credit", InfraRetried))
}
