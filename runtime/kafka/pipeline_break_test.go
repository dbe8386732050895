package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Attacks on the pipelines from outside (issue 7, "break it"): clients that
// are not eventgen, broker answers injected through kfake, group members
// with their own protocol. Each test states the property it probes; the
// ones that failed before their fix say so in their comment.

// clientGoroutines returns the stacks of the running goroutines that belong
// to sarama or to this package's runtime (not to kfake, not to the tests).
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "github.com/IBM/sarama.") || strings.Contains(s, "eventgen/runtime/kafka.(*") {
			if strings.Contains(s, "kafkatest") || strings.Contains(s, "_test.go") && !strings.Contains(s, "eventgen/runtime/kafka.(*") {
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// warmBase opens every connection the test's own client can use (metadata,
// the group coordinator, a connection to every broker) and returns the
// number of client goroutines then: what must remain once the pipeline
// returned. Every broker, not only the ones used now: once leaders or
// coordinators move, the client connects to the broker that leads then,
// and that connection is the test's, not a leak.
func warmBase(client sarama.Client, group, topic string, parts int) int {
	_ = client.RefreshMetadata(topic)
	_, _ = kafkatest.Committed(client, group, topic, parts)
	_, _ = kafkatest.DescribeGroup(client, group)
	for p := range int32(parts) {
		_, _ = client.GetOffset(topic, p, sarama.OffsetNewest)
	}
	for _, b := range client.Brokers() {
		_ = b.Open(client.Config())
		_, _ = b.Connected() // waits for the dial Open started
	}
	return len(clientGoroutines())
}

// waitNoLeak waits until at most base client goroutines run, and fails t
// with the extra stacks otherwise.
func waitNoLeak(t *testing.T, base int, what string) {
	t.Helper()
	if kafkatest.Eventually(5*time.Second, func() bool { return len(clientGoroutines()) <= base }) {
		return
	}
	gs := clientGoroutines()
	first := gs
	if len(first) > 12 {
		first = first[:12]
	}
	t.Errorf("%s: %d sarama/eventgen goroutines still running 5 s after return, %d before it started; first stacks:\n%s",
		what, len(gs), base, strings.Join(first, "\n\n"))
}

// TestBreakPipelineStartFailureClosesClient: the coordinator refuses the
// pipeline's InitProducerID for good (TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
// what a broker with ACLs answers a principal that may not use the ID).
// RunPipeline returns the error and must leave no sarama client running
// (metadata updater, broker connections); the same holds when a
// re-initialised producer cannot start.
//
// Failed before the fix: sarama.NewAsyncProducer does not close the client
// it creates when InitProducerID fails. The producer is now built on a
// client of its own (startProducer), closed on error and after the
// producer.
func TestBreakPipelineStartFailureClosesClient(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2, InProcess: true})
	in := testEventType("Input", "leak-in", event.ExactlyOnce)
	out := testEventType("Output", "leak-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, 2)
	cl.CreateTopic(t, out.Topic, 2)
	kf := cl.Kfake()
	kf.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		resp := req.(*kmsg.InitProducerIDRequest).ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil, true
	})
	base := len(clientGoroutines())
	for i := range 3 {
		err := RunPipeline(context.Background(), PipelineConfig{
			Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
			GroupID: "leak", TransactionalID: "leak-tx",
		}, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
		if err == nil || !strings.Contains(err.Error(), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") && !strings.Contains(err.Error(), "uthoriz") {
			t.Fatalf("start %d: RunPipeline returned %v, want the authorization error", i, err)
		}
	}
	waitNoLeak(t, base, "3 RunPipeline calls that failed to start their producer")
}

// outputSeqs is what readOutputs found in a read_committed read of an
// output topic: how often each input seq was written, and how many outputs
// broke the order of their input partition.
type outputSeqs struct {
	count     map[int64]int
	orderErrs int
	records   int
}

// readOutputs appends a sentinel to each partition of topic (every writer
// must have stopped) and reads every committed record before it.
func readOutputs(t *testing.T, client sarama.Client, brokers []string, topic string, parts int) outputSeqs {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(parts) {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder("SENTINEL")}); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()
	res := outputSeqs{count: map[int64]int{}}
	for p := range int32(parts) {
		msgs := kafkatest.ReadPartition(t, client, topic, p, kafkatest.ReadOptions{Until: func(m *sarama.ConsumerMessage) bool { return string(m.Value) == "SENTINEL" }})
		last := map[string]int64{}
		for _, m := range msgs[:len(msgs)-1] {
			res.records++
			e, err := decodeTestEvent(m.Value)
			if err != nil {
				t.Errorf("output %d/%d: %v", p, m.Offset, err)
				continue
			}
			res.count[e.Seq]++
			srcP, srcOff, _ := strings.Cut(e.Src, "/")
			off, _ := strconv.ParseInt(srcOff, 10, 64)
			if prev, ok := last[srcP]; ok && off < prev { // one input's outputs share its offset
				res.orderErrs++
			}
			last[srcP] = off
		}
	}
	return res
}

