package outbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// outOfOrderCommits holds transactions that enqueued the first rows open
// while 100 later rows commit and are published, then commits them, then
// enqueues a sentinel and waits until the sentinel is on the topic: what
// the publisher running meanwhile has published by then is the result.
func outOfOrderCommits(t *testing.T, db *testDB, brokers []string, et *event.Type) (recs []published, want map[string]int) {
	t.Helper()
	ctx := context.Background()
	const held, later = 5, 100
	want = map[string]int{}
	var txs []pgx.Tx
	for i := range held {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		key := "held" + string(rune('a'+i))
		if err := Enqueue(ctx, tx, seqEvent(et, key, 0)); err != nil {
			t.Fatal(err)
		}
		want[key] = 1
		txs = append(txs, tx)
	}
	for i := range later {
		key := "later" + string(rune('a'+i%10))
		enqueue(t, db.pool, seqEvent(et, key, i/10))
		want[key]++
	}
	waitTopic(t, brokers, et.Topic, 3, later, 30*time.Second)
	for _, tx := range txs {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(t, db.pool, seqEvent(et, "sentinel", 0))
	want["sentinel"] = 1
	kafkatest.WaitFor(t, 30*time.Second, "the sentinel on the topic", func() bool {
		for _, r := range readTopic(t, brokers, et.Topic) {
			if r.key == "sentinel" {
				return true
			}
		}
		return false
	})
	return readTopic(t, brokers, et.Topic), want
}

func TestOutOfOrderCommitsAreNotSkipped(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType(t, "outbox.ooo")
	_, stop := runRelay(t, db.pool, relayOptions(c.Brokers()))
	recs, want := outOfOrderCommits(t, db, c.Brokers(), et)
	kafkatest.WaitFor(t, 30*time.Second, "the table to empty", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs = readTopic(t, c.Brokers(), et.Topic)
	chk := checkTopic(recs, want)
	t.Logf("relay: %v", chk)
	if len(chk.lost) > 0 || len(chk.violations) > 0 || len(chk.dups) > 0 {
		t.Fatalf("relay: %v: lost %s; violations %s", chk, firstN(chk.lost, 10), firstN(chk.violations, 10))
	}
}

// TestNaiveIDCursorLosesOutOfOrderCommits is the control of the test
// above: the same commits, published by a relay that keeps a cursor on
// the id, lose exactly the rows of the transactions held open.
func TestNaiveIDCursorLosesOutOfOrderCommits(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType(t, "outbox.ooo.naive")
	prod, err := kafka.NewAtLeastOnceProducer(kafka.Config{Brokers: c.Brokers(), Tune: kafkatest.FastTune})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- naiveIDCursorRelay(ctx, db.pool, prod) }()
	_, want := outOfOrderCommits(t, db, c.Brokers(), et)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	chk := checkTopic(readTopic(t, c.Brokers(), et.Topic), want)
	t.Logf("naive id cursor: %v: lost %s", chk, firstN(chk.lost, 10))
	if len(chk.lost) != 5 {
		t.Fatalf("the naive id-cursor relay lost %d events, want the 5 held ones: the checker must catch the skip", len(chk.lost))
	}
	for _, l := range chk.lost {
		if !strings.HasPrefix(l, "held") {
			t.Fatalf("lost %s, want only held rows", l)
		}
	}
}

func TestThreeRelaysKeepEveryKeysOrder(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 6})
	et := testEventType(t, "outbox.three")
	w := workload{et: et, keys: 300, perKey: 12, writers: 6, holdEvery: 8, maxHold: 20 * time.Millisecond, seed: kafkatest.Seed(t)}
	var relays []*Relay
	var stops []func() error
	for range 3 {
		o := relayOptions(c.Brokers())
		o.BatchSize = 200
		r, stop := runRelay(t, schemaPool(t, db.schema, 4), o)
		relays = append(relays, r)
		stops = append(stops, stop)
	}
	sharesSeen := make([]atomic.Bool, 3)
	watchDone := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, r := range relays {
				if r.Stats().Shards > 0 {
					sharesSeen[i].Store(true)
				}
			}
			select {
			case <-watchDone:
				return
			case <-tick.C:
			}
		}
	})
	if err := w.run(context.Background(), db.pool, Table{}); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 60*time.Second, "the table to empty", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	kafkatest.WaitFor(t, 30*time.Second, "the shards to be shared 22/22/20", func() bool {
		total := 0
		for _, r := range relays {
			s := r.Stats().Shards
			if s < 20 || s > 22 {
				return false
			}
			total += s
		}
		return total == Shards
	})
	close(watchDone)
	watch.Wait()
	for i, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if !sharesSeen[i].Load() {
			t.Errorf("relay %d never owned a shard", i)
		}
	}
	chk := checkTopic(readTopic(t, c.Brokers(), et.Topic), w.want())
	t.Logf("three relays: %v", chk)
	if chk.events != w.keys*w.perKey || len(chk.lost) > 0 || len(chk.violations) > 0 || len(chk.dups) > 0 {
		t.Fatalf("three relays: %v: lost %s; violations %s", chk, firstN(chk.lost, 10), firstN(chk.violations, 10))
	}
}

