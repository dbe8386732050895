package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// batchCall is one call of a batch handler: its events and whether it
// returned nil.
type batchCall struct {
	seqs     []int64
	attempts []int
	ok       bool
}

// TestDedupBatchHandler runs records with duplicates and failing records
// in the middle of a batch through a batch handler on a PostgreSQL store
// (at least once and exactly once): the handler writes each call's effects
// with one statement, then fails for a failing event. Every event's effect
// commits exactly once, except the permanently failing one (dead-lettered,
// no effect); duplicates never reach the handler; a failure is narrowed
// down to its event, called alone, and classified as a per-record
// handler's would be (a returned error and a recovered panic are retried,
// a Permanent error is dead-lettered at once); no call commits an event
// before every earlier one is settled (the partition's order).
func TestDedupBatchHandler(t *testing.T) {
	for _, g := range []event.Guarantee{event.AtLeastOnce, event.ExactlyOnce} {
		t.Run(g.String(), func(t *testing.T) { testDedupBatchHandler(t, g) })
	}
}

func testDedupBatchHandler(t *testing.T, g event.Guarantee) {
	const (
		retried   = 20 // fails its first attempt with an error
		permanent = 25 // fails with a Permanent error
		panics    = 30 // panics in its first attempt
		n         = 40
	)
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Credit", "batch-"+g.String(), g)
	et.DedupTTL = time.Hour
	cl.CreateTopic(t, et.Topic, 1)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 1)
	pool, schema := ledgerDB(t, 4)
	// seq 5 twice in a row, seq 12 again at the end: two duplicates.
	var seqs []int64
	for s := range int64(n) {
		seqs = append(seqs, s)
		if s == 5 {
			seqs = append(seqs, s)
		}
	}
	seqs = append(seqs, 12)
	produceLedger(t, cl.Brokers(), et, seqs, 3)

	met := &Counters{}
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune, Metrics: met, Logger: slog.New(slog.DiscardHandler)},
		GroupID: "batch", MaxBatch: 100, Retry: RetryPolicy{MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := pgdedup.New(pool, pgdedup.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []batchCall
	handle := func(ctx context.Context, tx pgx.Tx, es []testEvent, attempts []int) (err error) {
		call := batchCall{attempts: attempts}
		for _, e := range es {
			call.seqs = append(call.seqs, e.Seq)
		}
		defer func() {
			v := recover()
			call.ok = v == nil && err == nil
			mu.Lock()
			calls = append(calls, call)
			mu.Unlock()
			if v != nil {
				panic(v) // recovered by the consumer
			}
		}()
		accounts, amounts, ss := make([]string, len(es)), make([]int64, len(es)), make([]int64, len(es))
		for i, e := range es {
			accounts[i], amounts[i], ss[i] = e.K, amount(e.Seq), e.Seq
		}
		if _, err := tx.Exec(ctx, applyEffects, accounts, amounts, ss); err != nil {
			return err
		}
		for i, e := range es {
			switch {
			case e.Seq == retried && attempts[i] == 1:
				return fmt.Errorf("event %d: first attempt fails", e.Seq)
			case e.Seq == permanent:
				return Permanent(fmt.Errorf("event %d is invalid", e.Seq))
			case e.Seq == panics && attempts[i] == 1:
				panic(fmt.Sprintf("event %d panics", e.Seq))
			}
		}
		return nil
	}
	if g == event.ExactlyOnce {
		HandleExactlyOnceBatch(c, et, decodeTestEvent, dedup.BatchOffsetStore[pgx.Tx](store), func(ctx context.Context, tx pgx.Tx, es []testEvent, recs []ExactlyOnceRecord) error {
			attempts := make([]int, len(recs))
			for i, r := range recs {
				attempts[i] = r.Attempt
			}
			return handle(ctx, tx, es, attempts)
		})
	} else {
		HandleDedupedBatch(c, et, decodeTestEvent, dedup.BatchStore[pgx.Tx](store), func(ctx context.Context, tx pgx.Tx, es []testEvent, recs []AtLeastOnceRecord) error {
			attempts := make([]int, len(recs))
			for i, r := range recs {
				attempts[i] = r.Attempt
			}
			return handle(ctx, tx, es, attempts)
		})
	}
	stop := runInBackground(t, "batch consumer", c.Run)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "batch", et.Topic, 1, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	applied := map[int64]int{}
	rows, err := pool.Query(t.Context(), `SELECT seq FROM applied`)
	if err != nil {
		t.Fatal(err)
	}
	var s int64
	if _, err := pgx.ForEachRow(rows, []any{&s}, func() error { applied[s]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for s := range int64(n) {
		if want := map[bool]int{true: 0, false: 1}[s == permanent]; applied[s] != want {
			t.Errorf("event %d applied %d times, want %d", s, applied[s], want)
		}
	}
	if d := met.Get(et.Name, Duplicates); d != 2 {
		t.Errorf("Duplicates = %d, want 2", d)
	}
	if h := met.Get(et.Name, Handled); h != n-1 {
		t.Errorf("Handled = %d, want %d", h, n-1)
	}
	if dl := met.Get(et.Name, DeadLettered); dl != 1 {
		t.Errorf("DeadLettered = %d, want 1 (the Permanent failure, without retries)", dl)
	}
	if r := met.Get(et.Name, Retried); r != 2 {
		t.Errorf("Retried = %d, want 2 (the failed and the panicking event, once each)", r)
	}
	dead := kafkatest.ReadAll(t, cl.Brokers(), DeadLetterTopic(et.Topic))
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if e, err := decodeTestEvent(dead[0].Value); err != nil || e.Seq != permanent {
		t.Errorf("dead letter %s (%v), want event %d", dead[0].Value, err, permanent)
	}

	mu.Lock()
	defer mu.Unlock()
	// Each failure was pinned on its event, called alone, in its attempt.
	alone := func(seq int64, attempt int, ok bool) bool {
		return slices.ContainsFunc(calls, func(c batchCall) bool {
			return len(c.seqs) == 1 && c.seqs[0] == seq && c.attempts[0] == attempt && c.ok == ok
		})
	}
	for _, f := range []struct {
		seq     int64
		attempt int
	}{{retried, 1}, {permanent, 1}, {panics, 1}} {
		if !alone(f.seq, f.attempt, false) {
			t.Errorf("no failing call with event %d alone in attempt %d; calls %v", f.seq, f.attempt, calls)
		}
	}
	// Successful calls are the committed effects (the store had no
	// failure): each event in exactly one, the duplicates in none more.
	committed := map[int64]int{}
	for _, c := range calls {
		for _, s := range c.seqs {
			if c.ok {
				committed[s]++
			}
		}
	}
	for s := range int64(n) {
		if want := map[bool]int{true: 0, false: 1}[s == permanent]; committed[s] != want {
			t.Errorf("event %d in %d successful handler calls, want %d; calls %v", s, committed[s], want, calls)
		}
	}
	// The partition's order: a successful call's events come after every
	// earlier event succeeded (or was dead-lettered).
	settled := map[int64]bool{}
	for _, c := range calls {
		if c.seqs[0] == permanent && len(c.seqs) == 1 {
			settled[permanent] = true
		}
		if !c.ok {
			continue
		}
		for _, s := range c.seqs {
			for before := range s {
				if !settled[before] && !slices.Contains(c.seqs, before) {
					t.Fatalf("call %v committed event %d before event %d was settled", c.seqs, s, before)
				}
			}
			settled[s] = true
		}
	}
}

// TestBatchHandlerWaitsBehindAnotherStore: on one topic, a record of an
// event with a per-record handler (its own store) fails its first attempt;
// the records behind it, of an event with a batch handler on another
// store, wait for it instead of running in their store's call of the same
// round (a batch call would run them all).
func TestBatchHandlerWaitsBehindAnotherStore(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	a := testEventType("A", "mixed", event.AtLeastOnce)
	b := testEventType("B", "mixed", event.AtLeastOnce)
	cl.CreateTopic(t, a.Topic, 1)
	cl.CreateTopic(t, DeadLetterTopic(a.Topic), 1)
	pc := idempotentConfig()
	p, err := sarama.NewSyncProducer(cl.Brokers(), pc)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*sarama.ProducerMessage
	for seq, et := range []*event.Type{a, a, b, b, b} {
		e := &testEvent{K: "k", Seq: int64(seq), et: et}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: et.Topic, Key: sarama.StringEncoder(e.K), Value: sarama.ByteEncoder(e.AppendJSON(nil)),
			Headers: CloudEventHeaders(context.Background(), et, event.NewUUID().String(), time.Now())})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune, Logger: slog.New(slog.DiscardHandler)},
		GroupID: "mixed", Retry: RetryPolicy{MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int64 // seqs of successful handler runs, in order
	HandleDeduped(c, a, decodeTestEvent, dedup.Store[dedup.NoTx](dedup.NewMemory[dedup.NoTx](0)), func(_ context.Context, e testEvent, _ dedup.NoTx, rec AtLeastOnceRecord) error {
		if e.Seq == 1 && rec.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		mu.Lock()
		order = append(order, e.Seq)
		mu.Unlock()
		return nil
	})
	HandleDedupedBatch(c, b, decodeTestEvent, dedup.BatchStore[dedup.NoTx](dedup.NewMemory[dedup.NoTx](0)), func(_ context.Context, _ dedup.NoTx, es []testEvent, _ []AtLeastOnceRecord) error {
		mu.Lock()
		for _, e := range es {
			order = append(order, e.Seq)
		}
		mu.Unlock()
		return nil
	})
	stop := runInBackground(t, "mixed consumer", c.Run)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "mixed", a.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []int64{0, 1, 2, 3, 4}) {
		t.Fatalf("handled %v, want [0 1 2 3 4]: the batch handler's records must wait behind the failed one", order)
	}
}