// exact compares the outputs with the inputs that must each have one
// output (want) and the seqs that must have none (never).
func (o outputSeqs) exact(want map[int64]bool, never map[int64]bool) (lost, dups, forbidden int) {
	for seq := range want {
		switch c := o.count[seq]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	for seq, c := range o.count {
		if never[seq] || !want[seq] {
			forbidden += c
		}
	}
	return lost, dups, forbidden
}

// foreignFeed writes inputs with kgo, not eventgen: a plain producer and a
// transactional one that aborts every other transaction, interleaved on the
// same partitions. It remembers which seqs were committed and which were
// aborted, and the offset of the last committed record of each partition.
type foreignFeed struct {
	t         *testing.T
	et        *event.Type
	plain, tx *kgo.Client
	keys      int
	next      int64
	committed map[int64]bool
	aborted   map[int64]bool
	lastData  map[int32]int64
}

func newForeignFeed(t *testing.T, brokers []string, et *event.Type, txID string, keys int) *foreignFeed {
	mk := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(et.Topic), kgo.ProducerLinger(time.Millisecond)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	return &foreignFeed{t: t, et: et, plain: mk(), tx: mk(kgo.TransactionalID(txID)), keys: keys,
		committed: map[int64]bool{}, aborted: map[int64]bool{}, lastData: map[int32]int64{}}
}

func (f *foreignFeed) record() *kgo.Record {
	seq := f.next
	f.next++
	e := &testEvent{K: "k" + strconv.Itoa(int(seq)%f.keys), Seq: seq, et: f.et}
	hs := CloudEventHeaders(event.WithTraceparent(context.Background(), testTraceparent), f.et, event.NewUUID().String(), time.Now())
	r := &kgo.Record{Key: []byte(e.K), Value: e.AppendJSON(nil)}
	for _, h := range hs {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(h.Key), Value: h.Value})
	}
	return r
}

// step writes n plain records, then a transaction of n records that is
// committed or aborted, then n more plain records while the transaction
// of the next step may be open.
func (f *foreignFeed) step(n int, commit bool) {
	t := f.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(30*time.Second))
	defer cancel()
	var plain, txn []*kgo.Record
	for range n {
		plain = append(plain, f.record())
	}
	if err := f.tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for range n {
		txn = append(txn, f.record())
	}
	// The transaction's records and plain records interleave in the log.
	var more []*kgo.Record
	for range n {
		more = append(more, f.record())
	}
	res := f.tx.ProduceSync(ctx, txn...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("foreign transactional producer: %v", err)
	}
	pres := f.plain.ProduceSync(ctx, append(plain, more...)...)
	if err := pres.FirstErr(); err != nil {
		t.Fatalf("foreign plain producer: %v", err)
	}
	end := kgo.TryAbort
	if commit {
		end = kgo.TryCommit
	}
	if err := f.tx.EndTransaction(ctx, end); err != nil {
		t.Fatalf("foreign transaction end: %v", err)
	}
	for _, r := range res {
		seq := mustSeq(t, r.Record.Value)
		if commit {
			f.committed[seq] = true
			f.lastData[r.Record.Partition] = max(f.lastData[r.Record.Partition], r.Record.Offset)
		} else {
			f.aborted[seq] = true
		}
	}
	for _, r := range pres {
		f.committed[mustSeq(t, r.Record.Value)] = true
		f.lastData[r.Record.Partition] = max(f.lastData[r.Record.Partition], r.Record.Offset)
	}
}

func mustSeq(t *testing.T, v []byte) int64 {
	e, err := decodeTestEvent(v)
	if err != nil {
		t.Fatal(err)
	}
	return e.Seq
}

// caughtUp reports whether group committed past the last committed data
// record of every partition the feed wrote.
func (f *foreignFeed) caughtUp(client sarama.Client, group string, parts int) bool {
	c, err := kafkatest.Committed(client, group, f.et.Topic, parts)
	if err != nil {
		return false
	}
	for p, off := range f.lastData {
		if c[p] < off+1 {
			return false
		}
	}
	return true
}