// skipLockedRelay is the article's relay, the control of the ordering
// checker: it selects 100 unpublished rows FOR UPDATE SKIP LOCKED,
// publishes them one at a time and marks each. Several of them at once
// publish a key's rows from different batches concurrently.
func skipLockedRelay(ctx context.Context, pool *pgxpool.Pool, prod *kafka.AtLeastOnceProducer) error {
	for ctx.Err() == nil {
		n := 0
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "SELECT id, topic, key, headers, payload, attempts FROM eventgen_outbox WHERE published_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED")
			if err != nil {
				return err
			}
			var batch []row
			var rw row
			if _, err := pgx.ForEachRow(rows, []any{&rw.id, &rw.topic, &rw.key, &rw.headers, &rw.payload, &rw.attempts}, func() error {
				batch = append(batch, rw)
				rw = row{}
				return nil
			}); err != nil {
				return err
			}
			n = len(batch)
			for _, rw := range batch {
				rec, err := rw.record()
				if err != nil {
					return err
				}
				done := make(chan error, 1)
				if err := prod.SendRawAsync(ctx, rec, func(err error) { done <- err }); err != nil {
					return err
				}
				if err := <-done; err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE eventgen_outbox SET published_at = now() WHERE id = $1", rw.id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n == 0 {
			return nil
		}
	}
	return nil
}

