package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

const partitions = 3

var scenarios = []scenario{
	{name: "alo", what: "at-least-once producer (idempotent, acks=all), pipelined sends", raw: rawAtLeastOnce, gen: genAtLeastOnceAsync, target: 0.95},
	{name: "alo-sync", what: "at-least-once producer, 64 goroutines each waiting for its ack", raw: rawAtLeastOnceSync, gen: genAtLeastOnce},
	{name: "amo", what: "at-most-once producer (acks=0)", raw: rawAtMostOnce, gen: genAtMostOnce, target: 0.95},
	{name: "eos", what: "exactly-once pipeline vs raw transactional producer, 100 records per transaction", raw: rawTransactional, gen: genPipeline, target: 0.5},
	{name: "eos-loop", what: "exactly-once pipeline vs hand-written sarama consume-transform-produce loop, up to 100 records per transaction, committed when nothing more is buffered (CommitWhenIdle)", raw: rawPipeline, gen: genPipelineLoopPolicy, target: 1.0},
	{name: "eos-default", what: "exactly-once pipeline at its defaults (100 ms commit interval) vs raw async idempotent producer", raw: rawAtLeastOnce, gen: genPipelineDefaults, target: 0.35},
	{name: "dedup-pg", what: "consumer with the PostgreSQL dedup store and a batch handler (one multi-row INSERT per batch) vs the baseline: a transaction per message (SELECT ... FOR UPDATE, insert, processed row), 10% duplicates", raw: rawPostgresPerMessage, gen: genPostgresDedup, target: 20},
	{name: "dedup-redis", what: "consumer with the Redis dedup store vs the baseline: a middleware per message (SET NX EX, handler, SET done, DEL on failure), 10% duplicates", raw: rawRedisMiddleware, gen: genRedisDedup, target: 5},
	{name: "outbox-article", what: "outbox drain: eventgen's relay vs the article's (100 rows FOR UPDATE SKIP LOCKED, one send and one UPDATE per row)", raw: articleDrain, gen: relayDrain, target: 10},
	{name: "outbox-watermill", what: "outbox drain: eventgen's relay vs watermill-sql's forwarder (components/forwarder)", raw: watermillDrain, gen: relayDrain, target: 5},
}

func newCluster() (*kafkatest.Cluster, error) {
	return kafkatest.New(kafkatest.Options{Partitions: partitions})
}

// order is the hand-written equivalent of shop.OrderPlaced for encoding/json.
type order struct {
	OrderID    string   `json:"order_id"`
	CustomerID string   `json:"customer_id"`
	Total      money    `json:"total"`
	Status     string   `json:"status"`
	Items      []string `json:"items"`
	PlacedAt   string   `json:"placed_at"`
}

type money struct {
	Cents    int64  `json:"cents"`
	Currency string `json:"currency"`
}

var placedAt = time.Date(2026, 11, 26, 18, 0, 0, 123456789, time.UTC)

// genOrder returns event i; its JSON is about 200 bytes.
func genOrder(i int) *shop.OrderPlaced {
	return &shop.OrderPlaced{
		OrderID: event.NewUUID(), CustomerID: fmt.Sprintf("customer-%08d-loyal", i),
		Total: shop.Money{Cents: int64(1000 + i), Currency: "EUR"}, Status: shop.OrderStatusPending,
		Items: []string{"sku-0001", "sku-0002"}, PlacedAt: placedAt,
	}
}

func rawOrder(i int) *order {
	return &order{
		OrderID: event.NewUUID().String(), CustomerID: fmt.Sprintf("customer-%08d-loyal", i),
		Total: money{Cents: int64(1000 + i), Currency: "EUR"}, Status: "pending",
		Items: []string{"sku-0001", "sku-0002"}, PlacedAt: placedAt.Format(time.RFC3339Nano),
	}
}

// ceHeaders are the CloudEvents binary-mode headers a hand-written producer
// following the Kafka binding sends, so that raw and generated records are
// the same bytes on the wire.
func ceHeaders(ceType string) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte("ce_specversion"), Value: []byte("1.0")},
		{Key: []byte("ce_id"), Value: []byte(event.NewUUID().String())},
		{Key: []byte("ce_type"), Value: []byte(ceType)},
		{Key: []byte("ce_source"), Value: []byte("example.com/shop")},
		{Key: []byte("ce_time"), Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: []byte("content-type"), Value: []byte("application/json")},
	}
}

func baseConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = kafka.ProtocolVersion()
	c.Producer.Partitioner = sarama.NewMurmur2Partitioner // as eventgen's producers
	return c
}

// senders is how many goroutines send concurrently in the at-least-once
// scenario: a service sends from many request handlers at once.
const senders = 64

func rawAtLeastOnce(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timed(func() error { return rawAtLeastOnceBody(ctx, brokers, n) })
}

