package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Regression tests of handler failures (issue 7, defects 7, 8 and 9, and
// the dead-letter headers): panics, shutdown grace and revocation, error
// classes, outages of the dead-letter topic.

// logBuffer is a concurrency-safe log sink for asserting on log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// deadLetters reads every record of et's dead-letter topic, by the seq of
// the original record.
func deadLetters(t *testing.T, brokers []string, et *event.Type) map[int64][]*sarama.ConsumerMessage {
	t.Helper()
	out := map[int64][]*sarama.ConsumerMessage{}
	for _, m := range kafkatest.ReadAll(t, brokers, DeadLetterTopic(et.Topic)) {
		e, err := decodeTestEvent(m.Value)
		if err != nil {
			t.Errorf("dead letter %q: %v", m.Value, err)
			continue
		}
		out[e.Seq] = append(out[e.Seq], m)
	}
	return out
}

func header(m *sarama.ConsumerMessage, key string) string {
	v, _ := HeaderValue(m.Headers, key)
	return v
}

// counter counts calls per seq.
type counter struct {
	mu sync.Mutex
	m  map[int64]int
}

func (c *counter) add(seq int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int64]int{}
	}
	c.m[seq]++
	return c.m[seq]
}

func (c *counter) get(seq int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[seq]
}

// Defect 7: a panicking handler crash-looped the process. Now the panic is
// recovered into a handler error with the stack in the log: at least once it
// spends attempts and the record is dead-lettered, at most once it is
// dropped, and the other records are handled.
func TestConsumerHandlerPanicRecovered(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2})
	alo := testEventType("Payment", "panic-alo", event.AtLeastOnce)
	amo := testEventType("Click", "panic-amo", event.AtMostOnce)
	for _, tp := range []string{alo.Topic, amo.Topic, DeadLetterTopic(alo.Topic)} {
		cl.CreateTopic(t, tp, 2)
	}
	const n = 20
	produceInputs(t, cl.Brokers(), alo, n, 4, nil)
	produceInputs(t, cl.Brokers(), amo, n, 4, nil)
	var logs logBuffer
	var met Counters
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Logger: logs.logger(), Tune: kafkatest.FastTune},
		GroupID: "panic-test",
		Retry:   RetryPolicy{MaxAttempts: 3, Backoff: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var aloRuns, amoRuns counter
	HandleAtLeastOnce(c, alo, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		if aloRuns.add(e.Seq); e.Seq == 7 {
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic, as in a real bug
		}
		return nil
	})
	HandleAtMostOnce(c, amo, decodeTestEvent, func(ctx context.Context, e testEvent, r AtMostOnceRecord) error {
		if amoRuns.add(e.Seq); e.Seq == 4 {
			panic(fmt.Sprintf("click %d is poison", e.Seq))
		}
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "panic-test", alo.Topic, 2, 30*time.Second)
	kafkatest.WaitFor(t, 30*time.Second, "every at-most-once record handled or dropped", func() bool {
		return met.Get("Click", Handled)+met.Get("Click", Dropped) == n
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for seq := range int64(n) {
		want := 1
		if seq == 7 {
			want = 3
		}
		if got := aloRuns.get(seq); got != want {
			t.Errorf("at-least-once seq %d: handler ran %d times, want %d", seq, got, want)
		}
		if got := amoRuns.get(seq); got != 1 {
			t.Errorf("at-most-once seq %d: handler ran %d times, want 1", seq, got)
		}
	}
	dead := deadLetters(t, cl.Brokers(), alo)
	if len(dead) != 1 || len(dead[7]) != 1 {
		t.Fatalf("dead letters by seq: %v, want one for seq 7", dead)
	}
	m := dead[7][0]
	if reason := header(m, HeaderDLQError); header(m, HeaderDLQAttempts) != "3" || !strings.Contains(reason, "handler panicked: assignment to entry in nil map") {
		t.Errorf("dead letter of seq 7: attempts %q, reason %q", header(m, HeaderDLQAttempts), reason)
	}
	if met.Get("Click", Dropped) != 1 || met.Get("Click", Handled) != n-1 || met.Get("Payment", DeadLettered) != 1 || met.Get("Payment", Handled) != n-1 {
		t.Errorf("metrics: %v", met.Snapshot())
	}
	log := logs.String()
	for _, want := range []string{"level=ERROR msg=\"eventgen: handler panicked", "click 4 is poison", "failures_test.go", "goroutine "} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	t.Logf("panics recovered: at-least-once seq 7 ran 3 times then dead-lettered (%q); at-most-once seq 4 dropped; %d other records handled per topic", header(m, HeaderDLQError), n-1)
}

// Defect 7 for pipelines: the panicking input spends its attempts and is
// dead-lettered inside the transaction; every other input has its output.
func TestPipelineHandlerPanicRecovered(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2})
	in := testEventType("Input", "ppanic-in", event.ExactlyOnce)
	out := testEventType("Output", "ppanic-out", event.ExactlyOnce)
	for _, tp := range []string{in.Topic, out.Topic, DeadLetterTopic(in.Topic)} {
		cl.CreateTopic(t, tp, 2)
	}
	const n = 100
	produceInputs(t, cl.Brokers(), in, n, 5, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var met Counters
	var runs counter
	transform := testTransform(out, 0)
	stop := runPipelineInProcess(t, PipelineConfig{
		Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "ppanic", TransactionalID: "ppanic-tx",
		Retry: RetryPolicy{MaxAttempts: 2, Backoff: time.Millisecond},
	}, in, out, func(ctx context.Context, e testEvent, em *Emitter) error {
		if runs.add(e.Seq); e.Seq == 42 {
			panic("input 42 is poison")
		}
		return transform(ctx, e, em)
	})
	kafkatest.WaitCommitted(t, client, "ppanic", in.Topic, 2, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, 2, n, 0, map[int64]bool{42: true})
	rep.check(t)
	// read_committed, one record: the transaction markers keep ReadAll
	// from knowing where a transactional topic ends.
	dead := kafkatest.ReadN(t, client, DeadLetterTopic(in.Topic), 2, 1, 20*time.Second)
	m := dead[0]
	if e, err := decodeTestEvent(m.Value); err != nil || e.Seq != 42 {
		t.Fatalf("dead letter %q, want input 42", m.Value)
	}
	if met.Get("Input", DeadLettered) != 1 {
		t.Errorf("dead-lettered %d, want 1", met.Get("Input", DeadLettered))
	}
	if header(m, HeaderDLQAttempts) != "2" || header(m, HeaderDLQError) != "eventgen: handler panicked: input 42 is poison" || header(m, HeaderDLQGroup) != "ppanic" {
		t.Errorf("dead letter of seq 42: attempts %q, reason %q, group %q", header(m, HeaderDLQAttempts), header(m, HeaderDLQError), header(m, HeaderDLQGroup))
	}
	if runs.get(42) != 2 {
		t.Errorf("handler ran %d times for the panicking input, want 2", runs.get(42))
	}
	t.Logf("%d inputs, input 42 panics: ran twice, dead-lettered in the transaction; outputs exact (%s)", n, rep)
}

// Defect 9 (a handler marks an error permanent) and the dead-letter headers:
// a Permanent error is dead-lettered after one run, an ordinary one after
// MaxAttempts; the reason is one bounded line and the group is named.
func TestConsumerPermanentErrorAndDeadLetterHeaders(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2})
	et := testEventType("Payment", "perm", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 2)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 2)
	const n = 20
	produceInputs(t, cl.Brokers(), et, n, 4, nil)
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
		GroupID: "perm-group",
		Retry:   RetryPolicy{MaxAttempts: 4, Backoff: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var runs counter
	long := strings.Repeat("é", 2000) // 4,000 bytes of two-byte runes
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		runs.add(e.Seq)
		switch e.Seq {
		case 3:
			return Permanent(errors.New("line one\nline two\r\nline three\tend"))
		case 8:
			return fmt.Errorf("wrapped: %w", Permanent(errors.New("long: "+long)))
		case 11:
			return errors.New("transient\nstill failing")
		}
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "perm-group", et.Topic, 2, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := map[int64]struct {
		runs     int
		attempts string
		reason   func(string) bool
	}{
		3: {1, "1", func(s string) bool { return s == "line one | line two | line three end" }},
		8: {1, "1", func(s string) bool {
			return len(s) <= 1000 && strings.HasSuffix(s, "…") && strings.HasPrefix(s, "wrapped: long: éé") && utf8.ValidString(s)
		}},
		11: {4, "4", func(s string) bool { return s == "transient | still failing" }},
	}
	dead := deadLetters(t, cl.Brokers(), et)
	if len(dead) != len(want) {
		t.Errorf("dead letters for %d records, want %d", len(dead), len(want))
	}
	for seq, w := range want {
		if runs.get(seq) != w.runs {
			t.Errorf("seq %d: handler ran %d times, want %d", seq, runs.get(seq), w.runs)
		}
		if len(dead[seq]) != 1 {
			t.Errorf("seq %d: %d dead letters, want 1", seq, len(dead[seq]))
			continue
		}
		m := dead[seq][0]
		reason := header(m, HeaderDLQError)
		if header(m, HeaderDLQAttempts) != w.attempts || !w.reason(reason) || strings.ContainsAny(reason, "\r\n") {
			t.Errorf("seq %d: attempts %q, reason (%d bytes) %.80q", seq, header(m, HeaderDLQAttempts), len(reason), reason)
		}
		if g := header(m, HeaderDLQGroup); g != "perm-group" {
			t.Errorf("seq %d: %s = %q, want perm-group", seq, HeaderDLQGroup, g)
		}
		if header(m, HeaderDLQSourceTopic) != et.Topic || header(m, HeaderDLQSourcePartition) == "" || header(m, HeaderDLQSourceOffset) == "" {
			t.Errorf("seq %d: source coordinates missing", seq)
		}
	}
	t.Logf("permanent errors dead-lettered after 1 run, an ordinary one after 4; reasons on one line (%q), long one cut to %d bytes; group header %q",
		header(dead[3][0], HeaderDLQError), len(header(dead[8][0], HeaderDLQError)), header(dead[3][0], HeaderDLQGroup))
}

