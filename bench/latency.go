package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// The latency measurement: inputs arrive at a steady rate, and each
// input's latency is the time from just before its transaction committed
// (when the pipeline could first read it) until its receipt is visible to a
// read_committed reader. The exactly-once pipeline runs at its defaults.

// latencyTick is how often the input producer commits the inputs due since
// the last tick, in one transaction.
const latencyTick = 5 * time.Millisecond

// latencyResult is what measureLatency found.
type latencyResult struct {
	rate     int // inputs per second
	n        int
	p50, p99 time.Duration
	max      time.Duration
}

// measureLatency runs the IssueReceipts pipeline at its defaults on a fresh
// cluster and feeds it rate inputs per second for d.
func measureLatency(ctx context.Context, rate int, d time.Duration) (latencyResult, error) {
	cluster, err := newCluster()
	if err != nil {
		return latencyResult{}, err
	}
	defer cluster.Close()
	brokers := cluster.Brokers()
	ctx, cancel := context.WithTimeout(ctx, d+2*time.Minute)
	defer cancel()
	for _, t := range []string{paymentsTopic, receiptsTopic} {
		if err := createTopic(brokers, t); err != nil {
			return latencyResult{}, err
		}
	}
	obs, err := startObserver(brokers)
	if err != nil {
		return latencyResult{}, err
	}
	defer obs.stop()

	runCtx, stopPipeline := context.WithCancel(ctx)
	defer stopPipeline()
	errc := make(chan error, 1)
	go func() {
		errc <- shop.RunIssueReceipts(runCtx, kafka.PipelineConfig{
			Config:  kafka.Config{Brokers: brokers},
			GroupID: "bench-latency", TransactionalID: "bench-latency-1",
		}, issueReceipt)
	}()
	p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: brokers}, TransactionalID: "bench-latency-input"})
	if err != nil {
		return latencyResult{}, err
	}
	defer p.Close()

	// Warm up until a receipt comes back: the group has formed and the
	// pipeline reads.
	if _, err := obs.send(ctx, p, 1); err != nil {
		return latencyResult{}, err
	}
	if err := obs.waitFor(ctx, 1, errc); err != nil {
		return latencyResult{}, fmt.Errorf("warm-up: %w", err)
	}
	obs.reset()

	sent := 0
	start := time.Now()
	tick := time.NewTicker(latencyTick)
	defer tick.Stop()
	for time.Since(start) < d {
		due := int(time.Since(start).Seconds()*float64(rate)) - sent
		if due > 0 {
			k, err := obs.send(ctx, p, due)
			sent += k
			if err != nil {
				return latencyResult{}, err
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return latencyResult{}, ctx.Err()
		}
	}
	if err := obs.waitFor(ctx, sent, errc); err != nil {
		return latencyResult{}, err
	}
	stopPipeline()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return latencyResult{}, err
	}
	lat := obs.latencies()
	slices.Sort(lat)
	return latencyResult{rate: rate, n: len(lat), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], max: lat[len(lat)-1]}, nil
}

// observer records when each input became readable and when its receipt
// became visible.
type observer struct {
	consumer sarama.Consumer
	pcs      []sarama.PartitionConsumer
	wg       sync.WaitGroup

	mu       sync.Mutex
	changed  *sync.Cond
	inputAt  map[event.UUID]time.Time // payment ID → just before its transaction committed
	outputAt map[event.UUID]time.Time // payment ID → its receipt read
	matched  int                      // inputs with their receipt
}

func startObserver(brokers []string) (*observer, error) {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion()
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	// Return fetches as soon as there is anything: the reader's own wait
	// must not count as the pipeline's latency.
	cfg.Consumer.MaxWaitTime = 5 * time.Millisecond
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	o := &observer{consumer: consumer, inputAt: map[event.UUID]time.Time{}, outputAt: map[event.UUID]time.Time{}}
	o.changed = sync.NewCond(&o.mu)
	for part := int32(0); part < partitions; part++ {
		pc, err := consumer.ConsumePartition(receiptsTopic, part, sarama.OffsetOldest)
		if err != nil {
			o.stop()
			return nil, fmt.Errorf("observer: %w", err)
		}
		o.pcs = append(o.pcs, pc)
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for m := range pc.Messages() {
				at := time.Now()
				r, err := event.DecodeEvent[shop.ReceiptIssued](m.Value)
				if err != nil {
					continue
				}
				o.mu.Lock()
				if _, seen := o.outputAt[r.PaymentID]; !seen {
					o.outputAt[r.PaymentID] = at
					if _, ok := o.inputAt[r.PaymentID]; ok {
						o.matched++
					}
				}
				o.changed.Broadcast()
				o.mu.Unlock()
			}
		}()
	}
	return o, nil
}

// send commits k inputs in one transaction and records, for each, the time
// just before the commit.
func (o *observer) send(ctx context.Context, p *shop.Producer, k int) (int, error) {
	ids := make([]event.UUID, k)
	err := p.InTx(ctx, func(tx shop.Tx) error {
		for i := range ids {
			ids[i] = event.NewUUID()
			e := &shop.PaymentCaptured{PaymentID: ids[i], OrderID: event.NewUUID(), Amount: shop.Money{Cents: int64(i), Currency: "EUR"}, CapturedAt: placedAt}
			if err := tx.SendPaymentCaptured(e); err != nil {
				return err
			}
		}
		now := time.Now()
		o.mu.Lock()
		for _, id := range ids {
			o.inputAt[id] = now
		}
		o.mu.Unlock()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("latency input: %w", err)
	}
	return k, nil
}

// waitFor waits until n inputs recorded by send have their receipt, the
// pipeline stops (errc), or ctx ends.
func (o *observer) waitFor(ctx context.Context, n int, errc <-chan error) error {
	stop := context.AfterFunc(ctx, func() { o.mu.Lock(); o.changed.Broadcast(); o.mu.Unlock() })
	defer stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.matched < n {
		select {
		case err := <-errc:
			return fmt.Errorf("pipeline stopped: %w", err)
		default:
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d receipts: %w", o.matched, n, ctx.Err())
		}
		o.changed.Wait()
	}
	return nil
}

// reset forgets the inputs sent so far (the warm-up).
func (o *observer) reset() {
	o.mu.Lock()
	clear(o.inputAt)
	o.matched = 0
	o.mu.Unlock()
}

func (o *observer) latencies() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]time.Duration, 0, len(o.inputAt))
	for id, in := range o.inputAt {
		out = append(out, o.outputAt[id].Sub(in))
	}
	return out
}

func (o *observer) stop() {
	for _, pc := range o.pcs {
		pc.AsyncClose()
	}
	o.wg.Wait()
	o.consumer.Close()
}
