package main

// The dedup scenarios: eventgen's consumers with a PostgreSQL and a Redis
// dedup store, each against the design it replaces (the baselines, from
// the article this product grew from), on the same preloaded records: n
// records of which 10% are a second delivery of an earlier event.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/dedup/redisdedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

const dedupTTL = 14 * 24 * time.Hour

func redisAddr() string {
	if a := os.Getenv("EVENTGEN_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// dedupDB is a fresh schema holding the business table (and, for
// eventgen, the dedup tables), dropped by drop.
type dedupDB struct {
	pool   *pgxpool.Pool
	schema string
	drop   func()
}

func newDedupDB(ctx context.Context) (*dedupDB, error) {
	admin, err := pgdedup.Connect(ctx, postgresURL)
	if err != nil {
		return nil, err
	}
	schema := randomName("bench_")
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(postgresURL)
	if err != nil {
		admin.Close()
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		admin.Close()
		return nil, err
	}
	db := &dedupDB{pool: pool, schema: schema, drop: func() {
		pool.Close()
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	}}
	_, err = pool.Exec(ctx, `CREATE TABLE orders (order_id text PRIMARY KEY, customer_id text NOT NULL, cents bigint NOT NULL);
CREATE TABLE processed (id text PRIMARY KEY)`)
	if err != nil {
		db.drop()
		return nil, err
	}
	return db, nil
}

// preloadDeduped writes n records of topic's event, every tenth a second
// delivery of the one before it, and returns the number of distinct
// events.
func preloadDeduped(ctx context.Context, brokers []string, n int, send func(p *shop.Producer, i int, dup bool) error) (int, error) {
	p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: brokers}, TransactionalID: "bench-preload"})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	distinct := 0
	err = parallel(n, senders, func(i int) error {
		return send(p, i, i%10 == 9)
	})
	for i := range n {
		if i%10 != 9 {
			distinct++
		}
	}
	return distinct, err
}

// orderFor returns event i of the PostgreSQL scenario; a duplicate is
// event i-1 again (same order ID, hence the same idempotency key).
func orderFor(i int, dup bool) *shop.OrderPlaced {
	if dup {
		i--
	}
	e := genOrder(i)
	e.OrderID = benchUUID(i)
	return e
}

func preloadOrders(ctx context.Context, brokers []string, n int) (int, error) {
	return preloadDeduped(ctx, brokers, n, func(p *shop.Producer, i int, dup bool) error {
		return p.SendOrderPlaced(ctx, orderFor(i, dup))
	})
}

// genPostgresDedup is eventgen's at-least-once consumer of OrderPlaced
// with its PostgreSQL dedup store and a batch handler: one transaction per
// batch of a partition's records, one statement recording the new keys,
// and the business inserts of the batch's new events as one multi-row
// INSERT (unnest of arrays) in that transaction.
func genPostgresDedup(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	if _, err := preloadOrders(ctx, brokers, n); err != nil {
		return 0, err
	}
	db, err := newDedupDB(ctx)
	if err != nil {
		return 0, err
	}
	defer db.drop()
	if err := pgdedup.Migrate(ctx, db.pool, pgdedup.Options{Schema: db.schema}); err != nil {
		return 0, err
	}
	store, err := pgdedup.New(db.pool, pgdedup.Options{Schema: db.schema})
	if err != nil {
		return 0, err
	}
	metrics := &kafka.Counters{}
	// Batches of up to 2,000 records per partition (the default is 500):
	// each transaction's fixed cost (BEGIN, the keys' INSERT, the
	// handler's INSERT, an fsync'ed COMMIT, the Kafka commit: about 7 ms on
	// this loaded 2-core machine) is then spread over four times as many
	// records. A crash redelivers up to a batch, which the store absorbs.
	c, err := shop.NewConsumer(kafka.ConsumerConfig{Config: kafka.Config{Brokers: brokers, Metrics: metrics, Tune: consumerTune}, GroupID: "bench-pg", MaxBatch: 2000})
	if err != nil {
		return 0, err
	}
	c.HandleOrderPlacedBatch(store, func(ctx context.Context, tx pgx.Tx, events []*shop.OrderPlaced, _ []kafka.AtLeastOnceRecord) error {
		ids, customers, cents := make([]string, len(events)), make([]string, len(events)), make([]int64, len(events))
		for i, e := range events {
			ids[i], customers[i], cents[i] = e.OrderID.String(), e.CustomerID, e.Total.Cents
		}
		_, err := tx.Exec(ctx, `INSERT INTO orders (order_id, customer_id, cents) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])`, ids, customers, cents)
		return err
	})
	return runUntil(ctx, c.Run, int64(n), func() int64 {
		return metrics.Get("OrderPlaced", kafka.Handled) + metrics.Get("OrderPlaced", kafka.Duplicates)
	})
}