// failDeadLetterProduce makes the broker answer produce requests to topic
// with NOT_ENOUGH_REPLICAS while failing is set, counting them.
func failDeadLetterProduce(t *testing.T, cl *kafkatest.Cluster, topic string, failing *atomic.Bool) (hits *atomic.Int64) {
	kf := cl.Kfake()
	if kf == nil {
		t.Skip("needs the in-process kfake cluster")
	}
	hits = new(atomic.Int64)
	kf.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		hit := false
		for _, tp := range pr.Topics {
			hit = hit || tp.Topic == topic
		}
		if !hit || !failing.Load() {
			return nil, nil, false
		}
		hits.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.NotEnoughReplicas.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return hits
}

// Defect 9: an outage of the dead-letter topic stopped Run with
// ErrDeadLetter. Now the write is retried without spending the record's
// attempts; only the poison record's partition waits; the other partitions
// go on; once the outage ends the record is dead-lettered exactly once.
func TestConsumerDeadLetterOutage(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2, InProcess: true})
	et := testEventType("Payment", "outage", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 2)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 2)
	const n, poison = 40, 5
	produceInputs(t, cl.Brokers(), et, n, 8, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	high := kafkatest.HighWater(t, client, et.Topic, 2)
	var failing atomic.Bool
	failing.Store(true)
	hits := failDeadLetterProduce(t, cl, DeadLetterTopic(et.Topic), &failing)

	var logs logBuffer
	var met Counters
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Logger: logs.logger(), Tune: kafkatest.FastTune},
		GroupID: "outage-test",
		Retry:   RetryPolicy{MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var runs counter
	var mu sync.Mutex
	handledBy := map[int32]int64{} // records handled per partition
	poisonAt := sarama.ConsumerMessage{Partition: -1, Offset: -1}
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		runs.add(e.Seq)
		mu.Lock()
		defer mu.Unlock()
		if e.Seq == poison {
			poisonAt.Partition, poisonAt.Offset = r.Partition, r.Offset
			return errors.New("poison")
		}
		if poisonAt.Partition == r.Partition && r.Offset > poisonAt.Offset && failing.Load() {
			t.Errorf("offset %d of the paused partition %d handled during the outage", r.Offset, r.Partition)
		}
		handledBy[r.Partition]++
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan struct{})
	var runErr error
	go func() { runErr = c.Run(ctx); close(finished) }()
	returned := func() bool {
		select {
		case <-finished:
			return true
		default:
			return false
		}
	}
	// The dead-letter producer sends one record up to 11 times
	// (Producer.Retry.Max 10): more refusals than two such sends mean
	// that the write itself was retried.
	kafkatest.WaitFor(t, 30*time.Second, "the dead-letter write to be refused 25 times", func() bool {
		return hits.Load() >= 25 || returned()
	})
	if returned() {
		t.Fatalf("Run returned during the dead-letter outage: %v", runErr)
	}
	mu.Lock()
	other := 1 - poisonAt.Partition
	mu.Unlock()
	kafkatest.WaitFor(t, 30*time.Second, "the other partition to be handled during the outage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handledBy[other] == high[other]
	})
	if returned() {
		t.Fatalf("Run returned during the dead-letter outage: %v", runErr)
	}
	failing.Store(false)
	kafkatest.WaitCommitted(t, client, "outage-test", et.Topic, 2, 30*time.Second)
	cancel()
	select {
	case <-finished:
		if runErr != nil {
			t.Fatalf("Run: %v", runErr)
		}
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("Run did not return")
	}
	dead := deadLetters(t, cl.Brokers(), et)
	if len(dead) != 1 || len(dead[poison]) != 1 {
		t.Fatalf("dead letters by seq: %v, want exactly one, for seq %d", dead, poison)
	}
	if a := header(dead[poison][0], HeaderDLQAttempts); a != "3" || runs.get(poison) != 3 {
		t.Errorf("poison record: handler ran %d times, attempts header %q; want 3 and \"3\" (the outage spent none)", runs.get(poison), a)
	}
	for seq := range int64(n) {
		if seq != poison && runs.get(seq) != 1 {
			t.Errorf("seq %d handled %d times, want 1", seq, runs.get(seq))
		}
	}
	if met.Get("Payment", InfraRetried) < 2 {
		t.Errorf("%s = %d, want >= 2", InfraRetried, met.Get("Payment", InfraRetried))
	}
	if met.Get("Payment", DeadLettered) != 1 || !strings.Contains(logs.String(), "dead-letter write failed; retrying") {
		t.Errorf("dead-lettered %d (want 1); retries logged: %v", met.Get("Payment", DeadLettered), strings.Contains(logs.String(), "dead-letter write failed"))
	}
	t.Logf("dead-letter outage: %d produce requests to the DLQ refused, %d infra retries; partition %d went on (%d records), the poison record ran 3 times and was dead-lettered once after the outage",
		hits.Load(), met.Get("Payment", InfraRetried), other, high[other])
}