// foreignMember joins group with kgo (range, eager: the protocol eventgen's
// pipeline members speak), holds what it is assigned without committing
// anything, and leaves on Close.
func foreignMember(t *testing.T, brokers []string, group, topic string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.RangeBalancer()), kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestBreakPipelineForeignProducersAndMemberChurn: the input is written by
// kgo (a plain producer and a transactional one that aborts every other
// transaction, interleaved), and a kgo group member with its own client
// joins the pipeline's group and leaves again six times while inputs flow
// and rounds are open (the pipeline commits only when a session ends:
// CommitInterval of an hour, BatchSize above the input). The member
// commits nothing, so the pipeline must transform every committed input
// exactly once, in order, never one of an aborted transaction; RunPipeline
// returns nil and leaves no goroutine behind.
func TestBreakPipelineForeignProducersAndMemberChurn(t *testing.T) {
	const parts, churns, per = 8, 6, 40
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "churn-in", event.ExactlyOnce)
	out := testEventType("Output", "churn-out", event.ExactlyOnce)
	for _, tp := range []string{in.Topic, out.Topic, DeadLetterTopic(in.Topic)} {
		cl.CreateTopic(t, tp, parts)
	}
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	feed := newForeignFeed(t, cl.Brokers(), in, "churn-foreign-tx", 32)
	base := warmBase(client, "churn", in.Topic, parts)
	var met Counters
	var ends, openAtEnd atomic.Int64
	var runs sync.Map
	stop := runPipelineInProcess(t, PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "churn", TransactionalID: "churn-tx", CommitInterval: time.Hour, BatchSize: 1 << 20,
		hooks: &pipelineHooks{atCleanup: func(open int) {
			ends.Add(1)
			if open > 0 {
				openAtEnd.Add(1)
			}
		}},
	}, in, out, countingTransform(out, &runs))
	group := func(members int) func() bool {
		return func() bool {
			g, err := kafkatest.DescribeGroup(client, "churn")
			return err == nil && g.State == "Stable" && g.Members == members
		}
	}
	kafkatest.WaitFor(t, 30*time.Second, "the pipeline alone in a stable group", group(1))
	for i := range churns {
		feed.step(per, i%2 == 0)
		m := foreignMember(t, cl.Brokers(), "churn", in.Topic)
		feed.step(per, i%2 == 1)
		kafkatest.WaitFor(t, 30*time.Second, "the foreign member in the group", group(2))
		feed.step(per, i%2 == 0)
		m.Close() // leaves the group
		kafkatest.WaitFor(t, 30*time.Second, "the pipeline alone again", group(1))
	}
	kafkatest.WaitFor(t, 60*time.Second, "the pipeline to handle every committed input", func() bool {
		seen := 0
		runs.Range(func(k, _ any) bool {
			if feed.committed[k.(int64)] {
				seen++
			}
			return true
		})
		return seen == len(feed.committed)
	})
	if err := stop(); err != nil { // commits the last open round
		t.Fatalf("RunPipeline after shutdown: %v", err)
	}
	if !feed.caughtUp(client, "churn", parts) {
		t.Errorf("after shutdown, the group's offsets are not past every committed input")
	}
	got := readOutputs(t, client, cl.Brokers(), out.Topic, parts)
	lost, dups, forbidden := got.exact(feed.committed, feed.aborted)
	if lost+dups+forbidden+got.orderErrs > 0 {
		t.Errorf("outputs: %d lost, %d duplicated, %d from aborted or unknown inputs, %d order violations (of %d committed inputs, %d aborted)",
			lost, dups, forbidden, got.orderErrs, len(feed.committed), len(feed.aborted))
	}
	waitNoLeak(t, base, "RunPipeline after shutdown")
	t.Logf("%d committed and %d aborted foreign inputs, %d member churns (%d session ends, %d with a round open): %d outputs, %d lost, %d duplicated, %d forbidden; pipeline committed %d",
		len(feed.committed), len(feed.aborted), churns, ends.Load(), openAtEnd.Load(), got.records, lost, dups, forbidden, met.Get("Input", Committed))
}

// TestBreakPipelineLeaderAndCoordinatorStorm: three brokers; each time the
// pipeline commits a round, every partition leader moves (kfake
// ShufflePartitionLeaders: inputs, outputs, dead letters) and every group and
// transaction coordinator moves (RehashCoordinators), twenty times, while
// 3,000 inputs flow through rounds of at most 25. The output must stay
// exact and in order, RunPipeline must return nil and leave no goroutine
// behind.
func TestBreakPipelineLeaderAndCoordinatorStorm(t *testing.T) {
	const parts, n, storms = 6, 3000, 20
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, NumBrokers: 3, InProcess: true})
	in := testEventType("Input", "storm-in", event.ExactlyOnce)
	out := testEventType("Output", "storm-out", event.ExactlyOnce)
	for _, tp := range []string{in.Topic, out.Topic, DeadLetterTopic(in.Topic)} {
		cl.CreateTopic(t, tp, parts)
	}
	produceInputs(t, cl.Brokers(), in, n, 24, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	base := warmBase(client, "storm", in.Topic, parts)
	var met Counters
	var runs sync.Map
	stop := runPipelineInProcess(t, PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "storm", TransactionalID: "storm-tx", CommitInterval: 10 * time.Millisecond, BatchSize: 25,
		Retry: RetryPolicy{Backoff: time.Millisecond},
	}, in, out, countingTransform(out, &runs))
	kf := cl.Kfake()
	for i := range storms {
		before := met.Get("Input", Committed)
		if before >= n {
			t.Logf("every input committed after %d storms", i)
			break
		}
		kafkatest.WaitFor(t, 30*time.Second, "the pipeline to commit another round", func() bool { return met.Get("Input", Committed) > before })
		kf.ShufflePartitionLeaders()
		kf.RehashCoordinators()
	}
	kafkatest.WaitCommitted(t, client, "storm", in.Topic, parts, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("RunPipeline after shutdown: %v", err)
	}
	waitNoLeak(t, base, "RunPipeline after shutdown")
	rep := checkOutput(t, client, cl.Brokers(), out, parts, n, 0, nil)
	rep.check(t)
	_, again := handlerRuns(&runs)
	t.Logf("%d inputs, leaders and coordinators moved up to %d times: %s; %d inputs handled more than once (rounds re-read)", n, storms, rep, again)
}

// bigInputTopic creates topic with room for records of a few megabytes
// (max.message.bytes 4 MiB), as a topic that carries large records is
// configured.
func bigInputTopic(t *testing.T, cl *kafkatest.Cluster, topic string, parts int32) {
	t.Helper()
	if err := cl.Kfake().CreateTopic(topic, parts, map[string]string{"max.message.bytes": strconv.Itoa(4 << 20)}); err != nil {
		t.Fatal(err)
	}
}

