package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// The end-to-end test: service transaction → outbox → relay → Kafka →
// consumer, each process SIGKILLed at random. The consumer is what a
// generated Handle<Event> of a `dedup: {store: postgres}` event registers:
// kafka.HandleDeduped with a pgdedup.Store, the handler writing its effect
// through the store's transaction, in which the event's idempotency key is
// recorded. A redelivery (after a consumer's kill) or a republication
// (after a relay's, with the same ce_id and payload, hence the same
// idempotency key) is then a duplicate, and the effect is not applied again.

const e2eTopic = "outbox.e2e"

// e2eEventType is the event's metadata as the generator writes it for an
// at-least-once `outbox: true` event with a PostgreSQL dedup store.
var e2eEventType = func() *event.Type {
	et := testevent.Type(e2eTopic, event.AtLeastOnce)
	et.Dedup, et.DedupTTL, et.Outbox = event.DedupPostgres, 24*time.Hour, true
	return et
}()

// e2eSchema is the business table and the consumer's effects, next to the
// outbox and dedup tables (each effect names the order and the ce_id of
// the record that applied it).
const e2eSchema = `
CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, ref text NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS effects (ref text NOT NULL, ce_id text NOT NULL);`

const insertEffect = "INSERT INTO effects (ref, ce_id) VALUES ($1, $2)"

