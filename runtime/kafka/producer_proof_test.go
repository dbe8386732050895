package kafka_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Producer paths docs/producers.md describes and no other test ran (issue
// 7, Proof): Close of an at-least-once producer giving up on an
// acknowledgement, a Send whose context ends before its acknowledgement, a
// transaction whose abort itself fails, and a Commit whose context ends
// while EndTxn is in flight.

// holdRequests makes the broker hold every request with key for which
// match returns true, once armed, until release is called (also at t's
// cleanup, before the cluster closes). held counts the requests held.
func holdRequests(t *testing.T, c *kafkatest.Cluster, key kmsg.Key, match func(kmsg.Request) bool) (arm func(), held *atomic.Int64, release func()) {
	t.Helper()
	kf := c.Kfake()
	if kf == nil {
		t.Fatal("needs the in-process kfake cluster")
	}
	var armed atomic.Bool
	held = new(atomic.Int64)
	gate := make(chan struct{})
	var once atomic.Bool
	release = func() {
		if once.CompareAndSwap(false, true) {
			close(gate)
		}
	}
	t.Cleanup(release)
	kf.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		if !armed.Load() || !match(req) {
			return nil, nil, false
		}
		held.Add(1)
		kf.SleepControl(func() { <-gate })
		return nil, nil, false // then handled as usual
	})
	return func() { armed.Store(true) }, held, release
}

// countIDs waits until topic's single partition holds want records and
// returns how many times each order ID was written.
func countIDs(t *testing.T, c *kafkatest.Cluster, topic string, want int64) map[string]int {
	t.Helper()
	client := kafkatest.NewClient(t, c.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitFor(t, 30*time.Second, "the held record to be written", func() bool {
		return kafkatest.HighWater(t, client, topic, 1)[0] >= want
	})
	out := map[string]int{}
	for _, m := range kafkatest.ReadAll(t, c.Brokers(), topic) {
		o, err := testevent.Decode(nil, m.Value)
		if err != nil {
			t.Fatal(err)
		}
		out[o.ID]++
	}
	return out
}

// TestAtLeastOnceCloseTimesOut: a Send waits for its acknowledgement while
// the broker holds the produce request; Close gives up after CloseTimeout
// and returns an error matching ErrClosed, and so does the waiting Send.
// Once the broker answers, the record is written once.
func TestAtLeastOnceCloseTimesOut(t *testing.T) {
	const closeTimeout = 300 * time.Millisecond
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1, InProcess: true})
	const topic = "alo-close"
	c.CreateTopic(t, topic, 1)
	et := testevent.Type(topic, event.AtLeastOnce)
	arm, held, release := holdRequests(t, c, kmsg.Produce, func(kmsg.Request) bool { return true })
	cfg := testConfig(c, nil)
	cfg.CloseTimeout = closeTimeout
	p, err := kafka.NewAtLeastOnceProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustNil(t, p.Send(t.Context(), testevent.New(et, "warm-up", "c", 0))) // metadata and producer ID first
	arm()
	sendErr := make(chan error, 1)
	go func() { sendErr <- p.Send(context.Background(), testevent.New(et, "target", "c", 1)) }()
	kafkatest.WaitFor(t, 30*time.Second, "the produce request to be held", func() bool { return held.Load() == 1 })
	start := time.Now()
	err = p.Close()
	took := time.Since(start)
	if !errors.Is(err, kafka.ErrClosed) || took < closeTimeout || took > closeTimeout+kafkatest.Timeout(5*time.Second) {
		t.Fatalf("Close with an acknowledgement outstanding: %v after %v; want ErrClosed after CloseTimeout (%v)", err, took, closeTimeout)
	}
	select {
	case err := <-sendErr:
		if !errors.Is(err, kafka.ErrClosed) || !strings.Contains(err.Error(), "may still be written") {
			t.Errorf("the waiting Send returned %v, want ErrClosed saying the record may still be written", err)
		}
	case <-time.After(kafkatest.Timeout(5 * time.Second)):
		t.Fatal("the waiting Send did not return after Close gave up")
	}
	release()
	if got := countIDs(t, c, topic, 2); got["target"] != 1 || got["warm-up"] != 1 {
		t.Errorf("records written after the broker answered: %v, want warm-up and target once each", got)
	}
	t.Logf("Close gave up after %v (CloseTimeout %v): %v; the waiting Send got ErrClosed; the held record was written once", took.Round(time.Millisecond), closeTimeout, err)
}