// shutDownInHandler runs c until a handler sends the offset of the record
// it blocks on to entered, then cancels Run's context and waits at most
// limit (described by within, for the failure) for Run to return nil. It
// returns that offset, when the cancel happened, and how long Run took
// after it.
func shutDownInHandler(t *testing.T, c *Consumer, entered <-chan int64, limit time.Duration, within string) (offset int64, cancelled time.Time, returned time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case offset = <-entered:
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("the blocking handler never ran")
	}
	cancelled = time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(limit):
		t.Fatalf("Run did not return within %s of the cancel", within)
	}
	return offset, cancelled, time.Since(cancelled)
}

// Defect 8: handlers' context was never cancelled and Run never returned
// with a handler that waits for it. Now the context is cancelled
// ShutdownGrace after the shutdown began, Run returns, and the record is
// not committed: the next run of the group gets it again.
func TestConsumerShutdownGraceCancelsHandler(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Order", "grace", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	produceInputs(t, cl.Brokers(), et, 20, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	const grace = 300 * time.Millisecond
	cfg := ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "grace-test", ShutdownGrace: grace}
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan int64, 1)
	var waited time.Duration
	var cancelledAt atomic.Int64
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		if e.Seq == 10 {
			entered <- r.Offset
			<-ctx.Done()
			cancelledAt.Store(time.Now().UnixNano())
			return ctx.Err()
		}
		return nil
	})
	offset, start, returned := shutDownInHandler(t, c, entered, grace+kafkatest.Timeout(5*time.Second),
		fmt.Sprintf("the grace period (%v) + 5 s", grace))
	if at := cancelledAt.Load(); at == 0 {
		t.Fatal("the handler's context was not cancelled")
	} else if waited = time.Unix(0, at).Sub(start); waited < grace {
		t.Errorf("handler context cancelled %v after shutdown began, before the grace period %v", waited, grace)
	}
	off, err := kafkatest.Committed(client, "grace-test", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if off[0] != offset {
		t.Fatalf("committed %d after shutdown, want %d (the cancelled record's offset: records before it committed, it not)", off[0], offset)
	}
	// The next run gets the cancelled record again.
	c2, err := NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var again atomic.Bool
	HandleAtLeastOnce(c2, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		if e.Seq == 10 {
			again.Store(true)
		}
		return nil
	})
	stop := runConsumer(t, c2)
	kafkatest.WaitCommitted(t, client, "grace-test", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !again.Load() {
		t.Error("the cancelled record was not redelivered")
	}
	t.Logf("grace %v: handler context cancelled %v after the shutdown began, Run returned after %v; committed %d (the cancelled record's offset), redelivered to the next run",
		grace, waited.Round(time.Millisecond), returned.Round(time.Millisecond), off[0])
}