// runChildService writes business orders until the orders table holds
// CHILD_TARGET rows: each order and its event in one transaction. The
// order's ref is the event's idempotency key.
func runChildService(ctx context.Context, t *testing.T) error {
	pool := schemaPool(t, os.Getenv("CHILD_SCHEMA"), 2)
	target, _ := strconv.ParseInt(os.Getenv("CHILD_TARGET"), 10, 64)
	for ctx.Err() == nil {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
			if ctx.Err() != nil {
				return nil // stopped
			}
			return err
		}
		if n >= target {
			return nil
		}
		for range 20 {
			ref := event.NewUUID().String()
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				var id int64
				if err := tx.QueryRow(ctx, "INSERT INTO orders (ref) VALUES ($1) RETURNING id", ref).Scan(&id); err != nil {
					return err
				}
				return Enqueue(ctx, tx, testevent.New(e2eEventType, ref, "c"+strconv.FormatInt(id%50, 10), id))
			})
			if ctx.Err() != nil {
				return nil // stopped (SIGTERM) mid-transaction: rolled back
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// runChildConsumer consumes the topic at-least-once in group CHILD_GROUP
// (static member CHILD_INSTANCE) the way generated code does for a
// PostgreSQL-dedup event: kafka.HandleDeduped with a pgdedup.Store, the
// effect written through the store's transaction. With CHILD_NO_DEDUP=1
// (the control) it registers a plain at-least-once handler that applies
// every delivery.
func runChildConsumer(ctx context.Context, t *testing.T) error {
	pool := schemaPool(t, os.Getenv("CHILD_SCHEMA"), 4)
	logf, err := os.OpenFile(os.Getenv("CHILD_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Each count of handled records and of duplicates the store absorbed
	// is one line, one write(2), which survives a SIGKILL: the test reads
	// the duplicates, and times half its kills on the handled records.
	logCounts := kafka.MetricsFunc(func(_ string, c kafka.Counter, n int64) {
		switch c {
		case kafka.Duplicates:
			_, _ = fmt.Fprintf(logf, "duplicates %d\n", n)
		case kafka.Handled:
			_, _ = fmt.Fprintf(logf, "handled %d\n", n)
		}
	})
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Config: kafka.Config{
			Brokers: strings.Split(os.Getenv("CHILD_BROKERS"), ","), Tune: kafkatest.FastTune, Metrics: logCounts,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		},
		GroupID:    os.Getenv("CHILD_GROUP"),
		InstanceID: os.Getenv("CHILD_INSTANCE"),
		MaxBatch:   50,
	})
	if err != nil {
		return err
	}
	decode := event.DecodeEvent[testevent.Order]
	if os.Getenv("CHILD_NO_DEDUP") == "1" {
		kafka.HandleAtLeastOnce(c, e2eEventType, decode, func(ctx context.Context, o *testevent.Order, r kafka.AtLeastOnceRecord) error {
			_, err := pool.Exec(ctx, insertEffect, o.ID, r.ID)
			return err
		})
		return c.Run(ctx)
	}
	store, err := pgdedup.New(pool, pgdedup.Options{})
	if err != nil {
		return err
	}
	kafka.HandleDeduped(c, e2eEventType, decode, store, func(ctx context.Context, o *testevent.Order, tx pgx.Tx, r kafka.AtLeastOnceRecord) error {
		_, err := tx.Exec(ctx, insertEffect, o.ID, r.ID)
		return err
	})
	return c.Run(ctx)
}

// e2eResult is what the end-to-end checker found.
type e2eResult struct {
	committed, kills          int64
	missing, phantom, doubled int64
	// republished counts the records on the topic beyond one per event
	// (ce_id): the copies a killed relay published again.
	republished int64
	// reissued counts orders whose event reached the topic under two
	// ce_ids: an event enqueued twice, not republished. Always 0.
	reissued int64
	// absorbed counts the deliveries the consumers' dedup store found
	// already processed (redeliveries and republications), as the
	// consumers' Duplicates counter reported them.
	absorbed int64
	perRole  string
	elapsed  time.Duration
}

// TestEndToEndExactlyOneEffectUnderKills: services write orders with their
// events in one transaction, relays publish, consumers apply each order's
// effect through the PostgreSQL dedup store; every kind of process is
// SIGKILLed at random and restarted. Each committed order must have
// exactly one effect, and no effect may exist for an order that rolled back
// (a service killed mid-transaction). EVENTGEN_SOAK=1: 100,000 orders, at
// least 30 kills; default: 3,000 and 12.
func TestEndToEndExactlyOneEffectUnderKills(t *testing.T) {
	target, minKills := 3000, 12
	if os.Getenv(EnvSoak) == "1" {
		target, minKills = 100000, 30
	}
	r := runEndToEnd(t, target, minKills, true)
	t.Logf("%d orders committed in %v, %d kills (%s): %d without an effect, %d effects of rolled-back orders, %d orders with two effects; %d records on the topic were republications (same ce_id and idempotency key); the dedup store absorbed %d deliveries (republications and redeliveries); %d orders published under two ce_ids",
		r.committed, r.elapsed.Round(time.Second), r.kills, r.perRole, r.missing, r.phantom, r.doubled, r.republished, r.absorbed, r.reissued)
	if r.missing != 0 || r.phantom != 0 || r.doubled != 0 || r.reissued != 0 {
		t.Fatal("each committed order must have exactly one effect, and no other order any")
	}
	if r.absorbed == 0 {
		t.Fatal("the dedup store absorbed no delivery: the kills did not exercise it")
	}
}

// TestEndToEndWithoutDedupDoublesEffects is the control of the checker
// above: the same run with consumers that apply every delivery (a plain
// at-least-once handler, no dedup store) doubles the effects of what kills
// made the relays republish and the consumers redeliver, and the checker
// sees it.
func TestEndToEndWithoutDedupDoublesEffects(t *testing.T) {
	r := runEndToEnd(t, 3000, 12, false)
	t.Logf("without dedup: %d orders committed, %d kills: %d orders with two effects (%d republications)", r.committed, r.kills, r.doubled, r.republished)
	if r.missing != 0 || r.phantom != 0 {
		t.Fatalf("the control lost or invented effects: %+v", r)
	}
	if r.doubled == 0 {
		t.Fatal("no effect was doubled without dedup under kills: the checker must catch doubled effects")
	}
}

func runEndToEnd(t *testing.T, target, minKills int, dedup bool) e2eResult {
	started := time.Now()
	db := newTestDB(t)
	db.migrate(t)
	if err := pgdedup.Migrate(context.Background(), db.pool, pgdedup.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(context.Background(), e2eSchema); err != nil {
		t.Fatal(err)
	}
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 6})
	c.CreateTopic(t, e2eTopic, 6)
	rng := rand.New(rand.NewPCG(kafkatest.Seed(t), 2))
	dir := t.TempDir()
	group := fmt.Sprintf("e2e-%d", rng.Uint32())
	noDedup := "0"
	if !dedup {
		noDedup = "1"
	}
	incarnation := 0
	env := func(extra map[string]string) map[string]string {
		incarnation++
		m := map[string]string{
			"CHILD_SCHEMA":    db.schema,
			"CHILD_BROKERS":   strings.Join(c.Brokers(), ","),
			"CHILD_MAX_BYTES": strconv.Itoa(1 << 20),
			"CHILD_BATCH":     "500",
			"CHILD_LOG":       filepath.Join(dir, fmt.Sprintf("child-%03d.log", incarnation)),
			"CHILD_TARGET":    strconv.Itoa(target),
			"CHILD_GROUP":     group,
			"CHILD_NO_DEDUP":  noDedup,
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	type role struct {
		name  string
		start func() *child
		c     *child
		kills int
	}
	roles := []*role{
		{name: "service-0", start: func() *child { return startChildMode(t, "service", env(nil)) }},
		{name: "service-1", start: func() *child { return startChildMode(t, "service", env(nil)) }},
		{name: "relay-0", start: func() *child { return startChildMode(t, "relay", env(nil)) }},
		{name: "relay-1", start: func() *child { return startChildMode(t, "relay", env(nil)) }},
		{name: "consumer-0", start: func() *child { return startChildMode(t, "consumer", env(map[string]string{"CHILD_INSTANCE": "c0"})) }},
		{name: "consumer-1", start: func() *child { return startChildMode(t, "consumer", env(map[string]string{"CHILD_INSTANCE": "c1"})) }},
	}
	for _, r := range roles {
		r.c = r.start()
	}
	ordersDone := func() bool { return db.count(t, "SELECT count(*) FROM orders") >= int64(target) }
	var res e2eResult
	order := rng.Perm(len(roles)) // every role first, once, while there is work
	for i := 0; res.kills < int64(minKills) || !ordersDone(); i++ {
		r := roles[rng.IntN(len(roles))]
		if i < len(order) {
			r = roles[order[i]]
		}
		if r.c.exited() {
			if strings.HasPrefix(r.name, "service") && r.c.err == nil {
				continue // finished its share
			}
			t.Fatalf("%s exited on its own: %v\n%s", r.name, r.c.err, r.c.output())
		}
		if !strings.HasPrefix(r.name, "service") && rng.IntN(2) == 0 {
			// Half the relay and consumer kills strike a few milliseconds
			// after the victim logged a step: a relay's batch about to be
			// published (killed before its deletion, it is published
			// again), a consumer's record handled and committed in
			// PostgreSQL (killed before the Kafka commit, it is delivered
			// again). Those are the copies the dedup store must absorb.
			n := fileSize(r.c.log)
			kafkatest.Eventually(500*time.Millisecond, func() bool { return fileSize(r.c.log) > n })
			_ = sleep(context.Background(), time.Duration(rng.IntN(5000))*time.Microsecond)
		} else {
			_ = sleep(context.Background(), time.Duration(50+rng.IntN(300))*time.Millisecond)
		}
		if strings.HasPrefix(r.name, "service") && ordersDone() {
			continue
		}
		r.c.kill(t)
		r.kills++
		res.kills++
		r.c = r.start()
	}
	kafkatest.WaitFor(t, 300*time.Second, "an effect for every committed order", func() bool {
		res.committed = db.count(t, "SELECT count(*) FROM orders")
		return db.count(t, "SELECT count(DISTINCT ref) FROM effects") >= res.committed
	})
	for _, r := range roles {
		if r.c.exited() {
			continue
		}
		if err := r.c.terminate(t); err != nil {
			t.Fatalf("%s: %v\n%s", r.name, err, r.c.output())
		}
	}
	res.missing = db.count(t, "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM effects e WHERE e.ref = o.ref)")
	res.phantom = db.count(t, "SELECT count(*) FROM effects e WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.ref = e.ref)")
	res.doubled = db.count(t, "SELECT count(*) FROM (SELECT ref FROM effects GROUP BY ref HAVING count(*) > 1) d")
	ceIDs := map[string]bool{}
	refIDs := map[string]map[string]bool{} // order ref → its ce_ids on the topic
	recs := kafkatest.ReadAll(t, c.Brokers(), e2eTopic)
	for _, m := range recs {
		o, err := event.DecodeEvent[testevent.Order](m.Value)
		if err != nil {
			t.Fatalf("record %d/%d: %v", m.Partition, m.Offset, err)
		}
		id, _ := kafka.HeaderValue(m.Headers, event.HeaderID)
		ceIDs[id] = true
		if refIDs[o.ID] == nil {
			refIDs[o.ID] = map[string]bool{}
		}
		refIDs[o.ID][id] = true
	}
	res.republished = int64(len(recs) - len(ceIDs))
	for _, ids := range refIDs {
		if len(ids) > 1 {
			res.reissued++
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "child-*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if n, ok := strings.CutPrefix(line, "duplicates "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				res.absorbed += v
			}
		}
	}
	res.elapsed = time.Since(started)
	var perRole []string
	for _, r := range roles {
		perRole = append(perRole, fmt.Sprintf("%s %d", r.name, r.kills))
	}
	res.perRole = strings.Join(perRole, ", ")
	return res
}

// fileSize returns the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