// TestAtLeastOnceSendContextDone: the caller's context ends while Send
// waits for the acknowledgement of a held produce request: Send returns the
// context's error, saying the record may still be written, and it is,
// once.
func TestAtLeastOnceSendContextDone(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1, InProcess: true})
	const topic = "alo-ctx"
	c.CreateTopic(t, topic, 1)
	et := testevent.Type(topic, event.AtLeastOnce)
	arm, held, release := holdRequests(t, c, kmsg.Produce, func(kmsg.Request) bool { return true })
	p, err := kafka.NewAtLeastOnceProducer(testConfig(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mustNil(t, p.Send(t.Context(), testevent.New(et, "warm-up", "c", 0)))
	arm()
	ctx, cancel := context.WithCancel(context.Background())
	sendErr := make(chan error, 1)
	go func() { sendErr <- p.Send(ctx, testevent.New(et, "target", "c", 1)) }()
	kafkatest.WaitFor(t, 30*time.Second, "the produce request to be held", func() bool { return held.Load() == 1 })
	cancel()
	select {
	case err = <-sendErr:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "may still be written") {
			t.Errorf("Send whose context ended: %v, want context.Canceled saying the record may still be written", err)
		}
	case <-time.After(kafkatest.Timeout(5 * time.Second)):
		t.Fatal("Send did not return when its context ended")
	}
	release()
	if got := countIDs(t, c, topic, 2); got["target"] != 1 {
		t.Errorf("records written after the broker answered: %v, want target once", got)
	}
	mustNil(t, p.Close())
	t.Logf("Send with its produce request held, context cancelled: %v; written once after the broker answered", err)
}

// TestTransactionalAbortFails: a transaction's records are rejected
// (Produce UNKNOWN_SERVER_ERROR, abortable) and the abort that follows is
// rejected too (EndTxn UNKNOWN_SERVER_ERROR): the transaction's outcome is
// unknown, so Commit returns ErrProducerFatal, the producer refuses every
// later call, and a new producer with the same transactional ID settles
// what was left open: nothing of the failed transaction is visible.
func TestTransactionalAbortFails(t *testing.T) {
	if raceEnabled {
		t.Skip("sarama v1.61.1 races on the transactional error path (IBM/sarama#2913, in the dependency, not eventgen); run without -race")
	}
	const id = "txn-abortfail"
	f := newTxnFixture(t, id)
	p := f.producer(t, id)
	mustNil(t, p.InTx(t.Context(), func(tx *kafka.Tx) error { return f.send(tx, "before", 1, 1) }))
	fProduce := f.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: f.a.Topic, Err: kerr.UnknownServerError, Count: 1})
	fEnd := f.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: id, Err: kerr.UnknownServerError, TopLevel: true, Count: 1})
	err := p.InTx(t.Context(), func(tx *kafka.Tx) error { return f.send(tx, "failed", 2, 2) })
	if !errors.Is(err, kafka.ErrProducerFatal) || errors.Is(err, kafka.ErrTxnAborted) || !strings.Contains(err.Error(), "abort") {
		t.Fatalf("transaction whose abort failed: %v, want ErrProducerFatal naming the abort, not ErrTxnAborted", err)
	}
	if fProduce.Hits() != 1 || fEnd.Hits() != 1 {
		t.Fatalf("faults fired: Produce %d, EndTxn %d; want 1 and 1", fProduce.Hits(), fEnd.Hits())
	}
	if _, err := p.Begin(t.Context()); !errors.Is(err, kafka.ErrProducerFatal) {
		t.Errorf("Begin after the failed abort: %v, want ErrProducerFatal", err)
	}
	p2 := f.producer(t, id)
	mustNil(t, p2.InTx(t.Context(), func(tx *kafka.Tx) error { return f.send(tx, "recreated", 1, 1) }))
	f.wantVisible(t, map[string]int{"before": 2, "failed": 0, "recreated": 2})
	t.Logf("Produce rejected, then the abort's EndTxn: %v", err)
}

// TestTransactionalCommitContextDone: the broker holds a transaction's
// EndTxn; the context of Commit ends meanwhile. Commit returns the
// context's error (the outcome unknown); a Begin with a short context
// fails while the commit goes on in the background, since one
// transaction is open at a time; once EndTxn is answered, Begin succeeds
// and the held transaction turns out committed.
func TestTransactionalCommitContextDone(t *testing.T) {
	const id = "txn-ctxdone"
	f := newTxnFixture(t, id)
	arm, held, release := holdRequests(t, f.c, kmsg.EndTxn, func(r kmsg.Request) bool {
		return r.(*kmsg.EndTxnRequest).TransactionalID == id
	})
	p := f.producer(t, id)
	tx, err := p.Begin(t.Context())
	mustNil(t, err, f.send(tx, "held", 2, 2))
	arm()
	ctx, cancel := context.WithCancel(context.Background())
	commitErr := make(chan error, 1)
	go func() { commitErr <- tx.Commit(ctx) }()
	kafkatest.WaitFor(t, 30*time.Second, "EndTxn to be held", func() bool { return held.Load() == 1 })
	cancel()
	var cerr error
	select {
	case cerr = <-commitErr:
		if !errors.Is(cerr, context.Canceled) || !strings.Contains(cerr.Error(), "outcome unknown") {
			t.Fatalf("Commit whose context ended during EndTxn: %v, want context.Canceled, outcome unknown", cerr)
		}
	case <-time.After(kafkatest.Timeout(5 * time.Second)):
		t.Fatal("Commit did not return when its context ended")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := p.Begin(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin while the previous commit is held: %v, want its context's error", err)
	}
	release()
	tx2, err := p.Begin(t.Context())
	mustNil(t, err, f.send(tx2, "after", 1, 1), tx2.Commit(t.Context()))
	f.wantVisible(t, map[string]int{"held": 4, "after": 2})
	t.Logf("Commit's context ended with EndTxn held: %v; a Begin meanwhile waited and gave up; after the answer the held transaction was committed", cerr)
}
