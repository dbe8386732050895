package shop_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// TestGeneratedBatchHandler registers the generated HandleOrderPlacedBatch
// and sends orders with a redelivered one and, in the middle, one that
// fails its first attempt and one that fails permanently: the handler gets
// each new order once in a successful call, in order, never the
// redelivery; the failing one is retried with its attempt counted, the
// permanent one dead-lettered. (The store is the in-memory one, which
// gives the handler one order at a time; runtime/kafka's
// TestDedupBatchHandler runs the same on PostgreSQL with whole batches.)
func TestGeneratedBatchHandler(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	topic := (*shop.OrderPlaced)(nil).EventType().Topic
	c.CreateTopic(t, topic, 1)
	c.CreateTopic(t, kafka.DeadLetterTopic(topic), 1)
	ctx, cancel := context.WithTimeout(t.Context(), kafkatest.Timeout(60*time.Second))
	defer cancel()
	p, err := shop.NewProducer(kafka.ProducerConfig{Config: kafka.Config{Brokers: c.Brokers()}, TransactionalID: "batch-test"})
	if err != nil {
		t.Fatal(err)
	}
	var orders []*shop.OrderPlaced
	for i := range 12 {
		orders = append(orders, &shop.OrderPlaced{OrderID: event.NewUUID(), CustomerID: fmt.Sprintf("c%02d", i), Total: shop.Money{Cents: 100, Currency: "EUR"},
			Status: shop.OrderStatusPaid, Items: []string{"a"}, PlacedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)})
	}
	orders[4].CustomerID, orders[7].CustomerID = "fails-once", "invalid"
	sent := append(slices.Clone(orders[:3]), orders[2]) // order 2 delivered twice
	sent = append(sent, orders[3:]...)
	for _, o := range sent {
		if err := p.SendOrderPlaced(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	metrics := &kafka.Counters{}
	consumer, err := shop.NewConsumer(kafka.ConsumerConfig{
		Config:  kafka.Config{Brokers: c.Brokers(), Metrics: metrics, Tune: kafkatest.FastTune},
		GroupID: "batch", Retry: kafka.RetryPolicy{MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var handled []string // customers of successful calls, in order
	var failedAttempts []int
	consumer.HandleOrderPlacedBatch(dedup.NewMemory[pgx.Tx](0), func(ctx context.Context, tx pgx.Tx, events []*shop.OrderPlaced, recs []kafka.AtLeastOnceRecord) error {
		mu.Lock()
		defer mu.Unlock()
		if len(events) != len(recs) {
			return kafka.Permanent(errors.New("events and records differ in length"))
		}
		for i, e := range events {
			switch {
			case e.CustomerID == "fails-once" && recs[i].Attempt == 1:
				failedAttempts = append(failedAttempts, recs[i].Attempt)
				return errors.New("fails its first attempt")
			case e.CustomerID == "invalid":
				return kafka.Permanent(errors.New("invalid order"))
			}
		}
		for _, e := range events {
			handled = append(handled, e.CustomerID)
		}
		return nil
	})
	runUntilCommitted(t, ctx, consumer, c.Brokers(), "batch", topic)
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for _, o := range orders {
		if o.CustomerID != "invalid" {
			want = append(want, o.CustomerID)
		}
	}
	if !slices.Equal(handled, want) {
		t.Errorf("handled %v, want %v (each new order once, in order)", handled, want)
	}
	if !slices.Equal(failedAttempts, []int{1}) {
		t.Errorf("failed attempts %v, want [1]", failedAttempts)
	}
	if d, dl := metrics.Get("OrderPlaced", kafka.Duplicates), metrics.Get("OrderPlaced", kafka.DeadLettered); d != 1 || dl != 1 {
		t.Errorf("Duplicates %d, DeadLettered %d; want 1 and 1", d, dl)
	}
	if dead := kafkatest.ReadAll(t, c.Brokers(), kafka.DeadLetterTopic(topic)); len(dead) != 1 {
		t.Errorf("%d dead letters, want 1", len(dead))
	}
}

// runUntilCommitted runs consumer until its group has committed every record
// of topic's one partition, then stops it and fails the test on its error.
func runUntilCommitted(t *testing.T, ctx context.Context, consumer *shop.Consumer, brokers []string, group, topic string) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- consumer.Run(runCtx) }()
	client := kafkatest.NewClient(t, brokers, kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, group, topic, 1, 30*time.Second)
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