// Defect 8, a handler that ignores its context: Run still returns, about
// twice the grace period after the shutdown began, leaving the handler's
// goroutine behind and its record uncommitted.
func TestConsumerShutdownAbandonsHungHandler(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Order", "hung", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	produceInputs(t, cl.Brokers(), et, 20, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	const grace = 200 * time.Millisecond
	var logs logBuffer
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Logger: logs.logger(), Tune: kafkatest.FastTune}, GroupID: "hung-test", ShutdownGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	entered, forever := make(chan int64, 1), make(chan struct{})
	t.Cleanup(func() { close(forever) })
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		if e.Seq == 10 {
			entered <- r.Offset
			<-forever // ignores ctx
		}
		return nil
	})
	offset, _, returned := shutDownInHandler(t, c, entered, 2*grace+kafkatest.Timeout(5*time.Second),
		fmt.Sprintf("twice the grace period (%v) + 5 s with a handler that ignores its context", grace))
	if returned < 2*grace {
		t.Errorf("Run returned after %v, before twice the grace period", returned)
	}
	off, err := kafkatest.Committed(client, "hung-test", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if off[0] != offset || !strings.Contains(logs.String(), "abandoned") {
		t.Fatalf("committed %d, want %d; abandonment logged: %v", off[0], offset, strings.Contains(logs.String(), "abandoned"))
	}
	t.Logf("grace %v, handler ignoring its context: Run returned after %v, the hung record (offset %d) uncommitted", grace, returned.Round(time.Millisecond), offset)
}

