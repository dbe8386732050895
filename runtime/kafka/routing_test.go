package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// Producers that are not eventgen, in these tests: franz-go's kgo, writing
// records with exactly the headers a test chooses (none, or ce_type only,
// or a structured-mode CloudEvent).

func kgoClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// rawRecord is one record a foreign producer writes to partition 0.
func rawRecord(topic string, value []byte, headers ...string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte("k"), Value: value}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return r
}

func seqJSON(seq int64) []byte { return (&testEvent{K: "k", Seq: seq}).AppendJSON(nil) }

func produceSync(t *testing.T, cl *kgo.Client, rs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(30*time.Second))
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("foreign producer: %v", err)
	}
}

// decodeLoose decodes a testEvent without checking required fields, like a
// decoder that leaves validation to Validate.
func decodeLoose(b []byte) (testEvent, error) {
	var j testEventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return testEvent{}, err
	}
	return testEvent{K: j.K, Seq: j.Seq}, nil
}

// deadLetterReasons reads n dead letters of topic and returns their eventgen_error
// headers by the seq of their value (-1 for a value that is not a testEvent).
func deadLetterReasons(t *testing.T, client sarama.Client, topic string, n int) map[int64]string {
	t.Helper()
	got := map[int64]string{}
	for _, m := range kafkatest.ReadN(t, client, DeadLetterTopic(topic), 1, n, 20*time.Second) {
		reason, _ := HeaderValue(m.Headers, HeaderDLQError)
		seq := int64(-1)
		var j testEventJSON
		if json.Unmarshal(m.Value, &j) == nil {
			seq = j.Seq
		}
		if m.Value == nil || len(m.Value) == 0 {
			seq = -2 - int64(len(got))
		}
		got[seq] = reason
	}
	return got
}

type seen struct {
	mu   sync.Mutex
	recs map[int64]Record
}

func (s *seen) add(seq int64, r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[int64]Record{}
	}
	if _, dup := s.recs[seq]; dup {
		seq += 1_000_000
	}
	s.recs[seq] = r
}

func (s *seen) get() map[int64]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[int64]Record{}
	for k, v := range s.recs {
		m[k] = v
	}
	return m
}

