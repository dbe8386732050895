package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/outbox"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// The outbox scenarios drain a preloaded outbox of n OrderShipped events
// (one key per order, the same JSON value and CloudEvents headers on every
// side) into Kafka, on the same PostgreSQL and a fresh embedded broker per
// measurement; the time is from the relay's start until n records are on
// the topic (preloading is not timed). Baselines:
//
//   - the article's relay: one process selecting 100 unpublished rows FOR
//     UPDATE SKIP LOCKED, sending them one at a time (an idempotent sarama
//     SyncProducer) and updating each row, then committing;
//   - watermill's forwarder (watermill-sql v4 publisher in the transaction,
//     components/forwarder reading with the PostgreSQL subscriber and
//     publishing through a sarama SyncProducer, as watermill-kafka does).

// postgresURL is the database of the outbox scenarios (-postgres).
var postgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// outboxTopic is where the relays publish: OrderShipped's topic, which the
// outbox rows carry.
var outboxTopic = (&shop.OrderShipped{}).EventType().Topic

// benchDB is a fresh schema in postgresURL's database for one measurement.
type benchDB struct {
	pool *pgxpool.Pool
	drop func()
}

func newBenchDB(ctx context.Context) (*benchDB, error) {
	cfg, err := pgxpool.ParseConfig(postgresURL)
	if err != nil {
		return nil, errors.New("-postgres is not a valid PostgreSQL connection URL")
	}
	admin, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("the outbox scenarios need PostgreSQL (-postgres): %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "bench_outbox_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close(ctx)
		return nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(ctx)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		drop()
		return nil, err
	}
	return &benchDB{pool: pool, drop: func() { pool.Close(); drop() }}, nil
}

// shipped returns event i of a run.
func shipped(i int) *shop.OrderShipped {
	return &shop.OrderShipped{OrderID: event.NewUUID(), Carrier: "carrier-" + strconv.Itoa(i), ShippedAt: placedAt}
}