// rawPostgresPerMessage is the baseline, the article's first design: per
// message, a transaction that selects the ID FOR UPDATE in a processed
// table, runs the business insert and inserts the ID, then commits (one
// fsync'ed commit per message); a hand-written sarama group consumer marks
// the offset after it. (Its SELECT ... FOR UPDATE locks nothing when the
// row is missing: two deliveries racing both insert, and the primary key
// fails the second; the benchmark has no such race.)
func rawPostgresPerMessage(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	if _, err := preloadOrders(ctx, brokers, n); err != nil {
		return 0, err
	}
	db, err := newDedupDB(ctx)
	if err != nil {
		return 0, err
	}
	defer db.drop()
	var done atomic.Int64
	handle := func(ctx context.Context, m *sarama.ConsumerMessage) error {
		var o order
		if err := json.Unmarshal(m.Value, &o); err != nil {
			return err
		}
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var id string
		err = tx.QueryRow(ctx, `SELECT id FROM processed WHERE id = $1 FOR UPDATE`, o.OrderID).Scan(&id)
		switch {
		case err == nil:
			return tx.Commit(ctx) // already processed
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO orders (order_id, customer_id, cents) VALUES ($1, $2, $3)`, o.OrderID, o.CustomerID, o.Total.Cents); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO processed (id) VALUES ($1)`, o.OrderID); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	return runRawGroup(ctx, brokers, "bench-pg-raw", "shop.orders.placed", n, &done, handle)
}

func preloadDeliveries(ctx context.Context, brokers []string, n int) (int, error) {
	return preloadDeduped(ctx, brokers, n, func(p *shop.Producer, i int, dup bool) error {
		if dup {
			i--
		}
		return p.SendOrderDelivered(ctx, &shop.OrderDelivered{
			OrderID: benchUUID(i), Carrier: "carrier-with-a-long-name", DeliveredAt: placedAt,
		})
	})
}

// deliveryEffect is the handler's effect in the Redis scenario, the same on
// both sides: an in-memory count per carrier.
type deliveryEffect struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *deliveryEffect) apply(carrier string) {
	s.mu.Lock()
	s.m[carrier]++
	s.mu.Unlock()
}

// genRedisDedup is eventgen's at-least-once consumer of OrderDelivered with
// its Redis dedup store (two round trips to Redis per batch: leases, then
// done markers).
func genRedisDedup(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	if _, err := preloadDeliveries(ctx, brokers, n); err != nil {
		return 0, err
	}
	rc, err := redisdedup.Connect(ctx, redisAddr())
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	prefix := randomName("eventgen-bench:") + ":"
	defer deleteKeys(rc, prefix)
	store, err := redisdedup.New(rc, redisdedup.Options{Prefix: prefix})
	if err != nil {
		return 0, err
	}
	effect := &deliveryEffect{m: map[string]int{}}
	metrics := &kafka.Counters{}
	c, err := shop.NewConsumer(kafka.ConsumerConfig{Config: kafka.Config{Brokers: brokers, Metrics: metrics, Tune: consumerTune}, GroupID: "bench-redis"})
	if err != nil {
		return 0, err
	}
	c.HandleOrderDelivered(store, func(ctx context.Context, e *shop.OrderDelivered, rec kafka.AtLeastOnceRecord) error {
		effect.apply(e.Carrier)
		return nil
	})
	return runUntil(ctx, c.Run, int64(n), func() int64 {
		return metrics.Get("OrderDelivered", kafka.Handled) + metrics.Get("OrderDelivered", kafka.Duplicates)
	})
}

