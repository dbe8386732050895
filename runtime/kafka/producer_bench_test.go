package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// benchOrder is the raw-sarama payload: the same fields as testevent.Order,
// about 200 bytes of JSON.
type benchOrder struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
	Note     string `json:"note"`
}

const benchNote = "padding to make the record about two hundred bytes long, like a typical small business event payload."

// benchSenders is how many goroutines call Send concurrently in the
// eventgen and raw per-call benchmarks (RunParallel multiplies it by
// GOMAXPROCS).
const benchSenders = 32

func benchCluster(b *testing.B) *kafkatest.Cluster {
	c := kafkatest.Start(b, kafkatest.Options{Partitions: 3})
	c.CreateTopic(b, "bench", 3)
	return c
}

func rawConfig(acks sarama.RequiredAcks, idempotent bool) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion()
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	sc.Producer.RequiredAcks = acks
	if idempotent {
		sc.Producer.Idempotent = true
		sc.Net.MaxOpenRequests = 1
		sc.Producer.Retry.Max = 10
	} else {
		sc.Producer.Retry.Max = 0
	}
	sc.Producer.Return.Successes = acks != sarama.NoResponse
	sc.Producer.Return.Errors = true
	return sc
}

func rawMessage(i int) *sarama.ProducerMessage {
	o := benchOrder{ID: strconv.Itoa(i), Customer: "customer-" + strconv.Itoa(i%37), Amount: int64(i), Note: benchNote}
	v, _ := json.Marshal(o)
	return &sarama.ProducerMessage{Topic: "bench", Key: sarama.StringEncoder(o.Customer), Value: sarama.ByteEncoder(v)}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkAtLeastOnce compares the eventgen idempotent producer (concurrent
// blocking Sends) with raw sarama at identical settings, both per call
// (goroutines each waiting for their ack) and pipelined (one goroutine
// feeding Input, one draining Successes: the upper bound).
func BenchmarkAtLeastOnce(b *testing.B) {
	b.Run("eventgen", func(b *testing.B) {
		c := benchCluster(b)
		p, err := kafka.NewAtLeastOnceProducer(kafka.Config{Brokers: c.Brokers()})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		et := testevent.Type("bench", event.AtLeastOnce)
		var n atomic.Int64
		b.SetParallelism(benchSenders)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				i := int(n.Add(1))
				if err := p.Send(ctx, testevent.New(et, strconv.Itoa(i), "customer-"+strconv.Itoa(i%37), int64(i))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
	b.Run("raw-sarama-per-call", func(b *testing.B) {
		c := benchCluster(b)
		sp, err := sarama.NewSyncProducer(c.Brokers(), rawConfig(sarama.WaitForAll, true))
		if err != nil {
			b.Fatal(err)
		}
		defer sp.Close()
		var n atomic.Int64
		b.SetParallelism(benchSenders)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := sp.SendMessage(rawMessage(int(n.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b)
	})
	b.Run("raw-sarama-pipelined", func(b *testing.B) {
		c := benchCluster(b)
		ap, err := sarama.NewAsyncProducer(c.Brokers(), rawConfig(sarama.WaitForAll, true))
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range ap.Successes() {
			}
		}()
		go func() {
			defer wg.Done()
			for err := range ap.Errors() {
				b.Error(err)
			}
		}()
		b.ResetTimer()
		for i := range b.N {
			ap.Input() <- rawMessage(i)
		}
		ap.AsyncClose()
		wg.Wait()
		reportRate(b)
	})
}

// BenchmarkAtMostOnce compares the eventgen at-most-once producer with raw
// sarama at acks=0. Both count what they hand over; drops (full queue) are
// reported as drop/op for eventgen.
func BenchmarkAtMostOnce(b *testing.B) {
	b.Run("eventgen", func(b *testing.B) {
		c := benchCluster(b)
		var m kafka.Counters
		p, err := kafka.NewAtMostOnceProducer(kafka.Config{Brokers: c.Brokers(), Metrics: &m})
		if err != nil {
			b.Fatal(err)
		}
		et := testevent.Type("bench", event.AtMostOnce)
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			if err := p.Send(ctx, testevent.New(et, strconv.Itoa(i), "customer-"+strconv.Itoa(i%37), int64(i))); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			b.Log(err)
		}
		reportRate(b)
		b.ReportMetric(float64(m.Get("Order", kafka.Dropped))/float64(b.N), "drop/op")
	})
	b.Run("raw-sarama", func(b *testing.B) {
		c := benchCluster(b)
		ap, err := sarama.NewAsyncProducer(c.Brokers(), rawConfig(sarama.NoResponse, false))
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for err := range ap.Errors() {
				b.Error(err)
			}
		}()
		b.ResetTimer()
		for i := range b.N {
			ap.Input() <- rawMessage(i)
		}
		ap.AsyncClose()
		<-done
		reportRate(b)
	})
}

// BenchmarkTransactional measures transactions of N records: eventgen's
// InTx against raw sarama (BeginTxn, SendMessages, CommitTxn).
func BenchmarkTransactional(b *testing.B) {
	for _, per := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("eventgen/records=%d", per), func(b *testing.B) {
			c := benchCluster(b)
			p, err := kafka.NewTransactionalProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: c.Brokers()}, TransactionalID: "bench-eventgen"})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			et := testevent.Type("bench", event.ExactlyOnce)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				err := p.InTx(ctx, func(tx *kafka.Tx) error {
					for j := range per {
						if err := tx.Send(testevent.New(et, strconv.Itoa(i*per+j), "customer-"+strconv.Itoa(j%37), 1)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "msg/s")
		})
		b.Run(fmt.Sprintf("raw-sarama/records=%d", per), func(b *testing.B) {
			c := benchCluster(b)
			sc := rawConfig(sarama.WaitForAll, true)
			sc.Producer.Transaction.ID = "bench-raw"
			sp, err := sarama.NewSyncProducer(c.Brokers(), sc)
			if err != nil {
				b.Fatal(err)
			}
			defer sp.Close()
			b.ResetTimer()
			for i := range b.N {
				if err := sp.BeginTxn(); err != nil {
					b.Fatal(err)
				}
				msgs := make([]*sarama.ProducerMessage, per)
				for j := range msgs {
					msgs[j] = rawMessage(i*per + j)
				}
				if err := sp.SendMessages(msgs); err != nil {
					b.Fatal(err)
				}
				if err := sp.CommitTxn(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
