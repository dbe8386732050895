package shop_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
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

// TestGeneratedConsumerBrownfieldRecords has kcat (librdkafka, not
// eventgen) write to the OrderPlaced topic: a structured-mode CloudEvent,
// a record without any header, and a record whose ce_type is another event
// of the schema. The generated consumer handles the first two (the
// structured one with its envelope's attributes, the bare one with an
// empty ID) and skips the third: committed, counted, not handled as an
// OrderPlaced and not dead-lettered as unknown.
func TestGeneratedConsumerBrownfieldRecords(t *testing.T) {
	kcat := kafkatest.Kcat(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	topic := (*shop.OrderPlaced)(nil).EventType().Topic
	c.CreateTopic(t, topic, 1)
	c.CreateTopic(t, topic+".dlq", 1)
	ctx, cancel := context.WithTimeout(t.Context(), kafkatest.Timeout(60*time.Second))
	defer cancel()
	order := func(customer string) *shop.OrderPlaced {
		return &shop.OrderPlaced{OrderID: event.NewUUID(), CustomerID: customer, Total: shop.Money{Cents: 100, Currency: "EUR"},
			Status: shop.OrderStatusPaid, Items: []string{"a"}, PlacedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	}
	produce := func(value []byte, headers ...string) {
		args := []string{"-P", "-b", strings.Join(c.Brokers(), ","), "-t", topic, "-K:"}
		for _, h := range headers {
			args = append(args, "-H", h)
		}
		cmd := exec.CommandContext(ctx, kcat, args...)
		cmd.Stdin = strings.NewReader("k:" + string(value) + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
	}
	structured, bare, other := order("structured"), order("bare"), order("other")
	envelope, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": "kcat-structured-1", "type": "shop.OrderPlaced.v1", "source": "/legacy/orders",
		"time": "2026-11-26T12:00:01Z", "datacontenttype": "application/json", "data": json.RawMessage(structured.AppendJSON(nil)),
	})
	produce(envelope, "content-type=application/cloudevents+json")
	produce(bare.AppendJSON(nil))
	produce(other.AppendJSON(nil), "ce_type=shop.PaymentCaptured.v1", "ce_id=x")
	produce(order("last").AppendJSON(nil), "ce_type=shop.OrderPlaced.v1")

	metrics := &kafka.Counters{}
	consumer, err := shop.NewConsumer(kafka.ConsumerConfig{
		Config:  kafka.Config{Brokers: c.Brokers(), Metrics: metrics, Tune: kafkatest.FastTune},
		GroupID: "brownfield",
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]kafka.Record{}
	consumer.HandleOrderPlaced(dedup.NewMemory[pgx.Tx](0), func(ctx context.Context, e *shop.OrderPlaced, _ pgx.Tx, rec kafka.AtLeastOnceRecord) error {
		mu.Lock()
		defer mu.Unlock()
		got[e.CustomerID] = rec.Record
		return nil
	})
	runUntilCommitted(t, ctx, consumer, c.Brokers(), "brownfield", topic)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Errorf("handled %d orders (%v), want structured, bare and last", len(got), got)
	}
	if r := got["structured"]; r.ID != "kcat-structured-1" || r.Type != "shop.OrderPlaced.v1" || r.Source != "/legacy/orders" ||
		!r.Time.Equal(time.Date(2026, 11, 26, 12, 0, 1, 0, time.UTC)) {
		t.Errorf("structured-mode record: ID %q Type %q Source %q Time %v", r.ID, r.Type, r.Source, r.Time)
	}
	if r, ok := got["bare"]; !ok || r.ID != "" || r.Type != "" {
		t.Errorf("record without headers: handled %v, ID %q Type %q; want handled with empty ID", ok, r.ID, r.Type)
	}
	if _, ok := got["other"]; ok {
		t.Error("a PaymentCaptured record was handled as an OrderPlaced")
	}
	if s, d := metrics.Get("PaymentCaptured", kafka.Skipped), metrics.Get("OrderPlaced", kafka.DeadLettered)+metrics.Get(topic, kafka.DeadLettered); s != 1 || d != 0 {
		t.Errorf("PaymentCaptured skipped %d (want 1), dead-lettered %d (want 0)", s, d)
	}
}

// TestGeneratedPipelineSkipsOtherEvents: the generated RunIssueReceipts
// gets a record of another event of the schema (ReceiptIssued) on its
// input topic, written by kcat: it is skipped (committed, counted), not
// transformed and not dead-lettered as unknown; a PaymentCaptured without
// headers (the topic's only event) is transformed.
func TestGeneratedPipelineSkipsOtherEvents(t *testing.T) {
	kcat := kafkatest.Kcat(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	in := (*shop.PaymentCaptured)(nil).EventType().Topic
	for _, tp := range []string{in, in + ".dlq", (*shop.ReceiptIssued)(nil).EventType().Topic} {
		c.CreateTopic(t, tp, 1)
	}
	ctx, cancel := context.WithTimeout(t.Context(), kafkatest.Timeout(60*time.Second))
	defer cancel()
	payment := &shop.PaymentCaptured{PaymentID: event.NewUUID(), OrderID: event.NewUUID(), Amount: shop.Money{Cents: 5, Currency: "EUR"},
		CapturedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	for _, rec := range []struct {
		value   []byte
		headers []string
	}{
		{payment.AppendJSON(nil), []string{"ce_type=shop.ReceiptIssued.v1"}},
		{payment.AppendJSON(nil), nil},
	} {
		args := []string{"-P", "-b", strings.Join(c.Brokers(), ","), "-t", in, "-K:"}
		for _, h := range rec.headers {
			args = append(args, "-H", h)
		}
		cmd := exec.CommandContext(ctx, kcat, args...)
		cmd.Stdin = strings.NewReader("k:" + string(rec.value) + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
	}
	metrics := &kafka.Counters{}
	var mu sync.Mutex
	transformed := 0
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- shop.RunIssueReceipts(runCtx, kafka.PipelineConfig{
			Config:  kafka.Config{Brokers: c.Brokers(), Metrics: metrics, Tune: kafkatest.FastTune},
			GroupID: "receipts-brownfield", TransactionalID: "receipts-brownfield-tx",
		}, func(ctx context.Context, p *shop.PaymentCaptured, out shop.IssueReceiptsEmitter) error {
			mu.Lock()
			transformed++
			mu.Unlock()
			return nil
		})
	}()
	client := kafkatest.NewClient(t, c.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "receipts-brownfield", in, 1, 30*time.Second)
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if transformed != 1 || metrics.Get("ReceiptIssued", kafka.Skipped) != 1 || metrics.Get("PaymentCaptured", kafka.DeadLettered) != 0 {
		t.Errorf("transformed %d (want 1), ReceiptIssued skipped %d (want 1), dead-lettered %d (want 0)",
			transformed, metrics.Get("ReceiptIssued", kafka.Skipped), metrics.Get("PaymentCaptured", kafka.DeadLettered))
	}
}