// TestBreakPipelineForeignTraceparentKeptShort: a foreign producer writes a
// valid input whose traceparent header is a version-01 trace context
// followed by ~1 MB of extension data ("01-<trace>-<span>-01-xxxx…",
// 1.1 MB). The handler succeeds and emits one small event, which carries
// the input's trace context: the input must be transformed, not
// dead-lettered.
//
// Failed before the fix: the whole header was copied into the output,
// which became larger than Producer.MaxMessageBytes (poison), and the
// healthy input was dead-lettered (1 output lost, 1 dead letter). Now
// event.WithTraceparent keeps only the fields a version-00 participant can
// vouch for (version, trace-id, parent-id, flags) and writes them as
// version 00.
func TestBreakPipelineForeignTraceparentKeptShort(t *testing.T) {
	if raceBuild {
		t.Skip("sarama v1.61.1 races on the transactional error path (IBM/sarama#2913); run without -race")
	}
	const parts = 1
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "tp-in", event.ExactlyOnce)
	out := testEventType("Output", "tp-out", event.ExactlyOnce)
	bigInputTopic(t, cl, in.Topic, parts)
	bigInputTopic(t, cl, DeadLetterTopic(in.Topic), parts)
	cl.CreateTopic(t, out.Topic, parts)
	prod := kgoClient(t, cl.Brokers(), kgo.ProducerBatchMaxBytes(8<<20))
	tp := "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("x", 1_100_000)
	if event.Traceparent(event.WithTraceparent(context.Background(), tp)) == "" {
		t.Fatalf("the runtime does not accept this traceparent; the attack needs one it accepts")
	}
	var recs []*kgo.Record
	for seq := range int64(3) {
		hs := []string{event.HeaderType, in.CEType, event.HeaderID, "foreign-" + strconv.FormatInt(seq, 10)}
		if seq == 1 {
			hs = append(hs, event.HeaderTraceparent, tp)
		}
		recs = append(recs, rawRecord(in.Topic, (&testEvent{K: "k", Seq: seq}).AppendJSON(nil), hs...))
	}
	produceSync(t, prod, recs...)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var met Counters
	var handled atomic.Int64
	h := func(ctx context.Context, e testEvent, em *Emitter) error {
		handled.Add(1)
		return testTransform(out, 0)(ctx, e, em)
	}
	r := startPipeline(t, PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "tp", TransactionalID: "tp-tx",
	}, in, out, h)
	r.waitCommitted(t, client, "tp", in.Topic, parts)
	if err := r.shutdown(t); err != nil {
		t.Fatalf("RunPipeline: %v", err)
	}
	got := readOutputs(t, client, cl.Brokers(), out.Topic, parts)
	lost, dups, _ := got.exact(map[int64]bool{0: true, 1: true, 2: true}, nil)
	dead := met.Get("Input", DeadLettered)
	if lost != 0 || dead != 0 {
		t.Errorf("3 valid inputs, every handler succeeded (%d runs): %d outputs lost and %d inputs dead-lettered; the input whose foreign traceparent carries 1.1 MB of extension data was dead-lettered because its output, which copies the header, exceeds Producer.MaxMessageBytes", handled.Load(), lost, dead)
	}
	t.Logf("%d outputs (%d duplicates), %d dead letters", got.records, dups, dead)
}

// TestBreakPipelineDeadLetterTrimDropsHugeKey: a foreign producer writes an
// undecodable record with a 1.1 MB key to the input topic (which allows 4
// MiB records). Its dead letter is larger than Producer.MaxMessageBytes
// (1 MiB) even without its value and original headers: the last trim must
// drop the key too (the eventgen_source_* headers locate the record), so
// that the record is dead-lettered and the pipeline goes on.
//
// Failed before the fix: the key stayed at every trim level, the last trim
// was rejected too and RunPipeline stopped with ErrDeadLetter on every
// restart: one foreign record stopped the pipeline for good.
func TestBreakPipelineDeadLetterTrimDropsHugeKey(t *testing.T) {
	if raceBuild {
		t.Skip("sarama v1.61.1 races on the transactional error path (IBM/sarama#2913); run without -race")
	}
	const parts = 1
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "hk-in", event.ExactlyOnce)
	out := testEventType("Output", "hk-out", event.ExactlyOnce)
	bigInputTopic(t, cl, in.Topic, parts)
	bigInputTopic(t, cl, DeadLetterTopic(in.Topic), parts)
	cl.CreateTopic(t, out.Topic, parts)
	prod := kgoClient(t, cl.Brokers(), kgo.ProducerBatchMaxBytes(8<<20))
	huge := rawRecord(in.Topic, []byte("{not json"), event.HeaderType, in.CEType)
	huge.Key = bytes.Repeat([]byte("k"), 1_100_000)
	produceSync(t, prod,
		rawRecord(in.Topic, (&testEvent{K: "k", Seq: 0}).AppendJSON(nil), event.HeaderType, in.CEType),
		huge,
		rawRecord(in.Topic, (&testEvent{K: "k", Seq: 2}).AppendJSON(nil), event.HeaderType, in.CEType))
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var met Counters
	r := startPipeline(t, PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "hk", TransactionalID: "hk-tx",
	}, in, out, testTransform(out, 0))
	kafkatest.WaitFor(t, 30*time.Second, "every input committed, or RunPipeline stopped", func() bool {
		if r.exited() {
			return true
		}
		c, err := kafkatest.Committed(client, "hk", in.Topic, parts)
		return err == nil && c[0] == 3
	})
	if r.exited() {
		c, _ := kafkatest.Committed(client, "hk", in.Topic, parts)
		t.Fatalf("RunPipeline stopped on a foreign record with a 1.1 MB key (committed offset %d of 3): %v", c[0], r.err)
	}
	if err := r.shutdown(t); err != nil {
		t.Fatalf("RunPipeline: %v", err)
	}
	if d := met.Get("Input", DeadLettered); d != 1 {
		t.Errorf("dead-lettered %d, want 1", d)
	}
}

