package kafka

import (
	"context"
	"fmt"
	"github.com/IBM/sarama"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// The pipeline benchmarks move b.N records through consume-transform-produce
// with one transaction per batch of benchBatch records, on an in-process
// kfake cluster. Run them with a fixed record count, e.g.
//
//	go test ./runtime/kafka -run '^$' -bench Pipeline -benchtime 20000x
//
// Its baseline, the same loop written by hand on sarama, is the raw side of
// the eos-loop scenario of the bench harness (go run ./bench -run eos-loop),
// which runs both sides back to back on the same records.

const (
	benchParts = 4
	benchBatch = 100
)

var benchSeq atomic.Int64

func benchSetup(b *testing.B) (cl *kafkatest.Cluster, in, out *event.Type, group string) {
	b.Helper()
	cl = kafkatest.Start(b, kafkatest.Options{Partitions: benchParts})
	id := benchSeq.Add(1)
	in = testEventType("Input", fmt.Sprintf("bench-in-%d", id), event.ExactlyOnce)
	out = testEventType("Output", fmt.Sprintf("bench-out-%d", id), event.ExactlyOnce)
	cl.CreateTopic(b, in.Topic, benchParts)
	cl.CreateTopic(b, out.Topic, benchParts)
	produceInputs(b, cl.Brokers(), in, b.N, 64, nil)
	return cl, in, out, fmt.Sprintf("bench-%d", id)
}

// countTo returns a Metrics that closes done once Committed reaches n.
func countTo(n int64, done chan struct{}) Metrics {
	var total atomic.Int64
	return MetricsFunc(func(event string, c Counter, k int64) {
		if c == Committed && total.Add(k) == n {
			close(done)
		}
	})
}

func BenchmarkPipeline(b *testing.B) {
	cl, in, out, group := benchSetup(b)
	done := make(chan struct{})
	cfg := PipelineConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: countTo(int64(b.N), done), Tune: kafkatest.FastTune},
		GroupID: group, TransactionalID: group + "-tx", BatchSize: benchBatch,
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() {
		errc <- RunPipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, func(ctx context.Context, e testEvent, em *Emitter) error {
			r := em.Record()
			return em.Emit(&testEvent{K: e.K, Seq: e.Seq, Src: fmt.Sprintf("%d/%d", r.Partition, r.Offset), et: out})
		})
	}()
	select {
	case <-done:
	case err := <-errc:
		b.Fatalf("pipeline stopped: %v", err)
	case <-time.After(kafkatest.Timeout(5 * time.Minute)):
		b.Fatal("timed out")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPipelineTransform is a pipeline's work per input record without a
// broker: route by ce_type, decode, run the handler (one output, with its
// CloudEvents headers), as a claim does before adding the input to a round.
//
//	go test ./runtime/kafka -run '^$' -bench PipelineTransform -benchmem
func BenchmarkPipelineTransform(b *testing.B) {
	in := testEventType("Input", "bench-transform-in", event.ExactlyOnce)
	out := testEventType("Output", "bench-transform-out", event.ExactlyOnce)
	p, err := newPipeline(PipelineConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}}, GroupID: "bench", TransactionalID: "bench-tx"},
		event.ExactlyOnce, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
	if err != nil {
		b.Fatal(err)
	}
	pm, _, err := encodeEvent(context.Background(), &testEvent{K: "k1", Seq: 42, Src: "bench", et: in})
	if err != nil {
		b.Fatal(err)
	}
	value, _ := pm.Value.Encode()
	m := &sarama.ConsumerMessage{Topic: in.Topic, Partition: 1, Offset: 42, Key: []byte("k1"), Value: value}
	for _, h := range pm.Headers {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	g := &claimGuard{ctx: context.Background(), abandon: make(chan struct{}), done: make(chan struct{}), log: p.log}
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		x, err := p.transform(context.Background(), g, m)
		if err != nil || x.status != handled || len(x.outs) != 1 {
			b.Fatalf("transform: %v, status %d, %d outputs", err, x.status, len(x.outs))
		}
	}
}
