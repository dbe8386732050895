package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// topics the demo creates up front, so that it also runs on clusters that
// do not create topics on first use.
var topics = []string{
	"shop.pages.viewed", "shop.orders.placed", "shop.orders.placed.dlq",
	"shop.orders.delivered", "shop.orders.delivered.dlq", "shop.prices.changed", "shop.prices.changed.dlq",
	"shop.customers.notified", "shop.customers.notified.dlq",
	"shop.payments.captured", "shop.payments.captured.dlq", "shop.receipts.issued",
	"shop.orders.shipped", "shop.orders.shipped.dlq",
}

func createTopics(brokers []string, partitions int32) error {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion()
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return fmt.Errorf("connect admin: %w", err)
	}
	defer admin.Close()
	for _, t := range topics {
		err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	return nil
}

// receiptReader reads shop.receipts.issued read_committed, as any downstream
// consumer of the pipeline would, and counts receipts and duplicates.
type receiptReader struct {
	seen       sync.Map // payment ID → struct{}
	unique     atomic.Int64
	duplicates atomic.Int64
	aborted    atomic.Int64 // receipts for the aborted payment (must stay 0)
}

func (r *receiptReader) start(ctx context.Context, brokers []string, abortedPayment event.UUID, wg *sync.WaitGroup) error {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion()
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		return fmt.Errorf("receipt reader: %w", err)
	}
	parts, err := consumer.Partitions("shop.receipts.issued")
	if err != nil {
		consumer.Close()
		return fmt.Errorf("receipt reader: %w", err)
	}
	var pcs []sarama.PartitionConsumer
	for _, p := range parts {
		pc, err := consumer.ConsumePartition("shop.receipts.issued", p, sarama.OffsetOldest)
		if err != nil {
			consumer.Close()
			return fmt.Errorf("receipt reader: %w", err)
		}
		pcs = append(pcs, pc)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		for _, pc := range pcs {
			pc.AsyncClose() // closes Messages, which ends the readers below
		}
		consumer.Close()
	}()
	for _, pc := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range pc.Messages() {
				var rcpt shop.ReceiptIssued
				if err := rcpt.UnmarshalJSON(m.Value); err != nil {
					continue
				}
				if rcpt.PaymentID == abortedPayment {
					r.aborted.Add(1)
				}
				if _, dup := r.seen.LoadOrStore(rcpt.PaymentID, struct{}{}); dup {
					r.duplicates.Add(1)
				} else {
					r.unique.Add(1)
				}
			}
		}()
	}
	return nil
}