// TestSkipLockedRelaysReorderKeys is the control of the ordering checker:
// three of the article's relays on one backlog publish some key's events
// out of order, and the checker says so.
func TestSkipLockedRelaysReorderKeys(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType(t, "outbox.skiplocked")
	w := workload{et: et, keys: 50, perKey: 20, writers: 5, seed: kafkatest.Seed(t)}
	if err := w.run(context.Background(), db.pool, Table{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		prod, err := kafka.NewAtLeastOnceProducer(kafka.Config{Brokers: c.Brokers(), Tune: kafkatest.FastTune})
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		pool := schemaPool(t, db.schema, 2)
		wg.Go(func() { errs <- skipLockedRelay(context.Background(), pool, prod) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	chk := checkTopic(readTopic(t, c.Brokers(), et.Topic), w.want())
	t.Logf("three SKIP LOCKED relays: %v: %s", chk, firstN(chk.violations, 3))
	if len(chk.lost) > 0 {
		t.Fatalf("the control lost events (%s): it should only reorder", firstN(chk.lost, 5))
	}
	if len(chk.violations) == 0 {
		t.Fatal("three SKIP LOCKED relays kept every key's order: the checker must catch their reordering")
	}
}

func TestPoisonRowIsQuarantinedItsKeyWaitsAndRetryReleasesIt(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType(t, "outbox.poison")
	ctx := context.Background()
	for seq := range 4 {
		for _, k := range []string{"a", "b", "c"} {
			e := seqEvent(et, k, seq)
			if k == "a" && seq == 1 {
				e.Note = strings.Repeat("x", 32<<10) // over the relay's 16 KiB limit below
			}
			enqueue(t, db.pool, e)
		}
	}
	o := relayOptions(c.Brokers())
	o.MaxAttempts = 3
	small := func(sc *sarama.Config) { kafkatest.FastTune(sc); sc.Producer.MaxMessageBytes = 16 << 10 }
	o.Kafka.Tune = small
	r, stop := runRelay(t, db.pool, o)
	var q []QuarantinedRow
	kafkatest.WaitFor(t, 30*time.Second, "the poison row to be quarantined", func() bool {
		var err error
		q, err = Quarantined(ctx, db.pool, Table{}, 10)
		return err == nil && len(q) == 1
	})
	if q[0].Key != "a" || q[0].Attempts != 3 || !strings.Contains(q[0].LastError, "MaxMessageBytes") || q[0].EventID == "" || q[0].EventType != et.CEType {
		t.Fatalf("quarantined row: %+v", q[0])
	}
	waitTopic(t, c.Brokers(), et.Topic, 3, 9, 30*time.Second) // a/0, b/*, c/*
	kafkatest.WaitFor(t, 30*time.Second, "stats with the quarantined row and a's two waiting rows", func() bool {
		st := r.Stats()
		return st.Quarantined == 1 && st.Backlog == 2 && st.OldestUnpublished > 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := readTopic(t, c.Brokers(), et.Topic)
	chk := checkTopic(recs, map[string]int{"a": 1, "b": 4, "c": 4})
	if len(recs) != 9 || len(chk.lost) > 0 || len(chk.violations) > 0 {
		t.Fatalf("while a/1 is quarantined: %d records, %v (a's later rows must wait behind it, other keys must not)", len(recs), chk)
	}

	// Retry releases it; a relay that can send it publishes it, then a's
	// later rows, in order.
	if n, err := Retry(ctx, db.pool, Table{}, q[0].ID, 999999); err != nil || n != 1 {
		t.Fatalf("Retry = %d, %v; want 1", n, err)
	}
	if n, err := Retry(ctx, db.pool, Table{}); err != nil || n != 0 {
		t.Fatalf("Retry with nothing quarantined = %d, %v; want 0", n, err)
	}
	o.Kafka.Tune = kafkatest.FastTune
	_, stop = runRelay(t, db.pool, o)
	waitTopic(t, c.Brokers(), et.Topic, 3, 12, 30*time.Second)
	kafkatest.WaitFor(t, 30*time.Second, "the table to empty", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	chk = checkTopic(readTopic(t, c.Brokers(), et.Topic), map[string]int{"a": 4, "b": 4, "c": 4})
	if len(chk.lost) > 0 || len(chk.violations) > 0 || len(chk.dups) > 0 {
		t.Fatalf("after Retry: %v: %s %s", chk, firstN(chk.lost, 5), firstN(chk.violations, 5))
	}
}

// produceFaultsRun publishes a workload (20 keys, so that batches carry
// several rows of a key) with one relay while produce requests fail now
// and then, and returns what the checker found and how many faults hit.
func produceFaultsRun(t *testing.T, h *hooks) (check, int) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3, InProcess: true})
	et := testEventType(t, "outbox.faults")
	o := relayOptions(c.Brokers())
	o.BatchSize = 100
	o.hooks = h
	_, stop := runRelay(t, db.pool, o)
	w := workload{et: et, keys: 20, perKey: 100, writers: 4, holdEvery: 10, maxHold: 10 * time.Millisecond, seed: kafkatest.Seed(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var faults atomic.Int64
	var injector sync.WaitGroup
	injector.Go(func() { faults.Store(int64(injectProduceFaults(ctx, t, c, et.Topic, 3))) })
	if err := w.run(context.Background(), db.pool, Table{}); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 60*time.Second, "the table to empty", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	cancel()
	injector.Wait()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	return checkTopic(readTopic(t, c.Brokers(), et.Topic), w.want()), int(faults.Load())
}

func TestProduceErrorsAndLostAcksKeepOrderWithoutLoss(t *testing.T) {
	chk, faults := produceFaultsRun(t, nil)
	t.Logf("%d faults injected: %v", faults, chk)
	if faults < 3 {
		t.Fatalf("only %d faults hit produce requests", faults)
	}
	if len(chk.lost) > 0 || len(chk.violations) > 0 || len(chk.dups) > 0 {
		t.Fatalf("%v: lost %s; violations %s", chk, firstN(chk.lost, 10), firstN(chk.violations, 10))
	}
}

// TestProduceErrorsReorderWithAKeysRowsInFlight is the control of the test
// above: a relay that sends a key's rows of a batch together (rather than
// one per key at a time) has a later row overtake one that failed. The
// failures land at random, so up to three runs are given to show it.
func TestProduceErrorsReorderWithAKeysRowsInFlight(t *testing.T) {
	for run := 1; run <= 3; run++ {
		var chk check
		var faults int
		t.Run("", func(t *testing.T) { chk, faults = produceFaultsRun(t, &hooks{allInFlight: true}) })
		t.Logf("run %d, all rows in flight, %d faults: %v", run, faults, chk)
		if len(chk.lost) > 0 {
			t.Fatalf("the control lost %s: it should only reorder", firstN(chk.lost, 5))
		}
		if len(chk.violations) > 0 {
			return
		}
	}
	t.Fatal("with a key's rows in flight together, no produce error reordered a key in three runs: the ordering check must catch it")
}

func TestNotifyWakesAnIdleRelay(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType(t, "outbox.notify")
	o := relayOptions(c.Brokers())
	// Neither polling nor rebalancing wakes it during the test: only
	// notifications can. The relay names the schema, while Enqueue finds
	// the table through the search_path, as generated code does: both
	// use the same channel.
	o.PollInterval, o.RebalanceInterval = time.Hour, time.Hour
	o.Table = Table{Schema: db.schema}
	r, stop := runRelay(t, db.pool, o)
	kafkatest.WaitFor(t, 30*time.Second, "the relay to own every shard", func() bool { return r.Stats().Shards == Shards })
	for i := range 5 {
		enqueue(t, db.pool, seqEvent(et, "k", i))
		waitTopic(t, c.Brokers(), et.Topic, 1, i+1, 10*time.Second)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestPollingWithoutNotify(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType(t, "outbox.poll")
	o := relayOptions(c.Brokers())
	o.DisableNotify = true
	o.PollInterval = 20 * time.Millisecond
	_, stop := runRelay(t, db.pool, o)
	for i := range 5 {
		enqueue(t, db.pool, seqEvent(et, "k", i))
	}
	waitTopic(t, c.Brokers(), et.Topic, 1, 5, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestLostSessionReleasesShards terminates a relay's PostgreSQL session:
// its shards go to the other relay, it reconnects and takes its share
// back, and nothing is lost or reordered meanwhile.
func TestLostSessionReleasesShards(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType(t, "outbox.session")
	a, stopA := runRelay(t, schemaPool(t, db.schema, 2), relayOptions(c.Brokers()))
	b, stopB := runRelay(t, schemaPool(t, db.schema, 2), relayOptions(c.Brokers()))
	kafkatest.WaitFor(t, 30*time.Second, "32 shards each", func() bool { return a.Stats().Shards == 32 && b.Stats().Shards == 32 })
	oid, err := Table{}.stmts().tableOID(context.Background(), db.pool)
	if err != nil {
		t.Fatal(err)
	}
	w := workload{et: et, keys: 50, perKey: 20, writers: 5, seed: kafkatest.Seed(t)}
	done := make(chan error, 1)
	go func() { done <- w.run(context.Background(), db.pool, Table{}) }()
	waitTopic(t, c.Brokers(), et.Topic, 3, 100, 30*time.Second)
	// Terminate one relay session (which one does not matter).
	var terminated bool
	err = db.pool.QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2 AND objsubid = 2 LIMIT 1`, oid, presence).Scan(&terminated)
	if err != nil || !terminated {
		t.Fatalf("terminating a relay session: %v %v", terminated, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, 60*time.Second, "the table to empty", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	kafkatest.WaitFor(t, 30*time.Second, "32 shards each again", func() bool { return a.Stats().Shards == 32 && b.Stats().Shards == 32 })
	if err := errors.Join(stopA(), stopB()); err != nil {
		t.Fatal(err)
	}
	chk := checkTopic(readTopic(t, c.Brokers(), et.Topic), w.want())
	t.Logf("%v", chk)
	if len(chk.lost) > 0 || len(chk.violations) > 0 {
		t.Fatalf("%v: lost %s; violations %s", chk, firstN(chk.lost, 10), firstN(chk.violations, 10))
	}
}

// injectProduceFaults injects, one after the other, lost produce acks
// (written, then REQUEST_TIMED_OUT), NOT_LEADER_FOR_PARTITION and
// UNKNOWN_SERVER_ERROR answers, until ctx is done. After each fault has
// hit, it waits until 50 more records reached the topic, so that faults
// come between publications rather than as one long outage. It returns
// how many faults hit.
func injectProduceFaults(ctx context.Context, t testing.TB, c *kafkatest.Cluster, topic string, partitions int) int {
	client := kafkatest.NewClient(t, c.Brokers(), kafkatest.ClientOptions{ReadUncommitted: true})
	records := func() int64 {
		var n int64
		for p := range int32(partitions) {
			off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err == nil {
				n += off
			}
		}
		return n
	}
	hits := 0
	for i := 0; ctx.Err() == nil; i++ {
		var f *kafkatest.Fault
		n := 2
		switch i % 3 {
		case 0:
			f = c.LoseProduceAcks(n)
		case 1:
			f = c.FailRequests(kmsg.Produce, kerr.NotLeaderForPartition, n)
		case 2:
			n = 1
			f = c.FailRequests(kmsg.Produce, kerr.UnknownServerError, n)
		}
		if f.Wait(ctx, n) != nil {
			f.Remove()
			return hits
		}
		hits++
		before := records()
		for ctx.Err() == nil && records() < before+50 {
			_ = sleep(ctx, 5*time.Millisecond)
		}
	}
	return hits
}

// TestRowsWithoutKeyAreNotHeld: rows without a key have no order to keep,
// so a quarantined one holds back no other.
func TestRowsWithoutKeyAreNotHeld(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	ctx := context.Background()
	headers := `{"ce_id": "id", "ce_type": "test.Keyless.v1"}`
	insert := "INSERT INTO eventgen_outbox (topic, key, headers, payload) VALUES ('outbox.keyless', '', $1, $2)"
	if _, err := db.pool.Exec(ctx, insert, headers, []byte(strings.Repeat("x", 32<<10))); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := db.pool.Exec(ctx, insert, headers, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	o := relayOptions(c.Brokers())
	o.MaxAttempts = 1
	o.Kafka.Tune = func(sc *sarama.Config) { kafkatest.FastTune(sc); sc.Producer.MaxMessageBytes = 16 << 10 }
	_, stop := runRelay(t, db.pool, o)
	waitTopic(t, c.Brokers(), "outbox.keyless", 1, 5, 30*time.Second)
	kafkatest.WaitFor(t, 30*time.Second, "only the oversized row left, quarantined", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 1 &&
			db.count(t, "SELECT count(*) FROM eventgen_outbox WHERE quarantined_at IS NOT NULL") == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
