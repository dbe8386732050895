package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// The pipeline benchmarks move b.N records through consume-transform-produce
// with one transaction per batch of benchBatch records, on an in-process
// kfake cluster. Run them with a fixed record count, e.g.
//
//	go test ./runtime -run '^$' -bench 'Pipeline|RawSaramaTxn' -benchtime 20000x
//
// BenchmarkRawSaramaTxnLoop is the baseline: the same loop written directly
// against sarama (batch, BeginTxn, SendMessages, AddMessageToTxnWithGroupMetadata,
// CommitTxn), without eventgen's decoding, validation, headers, retries and
// dead letters.

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

// rawTxnHandler is a hand-written consume-transform-produce loop on sarama.
type rawTxnHandler struct {
	prod  sarama.SyncProducer
	group string
	out   string
	txMu  chan struct{}
	total atomic.Int64
	n     int64
	done  chan struct{}
}

func (h *rawTxnHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *rawTxnHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *rawTxnHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	batch := make([]*sarama.ConsumerMessage, 0, benchBatch)
	for {
		select {
		case <-sess.Context().Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch = append(batch[:0], m)
		}
	drain:
		for len(batch) < benchBatch {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		outs := make([]*sarama.ProducerMessage, 0, len(batch))
		for _, m := range batch {
			e, err := decodeTestEvent(m.Value)
			if err != nil {
				return err
			}
			e.Src = fmt.Sprintf("%d/%d", m.Partition, m.Offset)
			outs = append(outs, &sarama.ProducerMessage{Topic: h.out, Key: sarama.StringEncoder(e.K), Value: sarama.ByteEncoder(e.AppendJSON(nil))})
		}
		h.txMu <- struct{}{}
		err := func() error {
			defer func() { <-h.txMu }()
			if err := h.prod.BeginTxn(); err != nil {
				return err
			}
			if err := h.prod.SendMessages(outs); err != nil {
				return err
			}
			if err := h.prod.AddMessageToTxnWithGroupMetadata(batch[len(batch)-1], sarama.NewConsumerGroupMetadataFromSession(sess, h.group, nil), nil); err != nil {
				return err
			}
			return h.prod.CommitTxn()
		}()
		if err != nil {
			return err
		}
		if h.total.Add(int64(len(batch))) == h.n {
			close(h.done)
		}
	}
}

func BenchmarkRawSaramaTxnLoop(b *testing.B) {
	cl, in, out, group := benchSetup(b)
	prod, err := sarama.NewSyncProducer(cl.Brokers(), txnConfig(group+"-tx"))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	kafkatest.FastTune(sc)
	cg, err := sarama.NewConsumerGroup(cl.Brokers(), group, sc)
	if err != nil {
		b.Fatal(err)
	}
	defer cg.Close()
	h := &rawTxnHandler{prod: prod, group: group, out: out.Topic, txMu: make(chan struct{}, 1), n: int64(b.N), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{in.Topic}, h); err != nil && ctx.Err() == nil {
				b.Errorf("consume: %v", err)
				return
			}
		}
	}()
	select {
	case <-h.done:
	case <-time.After(kafkatest.Timeout(5 * time.Minute)):
		b.Fatal("timed out")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
