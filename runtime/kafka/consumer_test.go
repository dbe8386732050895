package kafka

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

func runConsumer(t *testing.T, c *Consumer) (stop func() error) {
	t.Helper()
	return runInBackground(t, "Consumer.Run", c.Run)
}

func TestConsumerDeadLetter(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType("Payment", "payments", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 3)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 3)
	const n = 60
	produceInputs(t, cl.Brokers(), et, n, 6, map[int64][]byte{25: []byte("not json")})

	var met Counters
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "dlq-test",
		Retry:   RetryPolicy{MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[int64]int{}
	attempts := map[int64]int{}
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[e.Seq]++
		if r.Attempt != attempts[e.Seq] {
			t.Errorf("seq %d: Attempt=%d, want %d", e.Seq, r.Attempt, attempts[e.Seq])
		}
		if r.Traceparent != testTraceparent || event.Traceparent(ctx) != testTraceparent {
			t.Errorf("seq %d: traceparent not passed to the handler", e.Seq)
		}
		if e.Seq%10 == 3 {
			return errors.New("handler always fails")
		}
		handled[e.Seq]++
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "dlq-test", et.Topic, 3, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	dead := kafkatest.ReadN(t, client, DeadLetterTopic(et.Topic), 3, 7, 20*time.Second)
	bySeq := map[string]bool{}
	for _, m := range dead {
		errText, _ := HeaderValue(m.Headers, HeaderDLQError)
		att, _ := HeaderValue(m.Headers, HeaderDLQAttempts)
		src, _ := HeaderValue(m.Headers, HeaderDLQSourceTopic)
		part, _ := HeaderValue(m.Headers, HeaderDLQSourcePartition)
		off, _ := HeaderValue(m.Headers, HeaderDLQSourceOffset)
		ceType, _ := HeaderValue(m.Headers, event.HeaderType)
		if src != et.Topic || part == "" || off == "" || ceType != et.CEType {
			t.Errorf("dead letter headers: source %q/%q@%q ce_type %q", src, part, off, ceType)
		}
		if string(m.Value) == "not json" {
			if att != "0" || !strings.Contains(errText, "decoding Payment") {
				t.Errorf("undecodable record: attempts %q error %q", att, errText)
			}
			bySeq["25"] = true
			continue
		}
		e, err := decodeTestEvent(m.Value)
		if err != nil || e.Seq%10 != 3 || string(m.Key) != e.K {
			t.Errorf("unexpected dead letter %q key %q (%v)", m.Value, m.Key, err)
		}
		if att != "3" || errText != "handler always fails" {
			t.Errorf("seq %d: attempts %q error %q", e.Seq, att, errText)
		}
		bySeq[strconv.FormatInt(e.Seq, 10)] = true
	}
	if len(bySeq) != 7 {
		t.Errorf("dead letters for %d distinct records, want 7: %v", len(bySeq), bySeq)
	}
	for seq := range int64(n) {
		want := 1
		if seq%10 == 3 || seq == 25 {
			want = 0
		}
		if handled[seq] != want {
			t.Errorf("seq %d handled %d times, want %d", seq, handled[seq], want)
		}
	}
	for c, want := range map[Counter]int64{Handled: n - 7, DeadLettered: 7, Retried: 12, Committed: n} {
		if got := met.Get("Payment", c); got != want {
			t.Errorf("metric %s = %d, want %d", c, got, want)
		}
	}
	t.Logf("records %d: handled %d, dead-lettered %d (6 after 3 attempts, 1 undecodable), retried %d",
		n, met.Get("Payment", Handled), met.Get("Payment", DeadLettered), met.Get("Payment", Retried))
}

func TestConsumerAtMostOnceCommitsBeforeHandling(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType("Click", "clicks", event.AtMostOnce)
	cl.CreateTopic(t, et.Topic, 3)
	const n = 300
	produceInputs(t, cl.Brokers(), et, n, 9, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})

	var met Counters
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "amo-test", MaxBatch: 50})
	if err != nil {
		t.Fatal(err)
	}
	var violations, checks atomic.Int64
	HandleAtMostOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtMostOnceRecord) error {
		if e.Seq%20 == 0 { // spot-check the group's committed offset from outside
			checks.Add(1)
			off, err := kafkatest.Committed(client, "amo-test", et.Topic, 3)
			if err != nil || off[r.Partition] <= r.Offset {
				violations.Add(1)
				t.Errorf("seq %d at offset %d handled while committed offset is %d (%v)", e.Seq, r.Offset, off[r.Partition], err)
			}
		}
		if e.Seq%50 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	stop := runConsumer(t, c)
	kafkatest.WaitFor(t, 30*time.Second, "all records handled or dropped", func() bool {
		return met.Get("Click", Handled)+met.Get("Click", Dropped) == n
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if checks.Load() != n/20 {
		t.Errorf("%d handlers checked the committed offset, want %d", checks.Load(), n/20)
	}
	if met.Get("Click", Dropped) != 6 || met.Get("Click", Committed) != n {
		t.Errorf("dropped %d (want 6), committed %d (want %d)", met.Get("Click", Dropped), met.Get("Click", Committed), n)
	}
	t.Logf("records %d: %d handlers checked the committed offset first, %d violations; handler errors dropped %d",
		n, checks.Load(), violations.Load(), met.Get("Click", Dropped))
}

func TestConsumerGracefulShutdown(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Order", "orders", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	produceInputs(t, cl.Brokers(), et, 100, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})

	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "shutdown-test", CommitInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var last atomic.Int64
	last.Store(-1)
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		if e.Seq == 60 {
			close(entered)
			<-release // in flight while the consumer is told to stop
			if ctx.Err() != nil {
				t.Errorf("the in-flight handler's context was cancelled by shutdown")
			}
		}
		last.Store(r.Offset)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-entered
	cancel()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("Run did not return")
	}
	off, err := kafkatest.Committed(client, "shutdown-test", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if last.Load() < 60 || off[0] != last.Load()+1 {
		t.Fatalf("committed %d after shutdown, last handled offset %d: want last+1 and >= 61", off[0], last.Load())
	}
	t.Logf("shutdown during the handler of offset 60: last handled %d, committed %d", last.Load(), off[0])
}

func TestConsumerRegistrationErrors(t *testing.T) {
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}}, GroupID: "g"})
	if err != nil {
		t.Fatal(err)
	}
	amo := testEventType("Click", "clicks", event.AtMostOnce)
	HandleAtLeastOnce(c, amo, decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
	if err := c.Run(context.Background()); !errors.Is(err, ErrGuaranteeMismatch) {
		t.Fatalf("Run = %v, want ErrGuaranteeMismatch", err)
	}
	if _, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: []string{"x:1"}}, GroupID: "g", Retry: RetryPolicy{MaxAttempts: -1}}); err == nil {
		t.Fatal("negative MaxAttempts accepted")
	}
}

