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

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// The end-to-end test: service transaction → outbox → relay → Kafka →
// consumer, each process SIGKILLed at random. The consumer stands in for
// the PostgreSQL dedup store (runtime/dedup/pgdedup, not on this branch
// yet): in one transaction per record it records the ce_id as processed
// and, only if it was new, applies the effect, so that a redelivery (after
// a consumer's kill) or a republication (after a relay's) does nothing.

const e2eTopic = "outbox.e2e"

// e2eSchema is the business table, the consumer's effects and its
// processed ce_ids, next to the outbox table.
const e2eSchema = `
CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, ref text NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS effects (ref text NOT NULL, ce_id text NOT NULL);
CREATE TABLE IF NOT EXISTS processed (ce_id text PRIMARY KEY);`

// runChildService writes business orders until the orders table holds
// CHILD_TARGET rows: each order and its event in one transaction.
func runChildService(ctx context.Context, t *testing.T) error {
	pool := schemaPool(t, os.Getenv("CHILD_SCHEMA"), 2)
	target, _ := strconv.ParseInt(os.Getenv("CHILD_TARGET"), 10, 64)
	et := testevent.Type(e2eTopic, event.AtLeastOnce)
	for ctx.Err() == nil {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
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
				return Enqueue(ctx, tx, testevent.New(et, ref, "c"+strconv.FormatInt(id%50, 10), id))
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// runChildConsumer consumes the topic at-least-once in group CHILD_GROUP
// (static member CHILD_INSTANCE) and applies each order's effect once.
func runChildConsumer(ctx context.Context, t *testing.T) error {
	pool := schemaPool(t, os.Getenv("CHILD_SCHEMA"), 4)
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Config:     kafka.Config{Brokers: strings.Split(os.Getenv("CHILD_BROKERS"), ","), Tune: kafkatest.FastTune, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))},
		GroupID:    os.Getenv("CHILD_GROUP"),
		InstanceID: os.Getenv("CHILD_INSTANCE"),
		MaxBatch:   50,
	})
	if err != nil {
		return err
	}
	et := testevent.Type(e2eTopic, event.AtLeastOnce)
	decode := func(b []byte) (*testevent.Order, error) {
		var o testevent.Order
		return &o, o.UnmarshalJSON(b)
	}
	noDedup := os.Getenv("CHILD_NO_DEDUP") == "1"
	kafka.HandleAtLeastOnce(c, et, decode, func(ctx context.Context, o *testevent.Order, r kafka.AtLeastOnceRecord) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if noDedup { // the control: every delivery applies the effect
				_, err := tx.Exec(ctx, "INSERT INTO effects (ref, ce_id) VALUES ($1, $2)", o.ID, r.ID)
				return err
			}
			tag, err := tx.Exec(ctx, "INSERT INTO processed (ce_id) VALUES ($1) ON CONFLICT DO NOTHING", r.ID)
			if err != nil || tag.RowsAffected() == 0 {
				return err // a redelivery or republication: already applied
			}
			_, err = tx.Exec(ctx, "INSERT INTO effects (ref, ce_id) VALUES ($1, $2)", o.ID, r.ID)
			return err
		})
	})
	return c.Run(ctx)
}

// e2eResult is what the end-to-end checker found.
type e2eResult struct {
	committed, kills          int64
	missing, phantom, doubled int64
	republished               int64
	perRole                   string
}

// TestEndToEndExactlyOneEffectUnderKills: services write orders with their
// events in one transaction, relays publish, consumers apply each order's
// effect; every kind of process is SIGKILLed at random and restarted. Each
// committed order must have exactly one effect, and no effect may exist
// for an order that rolled back (a service killed mid-transaction).
// EVENTGEN_SOAK=1: 100,000 orders, at least 30 kills; default: 3,000 and 12.
func TestEndToEndExactlyOneEffectUnderKills(t *testing.T) {
	target, minKills := 3000, 12
	if os.Getenv(EnvSoak) == "1" {
		target, minKills = 100000, 30
	}
	r := runEndToEnd(t, target, minKills, true)
	t.Logf("%d orders committed, %d kills (%s): %d without an effect, %d effects of rolled-back orders, %d orders with two effects; %d records on the topic were republications the consumer absorbed by ce_id",
		r.committed, r.kills, r.perRole, r.missing, r.phantom, r.doubled, r.republished)
	if r.missing != 0 || r.phantom != 0 || r.doubled != 0 {
		t.Fatal("each committed order must have exactly one effect, and no other order any")
	}
}

// TestEndToEndWithoutDedupDoublesEffects is the control of the checker
// above: the same run with consumers that apply every delivery (no record
// of processed ce_ids) doubles the effects of what kills made the relays
// republish and the consumers redeliver, and the checker sees it.
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
	db := newTestDB(t)
	db.migrate(t)
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
			"CHILD_LOG":       filepath.Join(dir, fmt.Sprintf("relay-%03d.log", incarnation)),
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
		_ = sleep(context.Background(), time.Duration(50+rng.IntN(300))*time.Millisecond)
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
	res.republished = int64(len(kafkatest.ReadAll(t, c.Brokers(), e2eTopic))) - db.count(t, "SELECT count(DISTINCT ce_id) FROM effects")
	var perRole []string
	for _, r := range roles {
		perRole = append(perRole, fmt.Sprintf("%s %d", r.name, r.kills))
	}
	res.perRole = strings.Join(perRole, ", ")
	return res
}