// TestBreakPipelineConcurrentTransactionsStormOnEndTxn: the transaction
// coordinator answers CONCURRENT_TRANSACTIONS to EndTxn longer than
// sarama's own retries last (Producer.Transaction.Retry.Max = 50 tries,
// 20 ms apart with FastTune: about 1 s; 5 s with sarama's defaults), as a
// coordinator does while the previous transaction's markers cannot be
// written. docs/consumers.md classifies CONCURRENT_TRANSACTIONS as
// retriable ("retried inside sarama"), and an abortable failure of a round
// is replayed from memory; the pipeline should ride out the storm.
//
// Failed before the fix: RunPipeline stopped with ErrProducerFatal
// ("begin: transaction manager: invalid transition attempted"): after
// sarama's endTxn gives up on a retriable error the producer stays in
// EndTransaction|CommittingTransaction, and the round was replayed with a
// BeginTxn sarama refuses from that state. Now a commit that is not
// settled is asked again (CommitTxn, with the Retry backoff) until it is.
func TestBreakPipelineConcurrentTransactionsStormOnEndTxn(t *testing.T) {
	if raceBuild {
		t.Skip("sarama v1.61.1 races on the transactional error path (IBM/sarama#2913); run without -race")
	}
	const parts, n, storm = 2, 200, 60
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "ct-in", event.ExactlyOnce)
	out := testEventType("Output", "ct-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, out.Topic, parts)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	produceInputs(t, cl.Brokers(), in, n/2, 8, nil)
	var met Counters
	var logs logBuffer
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") {
					t.Log(l)
				}
			}
		}
	})
	r := startPipeline(t, PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune, Logger: logs.logger()},
		GroupID: "ct", TransactionalID: "ct-tx", Retry: RetryPolicy{Backoff: 10 * time.Millisecond},
	}, in, out, testTransform(out, 0))
	r.waitCommitted(t, client, "ct", in.Topic, parts)
	f := cl.FailEndTxn(storm, kerr.ConcurrentTransactions)
	produceRange(t, cl.Brokers(), in, n/2, n/2, 8, nil)
	r.waitCommitted(t, client, "ct", in.Topic, parts)
	if err := r.shutdown(t); err != nil {
		t.Fatalf("RunPipeline: %v", err)
	}
	checkOutput(t, client, cl.Brokers(), out, parts, n, 0, nil).check(t)
	t.Logf("EndTxn answered CONCURRENT_TRANSACTIONS %d times: the pipeline rode it out", f.Hits())
}

// TestBreakPipelineManySmallOutputsNotDeadLettered: the output topic's
// max.message.bytes is 6,000 (smaller than the producer's batch, like the
// topic of TestPipelinePoisonOutputBroker). One input emits 300 small
// outputs (about 100 bytes each); Kafka's limit applies to a record batch,
// and sarama packs them into batches larger than 6,000 bytes, which the
// broker rejects with MESSAGE_TOO_LARGE. No output is too large by itself.
// The Java producer splits a batch rejected that way; the pipeline instead
// isolates inputs ("sent alone on the next try"): alone, the input's 300
// outputs must not be batched again and the healthy input taken for poison:
// every output is written, nothing dead-lettered (exactly-once and
// at-least-once).
//
// Failed before the fix: 0 of the 300 outputs written, the input
// dead-lettered with "MESSAGE_TOO_LARGE" (the at-least-once pipeline first
// lost outputs, see TestBreakAtLeastOncePipelineBrokerPoisonKeepsOutputs).
// Now a suspect whose records are rejected together has them sent one at
// a time, and an input is dead-lettered only when one of its records is
// rejected alone.
func TestBreakPipelineManySmallOutputsNotDeadLettered(t *testing.T) {
	if raceBuild {
		t.Skip("sarama v1.61.1 races on the transactional error path (IBM/sarama#2913); run without -race")
	}
	t.Run("exactly-once", func(t *testing.T) { manySmallOutputs(t, true) })
	t.Run("at-least-once", func(t *testing.T) { manySmallOutputs(t, false) })
}