func rawAtLeastOnceBody(ctx context.Context, brokers []string, n int) error {
	c := idempotentConfig()
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		return err
	}
	defer p.Close()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			select {
			case <-p.Successes():
			case pe := <-p.Errors():
				done <- pe.Err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		o := rawOrder(i)
		v, err := json.Marshal(o)
		if err != nil {
			return err
		}
		p.Input() <- &sarama.ProducerMessage{Topic: "bench.alo", Key: sarama.StringEncoder(o.OrderID), Value: sarama.ByteEncoder(v), Headers: ceHeaders("shop.OrderPlaced.v1")}
	}
	return <-done
}

func genAtLeastOnce(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timed(func() error { return genAtLeastOnceBody(ctx, brokers, n) })
}

func genAtLeastOnceBody(ctx context.Context, brokers []string, n int) error {
	p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: brokers}, TransactionalID: "bench-txn"})
	if err != nil {
		return err
	}
	defer p.Close()
	return parallel(n, senders, func(i int) error {
		e := genOrder(i)
		return p.SendOrderPlaced(ctx, e)
	})
}

func genAtLeastOnceAsync(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timed(func() error {
		p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: brokers}, TransactionalID: "bench-txn"})
		if err != nil {
			return err
		}
		defer p.Close()
		var pending sync.WaitGroup
		var failed atomic.Pointer[error]
		for i := 0; i < n; i++ {
			pending.Add(1)
			err := p.SendOrderPlacedAsync(ctx, genOrder(i), func(err error) {
				if err != nil {
					failed.CompareAndSwap(nil, &err)
				}
				pending.Done()
			})
			if err != nil {
				return err
			}
		}
		pending.Wait()
		if err := failed.Load(); err != nil {
			return *err
		}
		return nil
	})
}

// rawAtLeastOnceSync is the hand-written equivalent of Send: each of the
// goroutines uses a sarama SyncProducer with the same settings.
func rawAtLeastOnceSync(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	c := idempotentConfig()
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	return timed(func() error {
		return parallel(n, senders, func(i int) error {
			o := rawOrder(i)
			v, err := json.Marshal(o)
			if err != nil {
				return err
			}
			_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "bench.alo", Key: sarama.StringEncoder(o.OrderID), Value: sarama.ByteEncoder(v), Headers: ceHeaders("shop.OrderPlaced.v1")})
			return err
		})
	})
}

func idempotentConfig() *sarama.Config {
	c := baseConfig()
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 10
	c.Producer.Return.Successes = true
	return c
}

// parallel runs f(0..n-1) on k goroutines.
func parallel(n, k int, f func(int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += k {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

type view struct {
	SessionID string `json:"session_id"`
	Path      string `json:"path"`
	ViewedAt  string `json:"viewed_at"`
}

const longPath = "/products/category/kitchen/espresso-machines/deluxe-model-with-milk-frother-and-grinder?ref=homepage-banner&campaign=winter-sale-2026&utm_source=newsletter&x="

func rawAtMostOnce(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timed(func() error { return rawAtMostOnceBody(ctx, brokers, n) })
}

func rawAtMostOnceBody(ctx context.Context, brokers []string, n int) error {
	c := baseConfig()
	c.Producer.RequiredAcks = sarama.NoResponse
	c.Producer.Retry.Max = 0
	c.Producer.Return.Errors = true
	c.ChannelBufferSize = amoQueue(n)
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		return err
	}
	go func() {
		for range p.Errors() {
		}
	}()
	for i := 0; i < n; i++ {
		v, err := json.Marshal(&view{SessionID: fmt.Sprintf("session-%06d", i%1000), Path: longPath + fmt.Sprint(i), ViewedAt: placedAt.Format(time.RFC3339Nano)})
		if err != nil {
			return err
		}
		p.Input() <- &sarama.ProducerMessage{Topic: "bench.amo", Key: sarama.StringEncoder(fmt.Sprintf("session-%06d", i%1000)), Value: sarama.ByteEncoder(v), Headers: ceHeaders("shop.PageViewed.v1")}
	}
	return p.Close() // flushes
}

func genAtMostOnce(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timed(func() error { return genAtMostOnceBody(ctx, brokers, n) })
}

// amoQueue sizes both at-most-once producers' queues alike.
func amoQueue(n int) int { return n }

func genAtMostOnceBody(ctx context.Context, brokers []string, n int) error {
	metrics := &kafka.Counters{}
	// A queue that holds the whole run: the loop outruns any broker, and
	// at-most-once drops what does not fit rather than block the caller.
	tune := func(c *sarama.Config) { c.ChannelBufferSize = amoQueue(n) }
	p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: brokers, Metrics: metrics, Tune: tune}, TransactionalID: "bench-txn"})
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		e := &shop.PageViewed{SessionID: fmt.Sprintf("session-%06d", i%1000), Path: longPath + fmt.Sprint(i), ViewedAt: placedAt}
		if err := p.SendPageViewed(ctx, e); err != nil {
			return err
		}
	}
	if err := p.Close(); err != nil {
		return err
	}
	if d := metrics.Get("PageViewed", kafka.Dropped); d > 0 {
		return fmt.Errorf("%d of %d events dropped: the comparison would flatter eventgen", d, n)
	}
	return nil
}