// Defect 8, revocation: a handler blocked in a rebalance (a second member
// joins) stalled the rebalance of the whole group. Now its context is
// cancelled ShutdownGrace after its session ended, the rebalance
// completes, and the record is handled again by its partition's owner.
func TestConsumerRevocationCancelsHandler(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2})
	et := testEventType("Order", "revoke", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 2)
	const n = 40
	produceInputs(t, cl.Brokers(), et, n, 8, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	const grace = 300 * time.Millisecond
	var once sync.Once
	entered := make(chan struct{})
	var cause atomic.Value
	var runs counter
	h := func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		runs.add(e.Seq)
		blocked := false
		if e.Seq == 3 {
			once.Do(func() { blocked = true })
		}
		if blocked {
			close(entered)
			<-ctx.Done()
			cause.Store(context.Cause(ctx).Error())
			return ctx.Err()
		}
		return nil
	}
	member := func() func() error {
		c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "revoke-test", ShutdownGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		HandleAtLeastOnce(c, et, decodeTestEvent, h)
		return runConsumer(t, c)
	}
	stopA := member()
	select {
	case <-entered:
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("the handler of seq 3 never ran")
	}
	stopB := member()
	start := time.Now()
	kafkatest.WaitFor(t, 20*time.Second, "the rebalance to complete with both members", func() bool {
		g, err := kafkatest.DescribeGroup(client, "revoke-test")
		return err == nil && g.State == "Stable" && g.Members == 2
	})
	took := time.Since(start)
	kafkatest.WaitCommitted(t, client, "revoke-test", et.Topic, 2, 30*time.Second)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	if c, _ := cause.Load().(string); !strings.Contains(c, "grace period expired") {
		t.Errorf("the blocked handler's context cause is %q", c)
	}
	if runs.get(3) != 2 {
		t.Errorf("seq 3 ran %d times, want 2 (cancelled, then redelivered)", runs.get(3))
	}
	t.Logf("member B joined while A's handler blocked on its context: cancelled after the grace %v, group stable with 2 members %v after B started; seq 3 redelivered and handled",
		grace, took.Round(time.Millisecond))
}