func manySmallOutputs(t *testing.T, eos bool) {
	const parts, n, fan, fanout = 2, 40, 10, 300
	g := event.AtLeastOnce
	name := "fan-alo"
	if eos {
		g, name = event.ExactlyOnce, "fan-eos"
	}
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", name+"-in", g)
	out := testEventType("Output", name+"-out", g)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, DeadLetterTopic(in.Topic), parts)
	if err := cl.Kfake().CreateTopic(out.Topic, parts, map[string]string{"max.message.bytes": "6000"}); err != nil {
		t.Fatal(err)
	}
	produceInputs(t, cl.Brokers(), in, n, 4, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	base := testTransform(out, 0)
	h := func(ctx context.Context, e testEvent, em *Emitter) error {
		if e.Seq != fan {
			return base(ctx, e, em)
		}
		r := em.Record()
		for i := range int64(fanout) {
			if err := em.Emit(&testEvent{K: e.K, Seq: 1000 + i, Src: fmt.Sprintf("%d/%d", r.Partition, r.Offset), et: out}); err != nil {
				return err
			}
		}
		return nil
	}
	var met Counters
	var logs logBuffer
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") {
					t.Log(l[:min(len(l), 600)])
				}
			}
		}
	})
	cfg := PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune, Logger: logs.logger()},
		GroupID: name, TransactionalID: name + "-tx",
	}
	stop := runInBackground(t, "pipeline", func(ctx context.Context) error {
		if eos {
			return RunPipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, h)
		}
		return RunAtLeastOncePipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, h)
	})
	kafkatest.WaitCommitted(t, client, name, in.Topic, parts, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	want := map[int64]bool{}
	for seq := range int64(n) {
		if seq != fan {
			want[seq] = true
		}
	}
	for i := range int64(fanout) {
		want[1000+i] = true
	}
	got := readOutputs(t, client, cl.Brokers(), out.Topic, parts)
	lost, dups, forbidden := got.exact(want, nil)
	t.Logf("read %d outputs; metrics: %d committed, %d handled, %d acked, %d dead-lettered", got.records, met.Get("Input", Committed), met.Get("Input", Handled), met.Get("Output", Acked), met.Get("Input", DeadLettered))
	if lost+forbidden > 0 || (eos && dups > 0) || met.Get("Input", DeadLettered) != 0 {
		t.Errorf("an input emitting %d outputs of ~100 bytes to a topic whose max.message.bytes is 6,000: %d outputs lost, %d duplicated, %d unexpected; %d inputs dead-lettered (want 0: no record is too large)",
			fanout, lost, dups, forbidden, met.Get("Input", DeadLettered))
	}
	if eos {
		// Exactly-once rounds run without per-record acknowledgements;
		// isolating the suspect needs them, and they end with its round.
		l := logs.String()
		if !strings.Contains(l, "acknowledgements=true") || !strings.Contains(l, "acknowledgements=false") {
			t.Errorf("want the transactional producer replaced by one with acknowledgements to isolate the suspect, then by one without once its round committed; the log says neither or only one")
		}
	}
}