// TestConsumerRoutesByCEType: a topic with two declared events and one
// handler; records of the other event are skipped (committed, counted),
// never handled as the handler's type; an unknown ce_type and a record
// without ce_type on that topic are dead-lettered with their reason; a
// record without ce_type on a topic of one event is handled; tombstones,
// empty values and records failing Validate are dead-lettered with a clear
// reason; a structured-mode CloudEvent is handled with its attributes.
func TestConsumerRoutesByCEType(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	placed := testEventType("Placed", "routing-orders", event.AtLeastOnce)
	cancelled := testEventType("Cancelled", "routing-orders", event.AtLeastOnce)
	single := testEventType("Single", "routing-single", event.AtLeastOnce)
	for _, tp := range []string{placed.Topic, DeadLetterTopic(placed.Topic), single.Topic, DeadLetterTopic(single.Topic)} {
		cl.CreateTopic(t, tp, 1)
	}
	kc := kgoClient(t, cl.Brokers())
	envelope := func(seq int64) []byte {
		b, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": "ext-" + strconv.FormatInt(seq, 10), "type": placed.CEType,
			"source": "/brownfield", "time": "2026-01-02T03:04:05Z", "datacontenttype": "application/json",
			"data": json.RawMessage(seqJSON(seq)),
		})
		return b
	}
	produceSync(t, kc,
		rawRecord(placed.Topic, seqJSON(1), event.HeaderType, placed.CEType, event.HeaderID, "id-1"),
		rawRecord(placed.Topic, seqJSON(2), event.HeaderType, cancelled.CEType),                // skipped
		rawRecord(placed.Topic, seqJSON(3), event.HeaderType, "elsewhere.Refunded.v1"),         // unknown
		rawRecord(placed.Topic, seqJSON(4)),                                                    // unroutable
		rawRecord(placed.Topic, nil, event.HeaderType, placed.CEType),                          // tombstone
		rawRecord(placed.Topic, []byte{}, event.HeaderType, placed.CEType),                     // empty
		rawRecord(placed.Topic, []byte(`{"key":"","seq":7}`), event.HeaderType, placed.CEType), // invalid
		rawRecord(placed.Topic, envelope(8), event.HeaderContentType, ContentTypeCloudEvents+"; charset=utf-8"),
		rawRecord(placed.Topic, seqJSON(9), event.HeaderType, placed.CEType),
	)
	produceSync(t, kc, rawRecord(single.Topic, seqJSON(10))) // no headers at all
	// A tombstone gets a different record value each run in deadLetters:
	// give them distinct keys in the map via their order.

	var met Counters
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "routing",
		Retry:   RetryPolicy{MaxAttempts: 1, Backoff: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	DeclareEvents(c, placed, cancelled, single)
	var placedSeen, singleSeen seen
	HandleAtLeastOnce(c, placed, decodeLoose, func(_ context.Context, e testEvent, r AtLeastOnceRecord) error {
		placedSeen.add(e.Seq, r.Record)
		return nil
	})
	HandleAtLeastOnce(c, single, decodeLoose, func(_ context.Context, e testEvent, r AtLeastOnceRecord) error {
		singleSeen.add(e.Seq, r.Record)
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "routing", placed.Topic, 1, 30*time.Second)
	kafkatest.WaitCommitted(t, client, "routing", single.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	got := placedSeen.get()
	if len(got) != 3 || got[1].ID != "id-1" || got[9].Type != placed.CEType {
		t.Errorf("Placed handler got %v, want seq 1, 8 and 9 only", keys(got))
	}
	if r, ok := got[8]; !ok || r.ID != "ext-8" || r.Type != placed.CEType || r.Source != "/brownfield" || !r.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("structured-mode record: %+v, want ID ext-8, Type %s, Source /brownfield, Time 2026-01-02T03:04:05Z", r, placed.CEType)
	}
	if s := singleSeen.get(); len(s) != 1 || s[10].ID != "" {
		t.Errorf("Single handler got %v, want seq 10 (no ce_* headers, empty ID)", keys(s))
	}
	dead := deadLetterReasons(t, client, placed.Topic, 5)
	for seq, want := range map[int64]string{3: `unknown ce_type "elsewhere.Refunded.v1"`, 4: "unroutable: no ce_type", 7: "invalid Placed: key"} {
		if !strings.Contains(dead[seq], want) {
			t.Errorf("dead letter of seq %d: reason %q, want it to contain %q", seq, dead[seq], want)
		}
	}
	var reasons []string
	for _, r := range dead {
		reasons = append(reasons, r)
	}
	all := strings.Join(reasons, "|")
	for _, want := range []string{"tombstone: the record has no value", "empty value"} {
		if !strings.Contains(all, want) {
			t.Errorf("no dead letter with reason %q; reasons: %q", want, reasons)
		}
	}
	if strings.Contains(all, "unexpected end of JSON input") {
		t.Errorf("a reason still says \"unexpected end of JSON input\": %q", reasons)
	}
	for _, want := range []struct {
		name string
		c    Counter
		n    int64
	}{{"Cancelled", Skipped, 1}, {"Placed", Handled, 2 + 1}, {"Single", Handled, 1}} {
		if got := met.Get(want.name, want.c); got != want.n {
			t.Errorf("%s %s = %d, want %d", want.name, want.c, got, want.n)
		}
	}
	if Skipped.String() != "skipped" {
		t.Errorf("Skipped.String() = %q", Skipped.String())
	}
}

func keys[V any](m map[int64]V) []int64 {
	var ks []int64
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestConsumerAtMostOnceRoutesByCEType: at-most-once consumers route the
// same way; what cannot be routed is dropped (no dead-letter topic).
func TestConsumerAtMostOnceRoutesByCEType(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	click := testEventType("Click", "routing-clicks", event.AtMostOnce)
	view := testEventType("View", "routing-clicks", event.AtMostOnce)
	cl.CreateTopic(t, click.Topic, 1)
	kc := kgoClient(t, cl.Brokers())
	produceSync(t, kc,
		rawRecord(click.Topic, seqJSON(1), event.HeaderType, click.CEType),
		rawRecord(click.Topic, seqJSON(2), event.HeaderType, view.CEType),
		rawRecord(click.Topic, seqJSON(3), event.HeaderType, "nobody.Knows.v1"),
		rawRecord(click.Topic, seqJSON(4)),
		rawRecord(click.Topic, seqJSON(5), event.HeaderType, click.CEType),
	)
	var met Counters
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "routing-amo"})
	if err != nil {
		t.Fatal(err)
	}
	DeclareEvents(c, click, view)
	var s seen
	HandleAtMostOnce(c, click, decodeTestEvent, func(_ context.Context, e testEvent, r AtMostOnceRecord) error {
		s.add(e.Seq, r.Record)
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "routing-amo", click.Topic, 1, 30*time.Second)
	kafkatest.WaitFor(t, 20*time.Second, "the batch handled", func() bool {
		return met.Get("Click", Handled)+met.Get(click.Topic, Dropped) >= 4
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := s.get(); len(got) != 2 {
		t.Errorf("Click handler got seq %v, want 1 and 5", keys(got))
	}
	if met.Get("View", Skipped) != 1 || met.Get(click.Topic, Dropped) != 2 {
		t.Errorf("View skipped %d (want 1), dropped %d (want 2: unknown and unroutable)", met.Get("View", Skipped), met.Get(click.Topic, Dropped))
	}
}

// TestPipelineRoutesByCEType: a pipeline whose input topic carries another
// declared event does not transform that event's records (they are skipped
// and committed); an unknown ce_type, a record without ce_type and a
// tombstone are dead-lettered inside the transaction.
func TestPipelineRoutesByCEType(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	in := testEventType("Input", "prouting-in", event.ExactlyOnce)
	other := testEventType("Other", "prouting-in", event.ExactlyOnce)
	out := testEventType("Output", "prouting-out", event.ExactlyOnce)
	for _, tp := range []string{in.Topic, out.Topic, DeadLetterTopic(in.Topic)} {
		cl.CreateTopic(t, tp, 1)
	}
	kc := kgoClient(t, cl.Brokers())
	produceSync(t, kc,
		rawRecord(in.Topic, seqJSON(0), event.HeaderType, in.CEType),
		rawRecord(in.Topic, seqJSON(1), event.HeaderType, other.CEType),
		rawRecord(in.Topic, seqJSON(2), event.HeaderType, "nobody.Knows.v1"),
		rawRecord(in.Topic, seqJSON(3)),
		rawRecord(in.Topic, nil, event.HeaderType, in.CEType),
		rawRecord(in.Topic, []byte(`{"key":"","seq":5}`), event.HeaderType, in.CEType),
		rawRecord(in.Topic, seqJSON(6), event.HeaderType, in.CEType),
	)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var met Counters
	var mu sync.Mutex
	var transformed []int64
	stop := runInBackground(t, "RunPipeline", func(ctx context.Context) error {
		return RunPipeline(ctx, PipelineConfig{
			Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "prouting", TransactionalID: "prouting-tx",
			Events: []*event.Type{in, other, out},
		}, in, []*event.Type{out}, decodeLoose, func(ctx context.Context, e testEvent, em *Emitter) error {
			mu.Lock()
			transformed = append(transformed, e.Seq)
			mu.Unlock()
			return em.Emit(&testEvent{K: e.K, Seq: e.Seq, et: out})
		})
	})
	kafkatest.WaitCommitted(t, client, "prouting", in.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(transformed) != 2 || transformed[0] != 0 || transformed[1] != 6 {
		t.Errorf("transformed seq %v, want [0 6]", transformed)
	}
	dead := deadLetterReasons(t, client, in.Topic, 4)
	for seq, want := range map[int64]string{2: "unknown ce_type", 3: "unroutable", 5: "invalid Input"} {
		if !strings.Contains(dead[seq], want) {
			t.Errorf("dead letter of seq %d: %q, want %q", seq, dead[seq], want)
		}
	}
	if met.Get("Other", Skipped) != 1 || met.Get("Input", DeadLettered) != 4 || met.Get("Input", Committed) != 7 {
		t.Errorf("skipped %d (want 1), dead-lettered %d (want 4), committed %d (want 7)",
			met.Get("Other", Skipped), met.Get("Input", DeadLettered), met.Get("Input", Committed))
	}
}

// TestConsumerIgnoresAbortedTransactions: records of a transaction that a
// producer which is not eventgen (kgo) aborted never reach at-least-once or
// at-most-once handlers.
func TestConsumerIgnoresAbortedTransactions(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	alo := testEventType("Paid", "aborted-alo", event.AtLeastOnce)
	amo := testEventType("Seen", "aborted-amo", event.AtMostOnce)
	for _, tp := range []string{alo.Topic, amo.Topic, DeadLetterTopic(alo.Topic)} {
		cl.CreateTopic(t, tp, 1)
	}
	tx := kgoClient(t, cl.Brokers(), kgo.TransactionalID("foreign-tx"))
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(30*time.Second))
	defer cancel()
	txn := func(commit kgo.TransactionEndTry, from int64) {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+5; i++ {
			for _, et := range []*event.Type{alo, amo} {
				if err := tx.ProduceSync(ctx, rawRecord(et.Topic, seqJSON(i), event.HeaderType, et.CEType)).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tx.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	txn(kgo.TryAbort, 100) // never visible
	txn(kgo.TryCommit, 0)
	txn(kgo.TryAbort, 200)
	txn(kgo.TryCommit, 5)
	// A last record outside transactions: the group's offset can then
	// reach the high water mark (a commit marker ends a transaction).
	plain := kgoClient(t, cl.Brokers())
	produceSync(t, plain, rawRecord(alo.Topic, seqJSON(10), event.HeaderType, alo.CEType), rawRecord(amo.Topic, seqJSON(10), event.HeaderType, amo.CEType))

	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "aborted"})
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	HandleAtLeastOnce(c, alo, decodeTestEvent, func(_ context.Context, e testEvent, r AtLeastOnceRecord) error {
		s.add(e.Seq, r.Record)
		return nil
	})
	HandleAtMostOnce(c, amo, decodeTestEvent, func(_ context.Context, e testEvent, r AtMostOnceRecord) error {
		s.add(1000+e.Seq, r.Record)
		return nil
	})
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitFor(t, 30*time.Second, "the 22 committed records handled", func() bool { return len(s.get()) >= 22 })
	kafkatest.WaitCommitted(t, client, "aborted", alo.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for seq := range s.get() {
		if seq%1000 >= 100 {
			t.Errorf("a handler got seq %d of an aborted transaction", seq)
		}
	}
	if n := len(s.get()); n != 22 {
		t.Errorf("handled %d records, want the 22 committed ones", n)
	}
}

// committedEpochs returns the leader epoch of group's committed offset of
// each partition of topic, read with a kmsg OffsetFetch (what franz-go's
// group members check after a leader change).
func committedEpochs(t *testing.T, brokers []string, group, topic string) map[int32]int32 {
	t.Helper()
	kc := kgoClient(t, brokers)
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{0}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(10*time.Second))
	defer cancel()
	resp, err := req.RequestWith(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int32{}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if p.ErrorCode != 0 || p.Offset < 0 {
				t.Fatalf("OffsetFetch %s/%d: error %d offset %d", rt.Topic, p.Partition, p.ErrorCode, p.Offset)
			}
			got[p.Partition] = p.LeaderEpoch
		}
	}
	return got
}

// TestCommitsCarryUnknownLeaderEpoch: the consumer's and the pipeline's
// committed offsets carry leader epoch -1 (unknown), not 0, so that a
// client checking epochs does not resume at the wrong place after a leader
// change.
func TestCommitsCarryUnknownLeaderEpoch(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Paid", "epoch-consumer", event.AtLeastOnce)
	in := testEventType("Input", "epoch-in", event.ExactlyOnce)
	out := testEventType("Output", "epoch-out", event.ExactlyOnce)
	for _, tp := range []string{et.Topic, DeadLetterTopic(et.Topic), in.Topic, out.Topic} {
		cl.CreateTopic(t, tp, 1)
	}
	produceInputs(t, cl.Brokers(), et, 20, 3, nil)
	produceInputs(t, cl.Brokers(), in, 20, 3, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})

	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "epoch-consumer"})
	if err != nil {
		t.Fatal(err)
	}
	HandleAtLeastOnce(c, et, decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
	stop := runConsumer(t, c)
	kafkatest.WaitCommitted(t, client, "epoch-consumer", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stopP := runPipelineInProcess(t, PipelineConfig{
		Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "epoch-pipeline", TransactionalID: "epoch-tx",
	}, in, out, testTransform(out, 0))
	kafkatest.WaitCommitted(t, client, "epoch-pipeline", in.Topic, 1, 30*time.Second)
	if err := stopP(); err != nil {
		t.Fatal(err)
	}
	if got := committedEpochs(t, cl.Brokers(), "epoch-consumer", et.Topic); got[0] != -1 {
		t.Errorf("consumer commit: leader epoch %d, want -1", got[0])
	}
	if got := committedEpochs(t, cl.Brokers(), "epoch-pipeline", in.Topic); got[0] != -1 {
		t.Errorf("pipeline's transactional commit: leader epoch %d, want -1", got[0])
	}
}

// TestConsumerTuneCannotReadUncommitted: a Tune that lowers the consumer's
// isolation level is rejected by name.
func TestConsumerTuneCannotReadUncommitted(t *testing.T) {
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}, Tune: func(sc *sarama.Config) {
		sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	}}, GroupID: "tune"})
	if err != nil {
		t.Fatal(err)
	}
	HandleAtLeastOnce(c, testEventType("Paid", "tune", event.AtLeastOnce), decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(10*time.Second))
	defer cancel()
	err = c.Run(ctx)
	if !errors.Is(err, ErrConflictingConfig) || !strings.Contains(err.Error(), "the consumer requires Consumer.IsolationLevel=ReadCommitted") {
		t.Fatalf("Run = %v, want ErrConflictingConfig naming Consumer.IsolationLevel=ReadCommitted", err)
	}
}