// preloadOutbox enqueues n events into eventgen's outbox table, 100 per
// transaction.
func preloadOutbox(ctx context.Context, pool *pgxpool.Pool, n int) error {
	if err := outbox.Migrate(ctx, pool, outbox.Table{}); err != nil {
		return err
	}
	for start := 0; start < n; start += 100 {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for i := start; i < min(start+100, n); i++ {
				if err := shop.EnqueueOrderShipped(ctx, tx, shipped(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	_, err := pool.Exec(ctx, "ANALYZE eventgen_outbox")
	return err
}

// waitRecords polls the topic's high watermarks until they add up to n.
func waitRecords(ctx context.Context, brokers []string, topic string, n int) error {
	c, err := sarama.NewClient(brokers, baseConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var total int64
		for p := range int32(partitions) {
			off, err := c.GetOffset(topic, p, sarama.OffsetNewest)
			if err == nil {
				total += off
			}
		}
		if total >= int64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d records on %s: %w", total, n, topic, ctx.Err())
		case <-tick.C:
		}
	}
}

// drain times run, started on a preloaded outbox, until n records are on
// the topic; run must return when its context is cancelled.
func drain(ctx context.Context, brokers []string, n int, run func(context.Context) error) (time.Duration, error) {
	if err := createTopic(brokers, outboxTopic); err != nil {
		return 0, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- run(runCtx) }()
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	waited := make(chan error, 1)
	go func() { waited <- waitRecords(waitCtx, brokers, outboxTopic, n) }()
	select {
	case err := <-waited:
		elapsed := time.Since(start)
		stop()
		runErr := <-errc
		if err != nil {
			return 0, errors.Join(err, runErr)
		}
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			return 0, runErr
		}
		return elapsed, nil
	case err := <-errc:
		cancelWait()
		<-waited
		return 0, fmt.Errorf("stopped before publishing %d records: %w", n, err)
	}
}

// relayDrain: eventgen's relay at its defaults (one relay).
func relayDrain(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	db, err := newBenchDB(ctx)
	if err != nil {
		return 0, err
	}
	defer db.drop()
	if err := preloadOutbox(ctx, db.pool, n); err != nil {
		return 0, err
	}
	r, err := outbox.NewRelay(db.pool, outbox.Options{Kafka: kafka.Config{Brokers: brokers}})
	if err != nil {
		return 0, err
	}
	return drain(ctx, brokers, n, r.Run)
}

// articleDrain: the article's relay on the same table and rows.
func articleDrain(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	db, err := newBenchDB(ctx)
	if err != nil {
		return 0, err
	}
	defer db.drop()
	if err := preloadOutbox(ctx, db.pool, n); err != nil {
		return 0, err
	}
	p, err := sarama.NewSyncProducer(brokers, idempotentConfig())
	if err != nil {
		return 0, err
	}
	defer p.Close()
	return drain(ctx, brokers, n, func(ctx context.Context) error { return articleRelay(ctx, db.pool, p) })
}

// articleRelay selects 100 unpublished rows FOR UPDATE SKIP LOCKED,
// publishes them one at a time and marks each published, until ctx is done.
func articleRelay(ctx context.Context, pool *pgxpool.Pool, p sarama.SyncProducer) error {
	type row struct {
		id         int64
		topic, key string
		headers    map[string]string
		payload    []byte
	}
	for ctx.Err() == nil {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id, topic, key, headers, payload FROM eventgen_outbox
				WHERE published_at IS NULL AND quarantined_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED`)
			if err != nil {
				return err
			}
			var batch []row
			var r row
			if _, err := pgx.ForEachRow(rows, []any{&r.id, &r.topic, &r.key, &r.headers, &r.payload}, func() error {
				batch = append(batch, r)
				r = row{}
				return nil
			}); err != nil {
				return err
			}
			for _, r := range batch {
				var hs []sarama.RecordHeader
				for k, v := range r.headers {
					hs = append(hs, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
				}
				if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: r.topic, Key: sarama.StringEncoder(r.key), Value: sarama.ByteEncoder(r.payload), Headers: hs}); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE eventgen_outbox SET published_at = now() WHERE id = $1", r.id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

// watermillForwarderTopic is the table watermill's forwarder reads.
const watermillForwarderTopic = "bench_forwarder"

// watermillDrain: watermill-sql's PostgreSQL publisher (in the
// transaction) and subscriber, with components/forwarder publishing to
// Kafka.
func watermillDrain(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	db, err := newBenchDB(ctx)
	if err != nil {
		return 0, err
	}
	defer db.drop()
	logger := watermill.NopLogger{}
	schema := wsql.DefaultPostgreSQLSchema{}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(db.pool), wsql.SubscriberConfig{
		ConsumerGroup:    "bench",
		SchemaAdapter:    schema,
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, logger)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	if err := sub.SubscribeInitialize(watermillForwarderTopic); err != nil {
		return 0, err
	}
	for start := 0; start < n; start += 100 {
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: schema}, logger)
			if err != nil {
				return err
			}
			fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: watermillForwarderTopic})
			var msgs []*message.Message
			for i := start; i < min(start+100, n); i++ {
				msgs = append(msgs, watermillMessage(shipped(i)))
			}
			return fwd.Publish(outboxTopic, msgs...)
		})
		if err != nil {
			return 0, fmt.Errorf("watermill preload: %w", err)
		}
	}
	p, err := sarama.NewSyncProducer(brokers, idempotentConfig())
	if err != nil {
		return 0, err
	}
	defer p.Close()
	f, err := forwarder.NewForwarder(sub, &kafkaPublisher{p: p}, logger, forwarder.Config{ForwarderTopic: watermillForwarderTopic})
	if err != nil {
		return 0, err
	}
	return drain(ctx, brokers, n, func(ctx context.Context) error {
		go func() { <-ctx.Done(); _ = f.Close() }()
		return f.Run(ctx)
	})
}

// watermillMessage is e as a watermill message: the same value, and the
// CloudEvents headers and key as metadata.
func watermillMessage(e *shop.OrderShipped) *message.Message {
	m := message.NewMessage(event.NewUUID().String(), e.AppendJSON(nil))
	et := e.EventType()
	for k, v := range map[string]string{
		event.HeaderSpecVersion: event.SpecVersion, event.HeaderID: m.UUID, event.HeaderType: et.CEType,
		event.HeaderSource: et.Source, event.HeaderTime: time.Now().UTC().Format(time.RFC3339Nano),
		event.HeaderContentType: event.ContentTypeJSON, "key": e.Key(),
	} {
		m.Metadata.Set(k, v)
	}
	return m
}

// kafkaPublisher is a watermill Publisher on a sarama SyncProducer, one
// SendMessage per message (as watermill-kafka's publisher): the forwarder's
// destination.
type kafkaPublisher struct{ p sarama.SyncProducer }

func (k *kafkaPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		var hs []sarama.RecordHeader
		for key, v := range m.Metadata {
			if key != "key" {
				hs = append(hs, sarama.RecordHeader{Key: []byte(key), Value: []byte(v)})
			}
		}
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(m.Metadata.Get("key")), Value: sarama.ByteEncoder(m.Payload), Headers: hs}
		if _, _, err := k.p.SendMessage(msg); err != nil {
			return err
		}
	}
	return nil
}

func (k *kafkaPublisher) Close() error { return nil }

// --- enqueue-to-publish latency ----------------------------------------------

// outboxLatency is what measureOutboxLatency found for one relay setting.
type outboxLatency struct {
	mode          string
	rate, n       int
	p50, p99, max time.Duration
}

// measureOutboxLatency enqueues rate events per second for d, one per
// transaction, with one relay running (LISTEN/NOTIFY, or polling only), and
// measures each event's time from just before its transaction's commit to
// its arrival at a consumer of the topic.
func measureOutboxLatency(ctx context.Context, rate int, d time.Duration, notify bool) (outboxLatency, error) {
	res := outboxLatency{mode: "LISTEN/NOTIFY", rate: rate}
	if !notify {
		res.mode = fmt.Sprintf("polling every %v", outbox.DefaultPollInterval)
	}
	cluster, err := newCluster()
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	brokers := cluster.Brokers()
	if err := createTopic(brokers, outboxTopic); err != nil {
		return res, err
	}
	db, err := newBenchDB(ctx)
	if err != nil {
		return res, err
	}
	defer db.drop()
	if err := outbox.Migrate(ctx, db.pool, outbox.Table{}); err != nil {
		return res, err
	}
	arrived, stopObs, err := observeCarriers(brokers)
	if err != nil {
		return res, err
	}
	defer stopObs()
	r, err := outbox.NewRelay(db.pool, outbox.Options{Kafka: kafka.Config{Brokers: brokers}, DisableNotify: !notify})
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(runCtx) }()
	// A relay runs for long: let it take its shards and send a first
	// record (the producer's first send to a partition looks the leader up
	// and connects) before the clock starts.
	warmup := -1
	if err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return shop.EnqueueOrderShipped(ctx, tx, shipped(warmup)) }); err != nil {
		return res, err
	}
	for ready := false; !ready || r.Stats().Shards < outbox.Shards; {
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return res, err
		}
		arrived(func(i int, _ time.Time) { ready = ready || i == warmup })
	}
	committed := map[int]time.Time{}
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for i := 0; time.Since(next) < d && i < rate*int(d/time.Second)+1; i++ {
		if err := sleepCtx(ctx, time.Until(next)); err != nil {
			return res, err
		}
		next = next.Add(interval)
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return res, err
		}
		if err := shop.EnqueueOrderShipped(ctx, tx, shipped(i)); err != nil {
			_ = tx.Rollback(ctx)
			return res, err
		}
		committed[i] = time.Now()
		if err := tx.Commit(ctx); err != nil {
			return res, err
		}
		res.n++
	}
	deadline := time.Now().Add(30 * time.Second)
	var lat []time.Duration
	for len(lat) < res.n {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d of %d events arrived", len(lat), res.n)
		}
		_ = sleepCtx(ctx, 10*time.Millisecond)
		lat = lat[:0]
		arrived(func(i int, at time.Time) {
			if c, ok := committed[i]; ok {
				lat = append(lat, at.Sub(c))
			}
		})
	}
	stop()
	if err := <-errc; err != nil {
		return res, err
	}
	slices.Sort(lat)
	res.p50, res.p99, res.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	return res, nil
}

// observeCarriers consumes the topic from its start and records when each
// event (by the number in its carrier) arrived; arrived lists them.
func observeCarriers(brokers []string) (arrived func(func(int, time.Time)), stop func(), err error) {
	c, err := sarama.NewConsumer(brokers, baseConfig())
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	seen := map[int]time.Time{}
	var wg sync.WaitGroup
	var pcs []sarama.PartitionConsumer
	for p := range int32(partitions) {
		pc, err := c.ConsumePartition(outboxTopic, p, sarama.OffsetOldest)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		pcs = append(pcs, pc)
		wg.Go(func() {
			for m := range pc.Messages() {
				at := time.Now()
				var e shop.OrderShipped
				if e.UnmarshalJSON(m.Value) != nil {
					continue
				}
				i, err := strconv.Atoi(strings.TrimPrefix(e.Carrier, "carrier-"))
				if err != nil {
					continue
				}
				mu.Lock()
				if _, dup := seen[i]; !dup {
					seen[i] = at
				}
				mu.Unlock()
			}
		})
	}
	arrived = func(f func(int, time.Time)) {
		mu.Lock()
		defer mu.Unlock()
		for i, at := range seen {
			f(i, at)
		}
	}
	stop = func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		wg.Wait()
		c.Close()
	}
	return arrived, stop, nil
}

// printOutboxLatency measures and prints the latency table.
func printOutboxLatency(ctx context.Context, out io.Writer, rate int, d time.Duration) error {
	fmt.Fprintf(out, "\n| outbox relay, one event per transaction | events/s | events | p50 | p99 | max | target p99 |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, notify := range []bool{true, false} {
		res, err := measureOutboxLatency(ctx, rate, d, notify)
		if err != nil {
			return fmt.Errorf("outbox latency (%s): %w", res.mode, err)
		}
		target := "-"
		if notify {
			target = "≤ 20 ms"
		}
		fmt.Fprintf(out, "| enqueue committed → on the topic, %s | %d | %d | %.1f ms | %.1f ms | %.1f ms | %s |\n",
			res.mode, res.rate, res.n, ms(res.p50), ms(res.p99), ms(res.max), target)
	}
	return nil
}

func init() {
	if u := os.Getenv("EVENTGEN_POSTGRES_URL"); u != "" {
		postgresURL = u
	}
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