// Defect 8 for pipelines: a handler waiting on its context during shutdown
// held RunPipeline forever. Now its context is cancelled ShutdownGrace after
// the shutdown began, RunPipeline returns, the batch is not committed, and
// the next run writes every output exactly once.
func TestPipelineShutdownGraceCancelsHandler(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	in := testEventType("Input", "pgrace-in", event.ExactlyOnce)
	out := testEventType("Output", "pgrace-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, 1)
	cl.CreateTopic(t, out.Topic, 1)
	const n = 30
	produceInputs(t, cl.Brokers(), in, n, 3, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	const grace = 300 * time.Millisecond
	cfg := PipelineConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "pgrace", TransactionalID: "pgrace-tx", BatchSize: 5, ShutdownGrace: grace}
	transform := testTransform(out, 0)
	entered := make(chan int64, 1)
	var blockOnce sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunPipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, func(ctx context.Context, e testEvent, em *Emitter) error {
			block := false
			if e.Seq == 17 {
				blockOnce.Do(func() { block = true })
			}
			if block {
				entered <- em.Record().Offset
				<-ctx.Done()
				return ctx.Err()
			}
			return transform(ctx, e, em)
		})
	}()
	var offset int64
	select {
	case offset = <-entered:
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("the handler of input 17 never ran")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(grace + kafkatest.Timeout(5*time.Second)):
		t.Fatalf("RunPipeline did not return within the grace period (%v) + 5 s of the cancel", grace)
	}
	returned := time.Since(start)
	off, err := kafkatest.Committed(client, "pgrace", in.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if off[0] > offset {
		t.Fatalf("committed %d after shutdown, past the cancelled input's offset %d", off[0], offset)
	}
	stop := runPipelineInProcess(t, cfg, in, out, transform)
	kafkatest.WaitCommitted(t, client, "pgrace", in.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, 1, n, 0, nil)
	rep.check(t)
	t.Logf("grace %v: RunPipeline returned %v after the cancel with input 17 (offset %d) in its handler; committed %d; the next run completed the outputs (%s)",
		grace, returned.Round(time.Millisecond), offset, off[0], rep)
}

