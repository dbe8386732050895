package shop_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// TestGeneratedConsumerReadsKcatRecords has a client nobody here wrote
// (librdkafka's kcat, murmur2_random partitioner) produce OrderPlaced
// records, and the generated consumer handle them: every record arrives,
// decoded, on the partition the Java-compatible partitioner picks for its
// key, with its CloudEvents headers; a malformed record is dead-lettered.
func TestGeneratedConsumerReadsKcatRecords(t *testing.T) {
	kcat := kafkatest.Kcat(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 4})
	topic := (*shop.OrderPlaced)(nil).EventType().Topic
	c.CreateTopic(t, topic, 4)
	c.CreateTopic(t, topic+".dlq", 1)

	const n = 60
	want := map[event.UUID]bool{}
	var lines strings.Builder
	placed := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := range n {
		e := &shop.OrderPlaced{
			OrderID: event.NewUUID(), CustomerID: fmt.Sprintf("c%d", i), Total: shop.Money{Cents: int64(i), Currency: "EUR"},
			Status: shop.OrderStatusPaid, Items: []string{"a", "b"}, PlacedAt: placed,
		}
		want[e.OrderID] = true
		fmt.Fprintf(&lines, "%s:%s\n", e.Key(), e.AppendJSON(nil))
	}
	lines.WriteString("poison-key:{\"order_id\": 42}\n")
	ctx, cancel := context.WithTimeout(t.Context(), kafkatest.Timeout(60*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-P", "-b", strings.Join(c.Brokers(), ","), "-t", topic,
		"-X", "partitioner=murmur2_random", "-K:",
		"-H", "ce_specversion=1.0", "-H", "ce_id=from-kcat", "-H", "ce_type=shop.OrderPlaced.v1",
		"-H", "ce_source=kcat", "-H", "content-type=application/json")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}

	partitioner := sarama.NewMurmur2Partitioner(topic)
	var mu sync.Mutex
	got := map[event.UUID]int{}
	var problems []string
	metrics := &kafka.Counters{}
	consumer, err := shop.NewConsumer(kafka.ConsumerConfig{
		Config: kafka.Config{Brokers: c.Brokers(), Metrics: metrics, Tune: func(sc *sarama.Config) {
			kafkatest.FastTune(sc)
			sc.Consumer.Offsets.Initial = sarama.OffsetOldest
		}},
		GroupID: "kcat-interop",
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	consumer.HandleOrderPlaced(dedup.NewMemory[pgx.Tx](0), func(ctx context.Context, e *shop.OrderPlaced, _ pgx.Tx, rec kafka.AtLeastOnceRecord) error {
		mu.Lock()
		defer mu.Unlock()
		p, err := partitioner.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(e.Key())}, 4)
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case p != rec.Partition:
			problems = append(problems, fmt.Sprintf("order %s on partition %d, murmur2 says %d", e.OrderID, rec.Partition, p))
		case rec.ID != "from-kcat" || rec.Source != "kcat":
			problems = append(problems, fmt.Sprintf("headers not read: id %q source %q", rec.ID, rec.Source))
		}
		got[e.OrderID]++
		if got[e.OrderID] == 1 && len(got) == n { // once: a redelivery must not close done again
			close(done)
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- consumer.Run(runCtx) }()
	select {
	case <-done:
	case err := <-errc:
		t.Fatalf("consumer stopped: %v", err)
	case <-ctx.Done():
		t.Fatalf("only %d of %d records handled", len(got), n)
	}
	// The poison record is in some partition; wait until it is dead-lettered.
	for metrics.Get("OrderPlaced", kafka.DeadLettered) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the malformed kcat record was not dead-lettered")
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("order %s produced by kcat was never handled", id)
		}
	}
	t.Logf("%d kcat records handled by the generated consumer, 1 dead-lettered", len(got))
}