// TestBreakPipelineStopsCleanlyOnFencingAndFatalErrors: the two ways a
// pipeline stops by itself, each started from outside: (1) a kgo
// transactional producer with the pipeline's TransactionalID starts while
// the pipeline's round is open (a second instance with the same identity):
// ErrFenced; (2) INVALID_PRODUCER_EPOCH on every EndTxn: five producer
// re-initialisations, then ErrProducerFatal. After each, RunPipeline must
// have closed every client it started (its group client and each producer
// it created, the replaced ones included).
func TestBreakPipelineStopsCleanlyOnFencingAndFatalErrors(t *testing.T) {
	if raceBuild {
		t.Skip("sarama v1.61.1 races on the transactional error path (IBM/sarama#2913); run without -race")
	}
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2, InProcess: true})
	in := testEventType("Input", "stop-in", event.ExactlyOnce)
	out := testEventType("Output", "stop-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, 2)
	cl.CreateTopic(t, out.Topic, 2)
	produceInputs(t, cl.Brokers(), in, 100, 6, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	base := warmBase(client, "stop-a", in.Topic, 2)

	t.Run("fenced", func(t *testing.T) {
		entered := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		h := func(ctx context.Context, e testEvent, em *Emitter) error {
			if e.Seq == 50 {
				once.Do(func() { close(entered); <-release })
			}
			return testTransform(out, 0)(ctx, e, em)
		}
		r := startPipeline(t, PipelineConfig{
			Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
			GroupID: "stop-a", TransactionalID: "stop-tx",
		}, in, out, h)
		select {
		case <-entered:
		case <-time.After(kafkatest.Timeout(30 * time.Second)):
			t.Fatal("the handler never reached seq 50")
		}
		twin := kgoClient(t, cl.Brokers(), kgo.TransactionalID("stop-tx"))
		if err := twin.BeginTransaction(); err != nil { // InitProducerID: fences the pipeline's producer
			t.Fatal(err)
		}
		close(release)
		kafkatest.WaitFor(t, 30*time.Second, "the fenced pipeline to stop", r.exited)
		if !errors.Is(r.err, ErrFenced) {
			t.Errorf("RunPipeline: %v, want ErrFenced", r.err)
		}
		t.Logf("RunPipeline returned %v", r.err)
		twin.Close()
		waitNoLeak(t, base, "RunPipeline stopped by fencing")
	})
	t.Run("fatal", func(t *testing.T) {
		f := cl.FailEndTxn(-1, kerr.InvalidProducerEpoch)
		defer f.Remove()
		r := startPipeline(t, PipelineConfig{
			Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
			GroupID: "stop-b", TransactionalID: "stop-tx-b", Retry: RetryPolicy{Backoff: time.Millisecond},
		}, in, out, testTransform(out, 0))
		kafkatest.WaitFor(t, 30*time.Second, "the pipeline to give up", r.exited)
		if !errors.Is(r.err, ErrProducerFatal) {
			t.Errorf("RunPipeline: %v, want ErrProducerFatal", r.err)
		}
		waitNoLeak(t, base, "RunPipeline stopped by ErrProducerFatal after 5 producer re-initialisations")
	})
}

// TestBreakPipelineShutdownWithUnansweredEndTxn: the transaction
// coordinator stops answering EndTxn (a broker that hangs: kfake holds the
// requests). The caller cancels RunPipeline's context, with ShutdownGrace
// 500 ms. The round cannot be committed; its transaction will be aborted
// by the coordinator (or by the next instance's InitProducerID) and its
// inputs read again, so nothing is lost by giving up, yet RunPipeline does
// not return: Cleanup waits for the commit in flight, and sarama retries
// EndTxn Producer.Transaction.Retry.Max (50) times, each waiting up to
// Net.ReadTimeout (30 s): about 25 minutes. RunPipeline must return within
// a bound like the consumer's (about 2 × ShutdownGrace after the cancel)
// with ErrProducerFatal, and a restart must lose and repeat nothing.
//
// Failed before the fix: RunPipeline had not returned 10 s after the
// cancel (the session-end commit had no deadline). Now it is abandoned
// after ShutdownGrace: the producer is closed without committing, and the
// coordinator aborts the transaction.
func TestBreakPipelineShutdownWithUnansweredEndTxn(t *testing.T) {
	const parts, n = 2, 100
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "hang-in", event.ExactlyOnce)
	out := testEventType("Output", "hang-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, out.Topic, parts)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	produceInputs(t, cl.Brokers(), in, n, 6, nil)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	var held atomic.Int64
	var hanging atomic.Bool
	kf := cl.Kfake()
	kf.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		if hanging.Load() {
			held.Add(1)
			kf.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	r := startPipeline(t, PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
		GroupID: "hang", TransactionalID: "hang-tx", ShutdownGrace: 500 * time.Millisecond,
	}, in, out, testTransform(out, 0))
	r.waitCommitted(t, client, "hang", in.Topic, parts)
	hanging.Store(true)
	produceRange(t, cl.Brokers(), in, n, n, 6, nil)
	kafkatest.WaitFor(t, 30*time.Second, "a commit to reach the hanging coordinator", func() bool { return held.Load() > 0 })
	cancelled := time.Now()
	r.stop()
	limit := kafkatest.Timeout(10 * time.Second)
	if !kafkatest.Eventually(limit, r.exited) {
		t.Fatalf("RunPipeline has not returned %v after its context was cancelled (ShutdownGrace 500 ms) while the coordinator does not answer EndTxn (%d EndTxn held)", limit, held.Load())
	}
	t.Logf("RunPipeline returned %v after the cancel: %v", time.Since(cancelled).Round(time.Millisecond), r.err)
}

// TestBreakPipelineManyPartitionsTinyRounds: 64 input partitions, rounds of
// one input (BatchSize 1) committed every millisecond, two output topics
// (an input emits 0 to 3 outputs across them), three members coming and
// going (each stopped by its context while the others run). Every input's
// outputs must be written once, in input order per partition, every
// RunPipeline must return nil, and no goroutine may be left.
func TestBreakPipelineManyPartitionsTinyRounds(t *testing.T) {
	const parts, n = 64, 2000
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "tiny-in", event.ExactlyOnce)
	outA := testEventType("OutA", "tiny-a", event.ExactlyOnce)
	outB := testEventType("OutB", "tiny-b", event.ExactlyOnce)
	const outParts = 4 // outputs of many input partitions share one output partition
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, outA.Topic, outParts)
	cl.CreateTopic(t, outB.Topic, outParts)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	base := warmBase(client, "tiny", in.Topic, parts)
	h := func(ctx context.Context, e testEvent, em *Emitter) error {
		r := em.Record()
		src := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
		for j := range e.Seq % 4 {
			et := outA
			if j == 1 {
				et = outB
			}
			if err := em.Emit(&testEvent{K: e.K, Seq: e.Seq*10 + j, Src: src, et: et}); err != nil {
				return err
			}
		}
		return nil
	}
	var committed atomic.Int64
	met := MetricsFunc(func(event string, c Counter, k int64) {
		if event == "Input" && c == Committed {
			committed.Add(k)
		}
	})
	start := func(id string) func() error {
		return runInBackground(t, "RunPipeline "+id, func(ctx context.Context) error {
			return RunPipeline(ctx, PipelineConfig{
				Config:  Config{Brokers: cl.Brokers(), Metrics: met, Tune: kafkatest.FastTune},
				GroupID: "tiny", TransactionalID: "tiny-" + id, BatchSize: 1, CommitInterval: time.Millisecond,
			}, in, []*event.Type{outA, outB}, decodeTestEvent, h)
		})
	}
	stopA := start("a")
	stopB := start("b")
	produceInputs(t, cl.Brokers(), in, n, 2*parts, nil)
	kafkatest.WaitFor(t, 60*time.Second, "a third of the inputs committed", func() bool { return committed.Load() >= n/3 })
	if err := stopB(); err != nil {
		t.Errorf("member b: %v", err)
	}
	stopC := start("c")
	kafkatest.WaitFor(t, 60*time.Second, "two thirds of the inputs committed", func() bool { return committed.Load() >= 2*n/3 })
	if err := stopA(); err != nil {
		t.Errorf("member a: %v", err)
	}
	kafkatest.WaitCommitted(t, client, "tiny", in.Topic, parts, 60*time.Second)
	if err := stopC(); err != nil {
		t.Errorf("member c: %v", err)
	}
	waitNoLeak(t, base, "three RunPipeline calls after shutdown")
	want := map[int64]bool{}
	for seq := range int64(n) {
		for j := range seq % 4 {
			want[seq*10+j] = true
		}
	}
	got := readOutputs(t, client, cl.Brokers(), outA.Topic, outParts)
	gotB := readOutputs(t, client, cl.Brokers(), outB.Topic, outParts)
	for seq, c := range gotB.count {
		got.count[seq] += c
	}
	lost, dups, forbidden := got.exact(want, nil)
	if lost+dups+forbidden+got.orderErrs+gotB.orderErrs > 0 {
		t.Errorf("outputs: %d lost, %d duplicated, %d unexpected, %d order violations", lost, dups, forbidden, got.orderErrs+gotB.orderErrs)
	}
	t.Logf("%d inputs over %d partitions, rounds of 1, three members: %d outputs, %d lost, %d duplicated; %d inputs committed (re-reads included)", n, parts, got.records+gotB.records, lost, dups, committed.Load())
}