// TestConsumerAtLeastOnceSIGKILL kills a consumer process between handling a
// record and committing it, twice, and checks that every record was handled
// at least once.
func TestConsumerAtLeastOnceSIGKILL(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType("Input", "alo-in", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 3)
	const n = 3000
	produceInputs(t, cl.Brokers(), et, n, 30, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	logPath := tempPath(t, "handled.log")
	env := map[string]string{
		"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "CHILD_TOPIC": et.Topic, "CHILD_GROUP": "alo-kill",
		"CHILD_INSTANCE": "alo-0", "CHILD_LOG": logPath,
	}
	start := time.Now()
	for _, killAfter := range []string{"700", "900"} {
		env["CHILD_KILL_AFTER"] = killAfter
		ch := startChild(t, "consumer", env)
		if err := ch.wait(t, 60*time.Second); exitCode(err) != -9 {
			t.Fatalf("child: %v, want SIGKILL; log:\n%s", err, ch.log())
		}
	}
	env["CHILD_KILL_AFTER"] = "0"
	ch := startChild(t, "consumer", env)
	kafkatest.WaitCommitted(t, client, "alo-kill", et.Topic, 3, 60*time.Second)
	if err := ch.terminate(t); err != nil {
		t.Fatalf("final child: %v\n%s", err, ch.log())
	}
	seen := readHandledLog(t, logPath)
	lost, dups := lostAndDuplicated(seen, n)
	if lost != 0 {
		t.Errorf("%d records never handled", lost)
	}
	if dups < 2 {
		t.Errorf("%d duplicates: each SIGKILL after handling should redeliver at least its record", dups)
	}
	t.Logf("records %d, SIGKILLs 2 (after handled #700 and #900, before commit): lost %d, duplicates %d, %v",
		n, lost, dups, time.Since(start).Round(time.Millisecond))
}

// TestConsumerAtMostOnceSIGKILL crashes an at-most-once consumer inside a
// handler: the record (and the rest of its committed batch) is not
// redelivered, and nothing is handled twice.
func TestConsumerAtMostOnceSIGKILL(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType("Input", "amo-in", event.AtMostOnce)
	cl.CreateTopic(t, et.Topic, 3)
	const n, crash = 2000, 777
	produceInputs(t, cl.Brokers(), et, n, 30, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	logPath := tempPath(t, "handled.log")
	env := map[string]string{
		"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "CHILD_TOPIC": et.Topic, "CHILD_GROUP": "amo-kill",
		"CHILD_INSTANCE": "amo-0", "CHILD_LOG": logPath, "CHILD_GUARANTEE": "at-most-once",
		"CHILD_CRASH_SEQ": strconv.Itoa(crash), "CHILD_MAX_BATCH": "100",
	}
	start := time.Now()
	ch := startChild(t, "consumer", env)
	if err := ch.wait(t, 60*time.Second); exitCode(err) != -9 {
		t.Fatalf("child: %v, want SIGKILL; log:\n%s", err, ch.log())
	}
	env["CHILD_CRASH_SEQ"] = ""
	ch = startChild(t, "consumer", env)
	kafkatest.WaitCommitted(t, client, "amo-kill", et.Topic, 3, 60*time.Second)
	if err := ch.terminate(t); err != nil {
		t.Fatalf("final child: %v\n%s", err, ch.log())
	}
	seen := readHandledLog(t, logPath)
	lost, dups := lostAndDuplicated(seen, n)
	if seen[crash] != 0 {
		t.Errorf("the record whose handler crashed was redelivered and handled %d times", seen[crash])
	}
	if dups != 0 {
		t.Errorf("%d duplicates under at-most-once", dups)
	}
	// Every partition's claim may have committed a batch of up to
	// MaxBatch=100 whose handlers had not all run when the process died.
	if lost < 1 || lost > 3*100 {
		t.Errorf("lost %d records, want the crashed one plus at most the rest of the committed batches (<= 300)", lost)
	}
	t.Logf("records %d, SIGKILL in the handler of seq %d: not redelivered; lost %d (the rest of the batches committed before the crash), duplicates %d, %v",
		n, crash, lost, dups, time.Since(start).Round(time.Millisecond))
}
