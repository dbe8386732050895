package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// TestRoleSettingsPassTheirRules checks that every role's own settings
// satisfy its rules and sarama's validation when Tune changes nothing.
func TestRoleSettingsPassTheirRules(t *testing.T) {
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, Tune: func(*sarama.Config) {}}.withDefaults()
	id := identity{transactionalID: "tx", transactionalIDField: "X.TransactionalID", instanceID: "i", instanceIDField: "X.InstanceID"}
	for r := atMostOnceProducer; r <= readCommittedConsumer; r++ {
		if _, err := cfg.saramaConfig(r, id); err != nil {
			t.Errorf("%s: %v", r.spec().name, err)
		}
	}
}

// TestRoleRulesNameEveryConflict checks that all broken rules of one role
// are reported at once, each matching ErrConflictingConfig.
func TestRoleRulesNameEveryConflict(t *testing.T) {
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, Tune: func(sc *sarama.Config) {
		sc.Consumer.Offsets.AutoCommit.Enable = true
		sc.Consumer.Group.InstanceId = "other"
		sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	}}.withDefaults()
	_, err := cfg.saramaConfig(readCommittedConsumer, identity{instanceID: "mine", instanceIDField: "PipelineConfig.InstanceID"})
	if !errors.Is(err, ErrConflictingConfig) {
		t.Fatalf("err = %v, want ErrConflictingConfig", err)
	}
	for _, want := range []string{
		"an exactly-once pipeline requires Consumer.IsolationLevel=ReadCommitted",
		"an exactly-once pipeline requires Consumer.Offsets.AutoCommit.Enable=false",
		`an exactly-once pipeline requires Consumer.Group.InstanceId="mine" (set static membership with PipelineConfig.InstanceID), got "other"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}

// TestPipelineRejectsCooperativeSticky is a regression test: the
// cooperative-sticky balancer was caught in GroupStrategies but not in
// sarama's deprecated Rebalance.Strategy, which wins when set. The check
// runs before connecting, so no broker is needed.
func TestPipelineRejectsCooperativeSticky(t *testing.T) {
	in := testEventType("Input", "in", event.ExactlyOnce)
	out := testEventType("Output", "out", event.ExactlyOnce)
	for name, tune := range map[string]func(*sarama.Config){
		"deprecated Strategy": func(sc *sarama.Config) {
			sc.Consumer.Group.Rebalance.Strategy = sarama.NewBalanceStrategyCooperativeSticky() // deprecated, and wins over GroupStrategies
		},
		"GroupStrategies": func(sc *sarama.Config) {
			sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := PipelineConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}, Tune: tune}, GroupID: "g", TransactionalID: "tx"}
			err := RunPipeline(context.Background(), cfg, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
			if !errors.Is(err, ErrConflictingConfig) || !strings.Contains(err.Error(), "cooperative-sticky") {
				t.Fatalf("err = %v, want ErrConflictingConfig naming cooperative-sticky", err)
			}
		})
	}
}

// TestPipelineTimeoutRules: the pipeline's transaction timeout and its
// handlers' shutdown grace are checked against the input group's rebalance
// timeout after Tune, before connecting (no broker: 127.0.0.1:1), and every
// broken rule is named at once, with the fields and the values.
func TestPipelineTimeoutRules(t *testing.T) {
	in := testEventType("Input", "in", event.ExactlyOnce)
	out := testEventType("Output", "out", event.ExactlyOnce)
	txnRule := "an exactly-once pipeline requires Producer.Transaction.Timeout ≤ Consumer.Group.Rebalance.Timeout"
	graceRule := "an exactly-once pipeline requires 2×PipelineConfig.ShutdownGrace < Consumer.Group.Rebalance.Timeout"
	for _, tc := range []struct {
		name  string
		grace time.Duration
		tune  func(*sarama.Config)
		want  []string // substrings of the error; nil: no error
	}{
		{name: "defaults", tune: func(*sarama.Config) {}},
		{name: "FastTune", tune: kafkatest.FastTune},
		{name: "transaction equal to rebalance timeout", tune: func(sc *sarama.Config) {
			sc.Producer.Transaction.Timeout = sc.Consumer.Group.Rebalance.Timeout
		}},
		{name: "transaction longer than rebalance timeout", tune: func(sc *sarama.Config) {
			sc.Producer.Transaction.Timeout = 90 * time.Second
		}, want: []string{txnRule, "got 1m30s > 1m0s"}},
		{name: "rebalance timeout lowered under the transaction timeout", tune: func(sc *sarama.Config) {
			sc.Consumer.Group.Rebalance.Timeout = 5 * time.Second
		}, want: []string{txnRule, "got 10s > 5s", graceRule, "got 2×10s = 20s ≥ 5s"}},
		{name: "grace at half the rebalance timeout", grace: 30 * time.Second, tune: func(*sarama.Config) {},
			want: []string{graceRule, "got 2×30s = 1m0s ≥ 1m0s"}},
		{name: "grace under half the rebalance timeout", grace: 29 * time.Second, tune: func(*sarama.Config) {}},
		{name: "with another conflict", grace: 40 * time.Second, tune: func(sc *sarama.Config) {
			sc.Consumer.IsolationLevel = sarama.ReadUncommitted
			sc.Producer.Transaction.Timeout = 2 * time.Minute
		}, want: []string{"Consumer.IsolationLevel=ReadCommitted", txnRule, "got 2m0s > 1m0s", graceRule, "got 2×40s = 1m20s ≥ 1m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := PipelineConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}, Tune: tc.tune}, GroupID: "g", TransactionalID: "tx", ShutdownGrace: tc.grace}
			p, err := newPipeline(cfg, event.ExactlyOnce, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
			if err != nil {
				t.Fatal(err)
			}
			_, pc, err := p.saramaConfigs()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("saramaConfigs: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConflictingConfig) {
				t.Fatalf("err = %v, want ErrConflictingConfig", err)
			}
			if pc != nil {
				t.Error("a producer configuration returned with the error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
			// RunPipeline reports the same before connecting.
			if rerr := RunPipeline(context.Background(), cfg, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0)); rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("RunPipeline = %v, want %v", rerr, err)
			}
		})
	}
}

// TestPipelineDefaultTransactionTimeout: a pipeline's transactional
// producer defaults to 10 s (Kafka Streams' exactly-once default, within
// sarama's 10 s session timeout), and Tune still decides.
func TestPipelineDefaultTransactionTimeout(t *testing.T) {
	in := testEventType("Input", "in", event.ExactlyOnce)
	out := testEventType("Output", "out", event.ExactlyOnce)
	for want, tune := range map[time.Duration]func(*sarama.Config){
		DefaultPipelineTransactionTimeout: func(*sarama.Config) {},
		30 * time.Second:                  func(sc *sarama.Config) { sc.Producer.Transaction.Timeout = 30 * time.Second },
	} {
		p, err := newPipeline(PipelineConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}, Tune: tune}, GroupID: "g", TransactionalID: "tx"}, event.ExactlyOnce, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
		if err != nil {
			t.Fatal(err)
		}
		sc, pc, err := p.saramaConfigs()
		if err != nil {
			t.Fatal(err)
		}
		if got := pc.Producer.Transaction.Timeout; got != want {
			t.Errorf("Producer.Transaction.Timeout = %v, want %v", got, want)
		}
		if want == DefaultPipelineTransactionTimeout && pc.Producer.Transaction.Timeout > sc.Consumer.Group.Session.Timeout {
			t.Errorf("default transaction timeout %v is longer than the default session timeout %v", pc.Producer.Transaction.Timeout, sc.Consumer.Group.Session.Timeout)
		}
	}
	// The transactional producer of NewTransactionalProducer keeps sarama's.
	sc, err := Config{Brokers: []string{"127.0.0.1:1"}}.withDefaults().saramaConfig(transactionalProducer, identity{transactionalID: "tx"})
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Producer.Transaction.Timeout; got != time.Minute {
		t.Errorf("transactional producer: Producer.Transaction.Timeout = %v, want sarama's 1m0s", got)
	}
}

// TestConsumerShutdownGraceRule: a consumer whose 2×ShutdownGrace reaches
// the rebalance timeout is rejected by Run before connecting, naming both
// fields and their values; the default passes the check.
func TestConsumerShutdownGraceRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		tune  func(*sarama.Config)
		want  string
	}{
		{name: "grace", grace: 45 * time.Second, want: "the consumer requires 2×ConsumerConfig.ShutdownGrace < Consumer.Group.Rebalance.Timeout (a revoked partition's handler is abandoned only 2×ConsumerConfig.ShutdownGrace after the rebalance starts, and a member that has not rejoined by Rebalance.Timeout is removed from the group), got 2×45s = 1m30s ≥ 1m0s"},
		{name: "rebalance timeout", tune: func(sc *sarama.Config) { sc.Consumer.Group.Rebalance.Timeout = 20 * time.Second }, want: "got 2×10s = 20s ≥ 20s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}, Tune: tc.tune}, GroupID: "grace", ShutdownGrace: tc.grace})
			if err != nil {
				t.Fatal(err)
			}
			HandleAtLeastOnce(c, testEventType("Paid", "grace", event.AtLeastOnce), decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
			ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(10*time.Second))
			defer cancel()
			err = c.Run(ctx)
			if !errors.Is(err, ErrConflictingConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want ErrConflictingConfig naming %q", err, tc.want)
			}
		})
	}
	// The default grace (10 s) passes against sarama's 60 s.
	cfg := ConsumerConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}}, GroupID: "g"}.withDefaults()
	if _, err := cfg.saramaConfig(groupConsumer, identity{shutdownGrace: cfg.ShutdownGrace, shutdownGraceField: "ConsumerConfig.ShutdownGrace"}); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// A group consumer's claims buffer a whole MaxBatch (a batch is what is
// buffered), and never less than sarama's default.
func TestConsumerBuffersAWholeBatch(t *testing.T) {
	for _, tc := range []struct{ maxBatch, want int }{{0, DefaultMaxBatch}, {2000, 2000}, {10, 256}} {
		cfg := ConsumerConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}}, GroupID: "g", MaxBatch: tc.maxBatch}.withDefaults()
		sc, err := cfg.saramaConfig(groupConsumer, identity{batch: cfg.MaxBatch})
		if err != nil {
			t.Fatal(err)
		}
		if sc.ChannelBufferSize != tc.want {
			t.Errorf("MaxBatch %d: ChannelBufferSize %d, want %d", tc.maxBatch, sc.ChannelBufferSize, tc.want)
		}
	}
}
