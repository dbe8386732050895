package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
)

// TestConfigReportsEveryProblem feeds each configuration several invalid
// fields at once and checks that one error names every one of them (no
// broker is needed: validation runs before connecting).
func TestConfigReportsEveryProblem(t *testing.T) {
	neg := RetryPolicy{MaxAttempts: -1, Backoff: -time.Second, MaxBackoff: -time.Second}
	in := testEventType("Input", "in", event.ExactlyOnce)
	out := testEventType("Output", "out", event.ExactlyOnce)
	for _, tc := range []struct {
		name string
		run  func() error
		want []string
	}{
		{"consumer", func() error {
			_, err := NewConsumer(ConsumerConfig{
				Config: Config{CloseTimeout: -1}, Retry: neg, MaxBatch: -1, CommitInterval: -time.Second, ShutdownGrace: -time.Second,
			})
			return err
		}, []string{
			"ConsumerConfig.Brokers is empty", "ConsumerConfig.GroupID is required",
			"ConsumerConfig.CloseTimeout must not be negative",
			"ConsumerConfig.Retry.MaxAttempts must not be negative", "ConsumerConfig.Retry.Backoff must not be negative",
			"ConsumerConfig.Retry.MaxBackoff must not be negative",
			"ConsumerConfig.MaxBatch must not be negative, got -1", "ConsumerConfig.CommitInterval must not be negative, got -1s",
			"ConsumerConfig.ShutdownGrace must not be negative, got -1s",
		}},
		{"pipeline", func() error {
			cfg := PipelineConfig{Config: Config{CloseTimeout: -1}, Retry: neg, BatchSize: -5, ShutdownGrace: -time.Millisecond}
			return RunPipeline(context.Background(), cfg, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
		}, []string{
			"PipelineConfig.Brokers is empty", "PipelineConfig.GroupID is required", "PipelineConfig.TransactionalID is required",
			"PipelineConfig.CloseTimeout must not be negative", "PipelineConfig.Retry.MaxAttempts must not be negative",
			"PipelineConfig.Retry.Backoff must not be negative", "PipelineConfig.Retry.MaxBackoff must not be negative",
			"PipelineConfig.BatchSize must not be negative, got -5", "PipelineConfig.ShutdownGrace must not be negative, got -1ms",
		}},
		{"transactional producer", func() error {
			_, err := NewTransactionalProducer(ProducerConfig{Config: Config{CloseTimeout: -1}})
			return err
		}, []string{"ProducerConfig.Brokers is empty", "ProducerConfig.TransactionalID is required", "ProducerConfig.CloseTimeout must not be negative"}},
		{"at-least-once producer", func() error {
			_, err := NewAtLeastOnceProducer(Config{CloseTimeout: -1})
			return err
		}, []string{"Config.Brokers is empty", "Config.CloseTimeout must not be negative"}},
		{"at-most-once producer", func() error {
			_, err := NewAtMostOnceProducer(Config{CloseTimeout: -1})
			return err
		}, []string{"Config.Brokers is empty", "Config.CloseTimeout must not be negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("%d problems reported, want %d:\n%v", n, len(tc.want), err)
			}
		})
	}
}

// TestConfigDefaults checks that the zero fields get the documented
// defaults.
func TestConfigDefaults(t *testing.T) {
	c := ConsumerConfig{Config: Config{Brokers: []string{"x:1"}}, GroupID: "g"}.withDefaults()
	if c.ClientID != DefaultClientID || c.Logger == nil || c.Metrics == nil || c.CloseTimeout != DefaultCloseTimeout ||
		c.MaxBatch != DefaultMaxBatch || c.CommitInterval != DefaultCommitInterval || c.Retry != (RetryPolicy{}).withDefaults() {
		t.Errorf("consumer defaults: %+v", c)
	}
	p := PipelineConfig{}.withDefaults()
	if p.BatchSize != DefaultPipelineBatchSize || p.CommitInterval != DefaultPipelineCommitInterval || p.Retry.MaxAttempts != DefaultMaxAttempts || p.ClientID != DefaultClientID {
		t.Errorf("pipeline defaults: %+v", p)
	}
}