// rawRedisMiddleware is the baseline, the article's second design: a
// middleware around the handler that does SET key processing EX ttl NX,
// runs the handler, then SET key done EX ttl, and DEL key on failure,
// three round trips per message; a hand-written sarama group consumer marks
// the offset after it.
func rawRedisMiddleware(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	if _, err := preloadDeliveries(ctx, brokers, n); err != nil {
		return 0, err
	}
	rc := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rc.Close()
	prefix := randomName("eventgen-bench:") + ":"
	defer deleteKeys(rc, prefix)
	effect := &deliveryEffect{m: map[string]int{}}
	var done atomic.Int64
	handle := func(ctx context.Context, m *sarama.ConsumerMessage) error {
		var s struct {
			OrderID string `json:"order_id"`
			Carrier string `json:"carrier"`
		}
		if err := json.Unmarshal(m.Value, &s); err != nil {
			return err
		}
		key := prefix + s.OrderID
		ok, err := rc.SetNX(ctx, key, "processing", dedupTTL).Result()
		if err != nil {
			return err
		}
		if !ok {
			return nil // processed, or being processed
		}
		effect.apply(s.Carrier)
		if err := rc.Set(ctx, key, "done", dedupTTL).Err(); err != nil {
			rc.Del(ctx, key)
			return err
		}
		return nil
	}
	return runRawGroup(ctx, brokers, "bench-redis-raw", "shop.orders.delivered", n, &done, handle)
}

func deleteKeys(rc *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			rc.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rc.Del(ctx, keys...)
	}
}

// consumerTune shortens sarama's fetch wait, as both sides use.
func consumerTune(sc *sarama.Config) {
	sc.Consumer.MaxWaitTime = 50 * time.Millisecond
}

// runUntil runs a consumer until progress reaches n and returns the time
// from its first record to its last: the group join, the same on both
// sides, is not what is compared.
func runUntil(ctx context.Context, run func(context.Context) error, n int64, progress func() int64) (time.Duration, error) {
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- run(runCtx) }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var start time.Time
	for {
		p := progress()
		if p > 0 && start.IsZero() {
			start = time.Now()
		}
		if p >= n {
			break
		}
		select {
		case err := <-errc:
			cancel()
			return 0, fmt.Errorf("consumer stopped: %v", err)
		case <-ctx.Done():
			cancel()
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
	elapsed := time.Since(start)
	cancel()
	<-errc
	return elapsed, nil
}

// rawGroup is the hand-written sarama consumer of the baselines: one
// message at a time per partition, MarkMessage after the handler, sarama's
// auto-commit.
type rawGroup struct {
	handle func(context.Context, *sarama.ConsumerMessage) error
	done   *atomic.Int64
}

func (rawGroup) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (rawGroup) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (g rawGroup) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		for {
			err := g.handle(sess.Context(), m)
			if err == nil {
				break
			}
			if sess.Context().Err() != nil {
				return nil
			}
			time.Sleep(10 * time.Millisecond) // retry
		}
		sess.MarkMessage(m, "")
		g.done.Add(1)
	}
	return nil
}

func runRawGroup(ctx context.Context, brokers []string, group, topic string, n int, done *atomic.Int64, handle func(context.Context, *sarama.ConsumerMessage) error) (time.Duration, error) {
	c := baseConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.MaxWaitTime = 50 * time.Millisecond
	cg, err := sarama.NewConsumerGroup(brokers, group, c)
	if err != nil {
		return 0, err
	}
	defer cg.Close()
	return runUntil(ctx, func(ctx context.Context) error {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, rawGroup{handle: handle, done: done}); err != nil {
				return err
			}
		}
		return nil
	}, int64(n), done.Load)
}

// benchUUID is a UUID that names event i, so that a duplicate can name
// its original.
func benchUUID(i int) event.UUID {
	return event.MustParseUUID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
}
