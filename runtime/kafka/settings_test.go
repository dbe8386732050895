package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
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