type noKeyEvent struct{ testEvent }

func (noKeyEvent) IdempotencyKey() string { return "" }

// TestIdempotencyKeyFallsBack: an event whose schema declares no
// idempotency_key (IdempotencyKey returns "") gets ce_id, else the record's
// coordinates, as its dedup key: never "", which would make every record
// of the event a duplicate of the first.
func TestIdempotencyKeyFallsBack(t *testing.T) {
	v := noKeyEvent{}
	if got := idempotencyKey(&v, &Record{Topic: "t", Partition: 1, Offset: 7}); got != "t/1/7" {
		t.Errorf("no ce_id: key %q, want t/1/7", got)
	}
	if got := idempotencyKey(&v, &Record{ID: "abc"}); got != "abc" {
		t.Errorf("with ce_id: key %q, want abc", got)
	}
	e := testEvent{K: "k", Seq: 3}
	if got := idempotencyKey(&e, &Record{ID: "abc"}); got != "k/3" {
		t.Errorf("event key: %q, want k/3", got)
	}
}

// TestFranzGoMemberResumesAfterLeaderChange: records written before and
// after a leader change are committed by the eventgen consumer; a franz-go
// member of the same group (which validates the committed epoch against
// the log) then resumes at the committed offset. With epoch 0 in the
// commit it took the offset for one of epoch 0, which ended at the leader
// change, and redelivered every record written since.
func TestFranzGoMemberResumesAfterLeaderChange(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1, NumBrokers: 2, InProcess: true})
	et := testEventType("Paid", "epoch-move", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 1)
	produceRange(t, cl.Brokers(), et, 0, 50, 3, nil)
	kf := cl.Kfake()
	leader := kf.LeaderFor(et.Topic, 0)
	if err := kf.MoveTopicPartition(et.Topic, 0, 1-leader); err != nil {
		t.Fatal(err)
	}
	produceRange(t, cl.Brokers(), et, 50, 100, 3, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})

	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "epoch-move"})
	if err != nil {
		t.Fatal(err)
	}
	HandleAtLeastOnce(c, et, decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
	stop := runConsumer(t, c)
	kafkatest.WaitCommitted(t, client, "epoch-move", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	produceRange(t, cl.Brokers(), et, 150, 10, 3, nil)

	member := kgoClient(t, cl.Brokers(), kgo.ConsumerGroup("epoch-move"), kgo.ConsumeTopics(et.Topic), kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(30*time.Second))
	defer cancel()
	var early []int64
	for last := int64(-1); last < 159; {
		fs := member.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the franz-go member did not reach seq 159 (last %d)", last)
		}
		fs.EachRecord(func(r *kgo.Record) {
			e, err := decodeTestEvent(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.Seq < 150 {
				early = append(early, e.Seq)
			}
			last = max(last, e.Seq)
		})
	}
	if len(early) > 0 {
		t.Errorf("the franz-go member redelivered %d committed records (from seq %d)", len(early), early[0])
	}
}

// TestReadRecordStructuredMode covers the envelope variants the Kafka
// tests do not: data_base64, a missing data, a malformed envelope, and a
// content-type in another case.
func TestReadRecordStructuredMode(t *testing.T) {
	msg := func(ct, value string) *sarama.ConsumerMessage {
		return &sarama.ConsumerMessage{Topic: "t", Value: []byte(value),
			Headers: []*sarama.RecordHeader{{Key: []byte(event.HeaderContentType), Value: []byte(ct)}}}
	}
	in := readRecord(msg("Application/CloudEvents+JSON", `{"specversion":"1.0","id":"b64","type":"x.Y.v1","source":"/s","data_base64":"eyJrZXkiOiJrIiwic2VxIjozfQ=="}`))
	if in.err != nil || string(in.data) != `{"key":"k","seq":3}` || in.rec.ID != "b64" || in.rec.Type != "x.Y.v1" || in.rec.Source != "/s" {
		t.Errorf("data_base64: data %q rec %+v err %v", in.data, in.rec, in.err)
	}
	if in := readRecord(msg(ContentTypeCloudEvents, `{"specversion":"1.0","id":"1","type":"x.Y.v1"}`)); in.err == nil || !strings.Contains(in.err.Error(), "no data") {
		t.Errorf("no data: err %v", in.err)
	}
	if in := readRecord(msg(ContentTypeCloudEvents, `{"specversion":`)); in.err == nil || !strings.Contains(in.err.Error(), "structured CloudEvent") {
		t.Errorf("malformed envelope: err %v", in.err)
	}
	if in := readRecord(msg("application/json", `{"type":"x"}`)); in.err != nil || in.rec.Type != "" || string(in.data) != `{"type":"x"}` {
		t.Errorf("binary mode taken for structured: %+v %v", in.rec, in.err)
	}
}

// TestRecordDuplicateHeadersFirstWins: a record from a foreign producer
// that carries ce_type (and ce_id) twice is routed by the first value,
// the one Record.Header returns too; routing used the last one.
func TestRecordDuplicateHeadersFirstWins(t *testing.T) {
	m := &sarama.ConsumerMessage{Topic: "t", Value: []byte("{}"), Headers: []*sarama.RecordHeader{
		{Key: []byte(event.HeaderType), Value: []byte("a.First.v1")},
		{Key: []byte(event.HeaderID), Value: []byte("id-1")},
		{Key: []byte(event.HeaderType), Value: []byte("a.Second.v1")},
		{Key: []byte(event.HeaderID), Value: []byte("id-2")},
	}}
	r := newRecord(m)
	h, _ := r.Header(event.HeaderType)
	if r.Type != "a.First.v1" || h != r.Type || r.ID != "id-1" {
		t.Errorf("Type %q, Header(ce_type) %q, ID %q; want the first occurrences", r.Type, h, r.ID)
	}
	if len(r.Headers) != 4 {
		t.Errorf("%d headers kept, want all 4", len(r.Headers))
	}
}