const txnBatch = 100

func rawTransactional(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timed(func() error { return rawTransactionalBody(ctx, brokers, n) })
}

func rawTransactionalBody(ctx context.Context, brokers []string, n int) error {
	c := baseConfig()
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 10
	c.Producer.Return.Successes = true
	c.Producer.Transaction.ID = "bench-raw"
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		return err
	}
	defer p.Close()
	for start := 0; start < n; start += txnBatch {
		if err := p.BeginTxn(); err != nil {
			return err
		}
		k := min(txnBatch, n-start)
		for i := start; i < start+k; i++ {
			o := rawOrder(i)
			v, err := json.Marshal(o)
			if err != nil {
				return err
			}
			p.Input() <- &sarama.ProducerMessage{Topic: "bench.txn", Key: sarama.StringEncoder(o.OrderID), Value: sarama.ByteEncoder(v), Headers: ceHeaders("shop.ReceiptIssued.v1")}
		}
		for i := 0; i < k; i++ {
			select {
			case <-p.Successes():
			case pe := <-p.Errors():
				return pe.Err
			}
		}
		if err := p.CommitTxn(); err != nil {
			return err
		}
	}
	return nil
}

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// preloadPayments writes n PaymentCaptured events to their topic, 1,000
// per transaction: the input of both sides of the pipeline scenarios.
func preloadPayments(ctx context.Context, brokers []string, n int) error {
	p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: brokers}, TransactionalID: "bench-preload"})
	if err != nil {
		return err
	}
	for start := 0; start < n; start += 1000 {
		err := p.InTx(ctx, func(tx shop.Tx) error {
			for i := start; i < min(start+1000, n); i++ {
				e := &shop.PaymentCaptured{PaymentID: event.NewUUID(), OrderID: event.NewUUID(), Amount: shop.Money{Cents: int64(i), Currency: "EUR"}, CapturedAt: placedAt}
				if err := tx.SendPaymentCaptured(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			p.Close()
			return fmt.Errorf("preload: %w", err)
		}
	}
	return p.Close()
}

// genPipeline preloads n PaymentCaptured events, then times the generated
// IssueReceipts pipeline turning them into n committed receipts, 100 inputs
// per transaction (the raw loop's batch).
func genPipeline(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timePipeline(ctx, brokers, n, txnBatch, false)
}

// genPipelineLoopPolicy is genPipeline with the commit policy of the
// hand-written loop (bench/loop.go), which commits whatever a partition has
// buffered: CommitWhenIdle, so that a round is committed as soon as the
// claims have nothing more to add, not at the next CommitInterval tick.
func genPipelineLoopPolicy(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timePipeline(ctx, brokers, n, txnBatch, true)
}

// genPipelineDefaults is genPipeline with the pipeline's defaults: a round
// commits every 100 ms (or at 10,000 inputs).
func genPipelineDefaults(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	return timePipeline(ctx, brokers, n, 0, false)
}

// issueReceipt is the IssueReceipts handler of every pipeline scenario.
func issueReceipt(ctx context.Context, in *shop.PaymentCaptured, out shop.IssueReceiptsEmitter) error {
	return out.EmitReceiptIssued(&shop.ReceiptIssued{PaymentID: in.PaymentID, OrderID: in.OrderID, Amount: in.Amount, Lines: []string{"espresso machine"}})
}

// timePipeline preloads n PaymentCaptured events, then times the generated
// IssueReceipts pipeline (BatchSize batch, 0 for the default; CommitWhenIdle
// idle) turning them into n committed receipts.
func timePipeline(ctx context.Context, brokers []string, n, batch int, idle bool) (time.Duration, error) {
	if err := preloadPayments(ctx, brokers, n); err != nil {
		return 0, err
	}
	counter, err := startCounter(ctx, brokers, "shop.receipts.issued", n)
	if err != nil {
		return 0, err
	}
	defer counter.stop()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		errc <- shop.RunIssueReceipts(runCtx, kafka.PipelineConfig{
			Config:  kafka.Config{Brokers: brokers},
			GroupID: "bench-receipts", TransactionalID: "bench-receipts-1", BatchSize: batch, CommitWhenIdle: idle,
		}, issueReceipt)
	}()
	select {
	case <-counter.done:
		elapsed := time.Since(start)
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return 0, err
		}
		return elapsed, nil
	case err := <-errc:
		return 0, fmt.Errorf("pipeline stopped early: %w", err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