// TestBreakAtLeastOncePipelineBrokerPoisonKeepsOutputs: an at-least-once
// pipeline whose output topic allows 6,000-byte batches (max.message.bytes);
// one input of 200 emits an 8,000-byte output. The broker answers
// MESSAGE_TOO_LARGE for the produce batch that holds it, which also holds
// other inputs' outputs; the pipeline marks those inputs as suspects and
// "sends each of them alone" to find the poison. The promise
// (docs/consumers.md, At-least-once pipelines): "No input is lost: an offset
// never passes an input whose outputs are not durable."
//
// Failed before the fix: every offset was committed and the metrics counted
// every output acknowledged, but the suspects' failed outputs were never
// resent (197 of 199 lost in every run, the poison's input committed
// without its dead letter). Now every failed output of an input that is not
// dead-lettered is queued for resending, suspects' included.
func TestBreakAtLeastOncePipelineBrokerPoisonKeepsOutputs(t *testing.T) {
	const parts, n, poison = 2, 200, 61
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	in := testEventType("Input", "alopb-in", event.AtLeastOnce)
	out := testEventType("Output", "alopb-out", event.AtLeastOnce)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, DeadLetterTopic(in.Topic), parts)
	if err := cl.Kfake().CreateTopic(out.Topic, parts, map[string]string{"max.message.bytes": "6000"}); err != nil {
		t.Fatal(err)
	}
	produceInputs(t, cl.Brokers(), in, n, 6, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	// The broker holds the first produce request of outputs until every
	// input was handled, so that the next request packs many inputs'
	// outputs, the poison among them, into each partition's batch.
	var handled atomic.Int64
	allHandled := make(chan struct{})
	var held atomic.Bool
	kf := cl.Kfake()
	kf.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if tp.Topic == out.Topic && held.CompareAndSwap(false, true) {
				kf.SleepControl(func() { <-allHandled })
			}
		}
		return nil, nil, false
	})
	base := testTransform(out, 0)
	h := func(ctx context.Context, e testEvent, em *Emitter) error {
		if handled.Add(1) == n {
			close(allHandled)
		}
		if e.Seq == poison {
			return em.Emit(&testEvent{K: e.K, Seq: e.Seq, Src: strings.Repeat("x", 8000), et: out})
		}
		return base(ctx, e, em)
	}
	var met Counters
	cfg := PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune},
		GroupID: "alopb", BatchSize: n, CommitInterval: time.Hour, Retry: RetryPolicy{MaxAttempts: 1},
	}
	stop := runInBackground(t, "RunAtLeastOncePipeline", func(ctx context.Context) error {
		return RunAtLeastOncePipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, h)
	})
	kafkatest.WaitCommitted(t, client, "alopb", in.Topic, parts, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, parts, n, 0, map[int64]bool{poison: true})
	if rep.lost > 0 {
		t.Errorf("every input committed, %d outputs counted acknowledged, %d dead-lettered, but %d of %d outputs are not in the topic: lost", met.Get("Output", Acked), met.Get("Input", DeadLettered), rep.lost, n-1)
	}
	t.Logf("%s; dead-lettered %d", rep, met.Get("Input", DeadLettered))
}

// recordsOf returns the feed's next k plain records.
func recordsOf(f *foreignFeed, k int) []*kgo.Record {
	rs := make([]*kgo.Record, k)
	for i := range rs {
		rs[i] = f.record()
	}
	return rs
}