// DisableDeadLetter keeps its documented behaviour: a record that exhausts
// its attempts stops Run with ErrDeadLetter and is not committed.
func TestConsumerDisableDeadLetterStops(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Payment", "nodlq", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	produceInputs(t, cl.Brokers(), et, 10, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	c, err := NewConsumer(ConsumerConfig{
		Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "nodlq-test", DisableDeadLetter: true,
		Retry: RetryPolicy{MaxAttempts: 2, Backoff: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var runs counter
	var poisonAt atomic.Int64
	HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
		runs.add(e.Seq)
		if e.Seq == 4 {
			poisonAt.Store(r.Offset)
			return Permanent(errors.New("poison"))
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrDeadLetter) {
			t.Fatalf("Run: %v, want ErrDeadLetter", err)
		}
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("Run did not stop")
	}
	off, err := kafkatest.Committed(client, "nodlq-test", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if off[0] != poisonAt.Load() || runs.get(5) != 0 {
		t.Fatalf("committed %d, want %d (the poison record's offset); records after it handled: %d", off[0], poisonAt.Load(), runs.get(5))
	}
	t.Logf("DisableDeadLetter: Run stopped with ErrDeadLetter at offset %d, left uncommitted; nothing after it handled", off[0])
}

// flakyDedup is a dedup store whose store fails for one key: the first
// failBefore calls with the key fail before running any handler, the next
// failAfter calls run the handlers and then fail for the key (its record
// did not go through: Pending), the other items keeping their outcomes.
type flakyDedup struct {
	key                   string
	failBefore, failAfter atomic.Int64

	mu   sync.Mutex
	done map[string]bool
}

func (d *flakyDedup) Process(ctx context.Context, batch []dedup.Item[dedup.NoTx]) error {
	has := false
	for _, it := range batch {
		has = has || it.Key.ID == d.key
	}
	if has && d.failBefore.Add(-1) >= 0 {
		return errors.New("dedup store unavailable")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		d.done = map[string]bool{}
	}
	var storeErr error
	for i := range batch {
		it := &batch[i]
		if d.done[it.Key.ID] {
			it.Outcome = dedup.Duplicate
			continue
		}
		if err := it.Handle(ctx, dedup.NoTx{}); err != nil {
			it.Outcome, it.Err = dedup.Failed, err
			continue
		}
		if it.Key.ID == d.key && d.failAfter.Add(-1) >= 0 {
			it.Outcome, storeErr = dedup.Pending, errors.New("dedup store: commit failed")
			continue
		}
		d.done[it.Key.ID] = true
		it.Outcome = dedup.Handled
	}
	return storeErr
}

// Defect 9 for the dedup store: its errors spent the record's attempts and
// dead-lettered a healthy record. Now they are retried without spending
// attempts; the handler's own errors still spend them.
func TestConsumerDedupStoreErrorsSpendNoAttempts(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Payment", "dedupfail", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 1)
	const n = 10
	produceInputs(t, cl.Brokers(), et, n, 2, nil)
	d := &flakyDedup{key: "k1/3"} // testEvent.IdempotencyKey of seq 3
	d.failBefore.Store(3)
	d.failAfter.Store(1)
	var met Counters
	c, err := NewConsumer(ConsumerConfig{
		Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "dedupfail-test",
		Retry: RetryPolicy{MaxAttempts: 2, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var runs counter
	var attemptsOf3 []int
	var mu sync.Mutex
	HandleDeduped(c, et, decodeTestEvent, dedup.Store[dedup.NoTx](d), func(ctx context.Context, e testEvent, _ dedup.NoTx, r AtLeastOnceRecord) error {
		runs.add(e.Seq)
		if e.Seq == 3 {
			mu.Lock()
			attemptsOf3 = append(attemptsOf3, r.Attempt)
			mu.Unlock()
		}
		if e.Seq == 6 {
			return errors.New("handler fails")
		}
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "dedupfail-test", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dead := deadLetters(t, cl.Brokers(), et)
	if len(dead) != 1 || len(dead[6]) != 1 {
		t.Fatalf("dead letters by seq: %v, want one, for seq 6 (the failing handler)", dead)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attemptsOf3) != "[1 1]" || runs.get(6) != 2 {
		t.Errorf("seq 3 ran with attempts %v, want [1 1] (store errors spend none); seq 6 ran %d times, want 2", attemptsOf3, runs.get(6))
	}
	if met.Get("Payment", InfraRetried) != 4 || met.Get("Payment", Handled) != n-1 {
		t.Errorf("infra_retried %d (want 4), handled %d (want %d)", met.Get("Payment", InfraRetried), met.Get("Payment", Handled), n-1)
	}
	t.Logf("dedup store failed 4 times for seq 3 (3 before the handler, 1 after it): retried, handled with attempt 1, not dead-lettered; the failing handler of seq 6 dead-lettered after 2 attempts")
}

// Defect 8, revocation in a pipeline: a handler blocked on its context when
// a second member joins is cancelled after the grace, the rebalance
// completes, and every output is written exactly once.
func TestPipelineRevocationCancelsHandler(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2})
	in := testEventType("Input", "prevoke-in", event.ExactlyOnce)
	out := testEventType("Output", "prevoke-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, 2)
	cl.CreateTopic(t, out.Topic, 2)
	const n = 60
	produceInputs(t, cl.Brokers(), in, n, 6, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	const grace = 300 * time.Millisecond
	transform := testTransform(out, 0)
	var once sync.Once
	entered := make(chan struct{})
	h := func(ctx context.Context, e testEvent, em *Emitter) error {
		block := false
		if e.Seq == 20 {
			once.Do(func() { block = true })
		}
		if block {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return transform(ctx, e, em)
	}
	cfg := func(id string) PipelineConfig {
		return PipelineConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "prevoke", TransactionalID: id, BatchSize: 10, ShutdownGrace: grace}
	}
	stopA := runPipelineInProcess(t, cfg("prevoke-a"), in, out, h)
	select {
	case <-entered:
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("the handler of input 20 never ran")
	}
	stopB := runPipelineInProcess(t, cfg("prevoke-b"), in, out, h)
	start := time.Now()
	kafkatest.WaitFor(t, 20*time.Second, "the rebalance to complete with both members", func() bool {
		g, err := kafkatest.DescribeGroup(client, "prevoke")
		return err == nil && g.State == "Stable" && g.Members == 2
	})
	took := time.Since(start)
	kafkatest.WaitCommitted(t, client, "prevoke", in.Topic, 2, 30*time.Second)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, 2, n, 0, nil)
	rep.check(t)
	t.Logf("member B joined while A's pipeline handler blocked on its context: group stable %v later (grace %v); outputs exact (%s)", took.Round(time.Millisecond), grace, rep)
}
