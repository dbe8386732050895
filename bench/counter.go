package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/kafka"
)

// counter reads a topic read_committed from the start and closes done once
// it has seen want records.
type counter struct {
	consumer sarama.Consumer
	pcs      []sarama.PartitionConsumer
	seen     atomic.Int64
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

func startCounter(ctx context.Context, brokers []string, topic string, want int) (*counter, error) {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion()
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("counter: %w", err)
	}
	c := &counter{consumer: consumer, done: make(chan struct{})}
	if err := createTopic(brokers, topic); err != nil {
		consumer.Close()
		return nil, err
	}
	for p := int32(0); p < partitions; p++ {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("counter: %w", err)
		}
		c.pcs = append(c.pcs, pc)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for range pc.Messages() {
				if c.seen.Add(1) == int64(want) {
					c.once.Do(func() { close(c.done) })
				}
			}
		}()
	}
	return c, nil
}

func createTopic(brokers []string, topic string) error {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion()
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer admin.Close()
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	return nil
}

func (c *counter) stop() {
	for _, pc := range c.pcs {
		pc.AsyncClose()
	}
	c.wg.Wait()
	c.consumer.Close()
}
