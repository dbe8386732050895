package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// This file is the one place where a guarantee becomes sarama settings.
// Every sarama client eventgen creates has a role; for each role, apply
// sets what the guarantee needs before Config.Tune runs, and rules check
// after Tune every setting that Tune must not change, naming it ("at-least-
// once requires acks=all (Producer.RequiredAcks=WaitForAll), got 1").

// role is one kind of sarama client eventgen creates.
type role int

const (
	// atMostOnceProducer: NewAtMostOnceProducer. acks=0, no retries.
	atMostOnceProducer role = iota + 1
	// idempotentProducer: NewAtLeastOnceProducer. Idempotent, acks=all.
	idempotentProducer
	// transactionalProducer: NewTransactionalProducer and a pipeline's
	// output. Idempotent with a transactional ID.
	transactionalProducer
	// deadLetterProducer: a Consumer's dead letters. Idempotent, acks=all,
	// outside transactions.
	deadLetterProducer
	// groupConsumer: a Consumer. read_committed; offsets committed by
	// eventgen, in order.
	groupConsumer
	// readCommittedConsumer: an exactly-once pipeline's input.
	// read_committed, offsets committed only in transactions, eager
	// rebalancing.
	readCommittedConsumer
	// pipelineConsumer: an at-least-once pipeline's input. As
	// readCommittedConsumer, offsets committed by eventgen after the
	// outputs' acknowledgements.
	pipelineConsumer
)

// identity is what varies per instance rather than per role: the names a
// client takes from the configuration, and the fields they come from (for
// the messages).
type identity struct {
	clientIDSuffix       string        // appended to Config.ClientID: a second client of one process gets its own
	transactionalID      string        // transactional producers
	transactionalIDField string        // e.g. "ProducerConfig.TransactionalID"
	instanceID           string        // group consumers: static membership, "" for none
	instanceIDField      string        // e.g. "ConsumerConfig.InstanceID"
	txTimeout            time.Duration // transactional producers: Producer.Transaction.Timeout before Tune, 0 for sarama's
	shutdownGrace        time.Duration // group consumers: the handlers' grace (see graceRule)
	shutdownGraceField   string        // e.g. "ConsumerConfig.ShutdownGrace", "" for no grace rule
	batch                int           // group consumers: the records one batch of a partition takes (ConsumerConfig.MaxBatch)
}

// roleSpec is one row of the table: what a role applies, and what it checks
// after Tune.
type roleSpec struct {
	name  string // in conflicts: "<name> requires ..."
	apply func(sc *sarama.Config, id identity)
	rules func(r *rules, sc *sarama.Config, id identity)
}

// spec returns the settings and rules of role r.
func (r role) spec() roleSpec {
	switch r {
	case atMostOnceProducer:
		return roleSpec{
			name: "at-most-once",
			apply: func(sc *sarama.Config, _ identity) {
				sc.Producer.RequiredAcks = sarama.NoResponse
				sc.Producer.Retry.Max = 0
				sc.Producer.Return.Errors = true
				sc.Producer.Return.Successes = false
				// The producer's own queue in front of sarama has as many.
				sc.ChannelBufferSize = 4096
			},
			// Raising acks does not weaken at-most-once: no rule for it.
			rules: func(r *rules, sc *sarama.Config, _ identity) {
				r.require(sc.Producer.Retry.Max == 0, "Producer.Retry.Max=0 (a retried record may be written twice), got %d", sc.Producer.Retry.Max)
				r.require(!sc.Producer.Idempotent, "Producer.Idempotent=false (use NewAtLeastOnceProducer)")
				r.require(sc.Producer.Transaction.ID == "", "no Producer.Transaction.ID (use NewTransactionalProducer)")
				r.require(sc.Producer.Return.Errors, "Producer.Return.Errors=true (drops are counted)")
				r.require(!sc.Producer.Return.Successes, "Producer.Return.Successes=false")
			},
		}
	case idempotentProducer:
		return roleSpec{
			name: "at-least-once",
			apply: func(sc *sarama.Config, _ identity) {
				setIdempotent(sc)
				sc.Producer.Retry.Backoff = 100 * time.Millisecond
			},
			rules: func(r *rules, sc *sarama.Config, _ identity) {
				idempotentRules(r, sc)
				r.require(sc.Producer.Transaction.ID == "", "no Producer.Transaction.ID (use NewTransactionalProducer)")
			},
		}
	case transactionalProducer:
		return roleSpec{
			name: "exactly-once",
			apply: func(sc *sarama.Config, id identity) {
				setIdempotent(sc)
				sc.Producer.Transaction.ID = id.transactionalID
				if id.txTimeout > 0 {
					sc.Producer.Transaction.Timeout = id.txTimeout
				}
			},
			rules: func(r *rules, sc *sarama.Config, id identity) {
				r.require(sc.Producer.Transaction.ID == id.transactionalID, "Producer.Transaction.ID=%q (%s), got %q", id.transactionalID, id.transactionalIDField, sc.Producer.Transaction.ID)
				idempotentRules(r, sc)
			},
		}
	case deadLetterProducer:
		return roleSpec{
			name:  "the dead-letter producer",
			apply: func(sc *sarama.Config, _ identity) { setIdempotent(sc) },
			rules: func(r *rules, sc *sarama.Config, _ identity) {
				idempotentRules(r, sc)
				r.require(sc.Producer.Transaction.ID == "", "no Producer.Transaction.ID (dead letters are written outside transactions)")
			},
		}
	case groupConsumer:
		return roleSpec{
			name:  "the consumer",
			apply: func(sc *sarama.Config, id identity) { setGroupConsumer(sc, id) },
			rules: func(r *rules, sc *sarama.Config, id identity) { groupConsumerRules(r, sc, id) },
		}
	case readCommittedConsumer:
		return pipelineInput("an exactly-once pipeline")
	case pipelineConsumer:
		return pipelineInput("an at-least-once pipeline")
	}
	// Unreachable (roles are this file's constants), but an error beats a
	// panic in a library if a new role is ever left out of the switch.
	return roleSpec{
		name:  fmt.Sprintf("client role %d", int(r)),
		apply: func(*sarama.Config, identity) {},
		rules: func(rs *rules, _ *sarama.Config, _ identity) {
			rs.require(false, "a role that settings.go knows (an eventgen bug: please report it)")
		},
	}
}

// pipelineInput is the role of a pipeline's input consumer: a group member
// that reads committed records, and rebalances eagerly, because a pipeline
// works in rounds that span all its partitions and commits the open round
// when its session ends.
func pipelineInput(name string) roleSpec {
	return roleSpec{
		name: name,
		apply: func(sc *sarama.Config, id identity) {
			setGroupConsumer(sc, id)
			// Waits out UNSTABLE_OFFSET_COMMIT while a predecessor's
			// transaction with offsets is being completed.
			sc.Consumer.Offsets.Retry.Max = 20
		},
		rules: func(r *rules, sc *sarama.Config, id identity) {
			groupConsumerRules(r, sc, id)
			// With cooperative-sticky, sessions do not end for partitions
			// that move incrementally, so the open round would not be
			// committed before they are released. sarama's deprecated
			// Strategy wins over GroupStrategies when set: check both.
			for _, s := range sc.Consumer.Group.Rebalance.GroupStrategies {
				r.require(s == nil || s.Name() != sarama.CooperativeStickyBalanceStrategyName, "an eager rebalance strategy in Consumer.Group.Rebalance.GroupStrategies, got %s", sarama.CooperativeStickyBalanceStrategyName)
			}
			if s := sc.Consumer.Group.Rebalance.Strategy; s != nil {
				r.require(s.Name() != sarama.CooperativeStickyBalanceStrategyName, "an eager rebalance strategy in Consumer.Group.Rebalance.Strategy (deprecated, and it wins over GroupStrategies), got %s", sarama.CooperativeStickyBalanceStrategyName)
			}
		},
	}
}

// setIdempotent applies the idempotent producer's settings, shared by the
// at-least-once, transactional and dead-letter producers: acks=all, one
// request in flight per broker, retries, and both result channels.
func setIdempotent(sc *sarama.Config) {
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	// After a dropped connection sarama looks the partition's leader up
	// once before it retries a batch, and fails the batch (retries left or
	// not) if that lookup fails. A leader election in progress answers
	// metadata requests without a leader for a while: give the lookup
	// itself room (10 tries, 250 ms apart by default) so that the
	// producer's retries, not the lookup, decide when to give up.
	sc.Metadata.Retry.Max = 10
}

// idempotentRules checks the settings of setIdempotent.
func idempotentRules(r *rules, sc *sarama.Config) {
	r.require(sc.Producer.RequiredAcks == sarama.WaitForAll, "acks=all (Producer.RequiredAcks=WaitForAll), got %d", sc.Producer.RequiredAcks)
	r.require(sc.Producer.Idempotent, "Producer.Idempotent=true (retries would duplicate records)")
	r.require(sc.Net.MaxOpenRequests == 1, "Net.MaxOpenRequests=1, got %d", sc.Net.MaxOpenRequests)
	r.require(sc.Producer.Retry.Max >= 1, "Producer.Retry.Max>=1, got %d", sc.Producer.Retry.Max)
	r.require(sc.Producer.Return.Successes && sc.Producer.Return.Errors, "Producer.Return.Successes=true and Producer.Return.Errors=true")
}

// setGroupConsumer applies the settings of every eventgen group member:
// records of aborted transactions are never read (read_committed: any
// producer's, not only eventgen's); eventgen commits offsets itself, in
// order; a new group starts at the oldest record; errors are returned (and
// logged); static membership comes from the InstanceID field.
func setGroupConsumer(sc *sarama.Config, id identity) {
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	sc.Consumer.Group.InstanceId = id.instanceID
	// A partition's batch is what its claim has buffered (nextBatch does
	// not wait for more): the buffer holds a whole batch, so that a
	// dedup store's transaction covers up to MaxBatch records rather than
	// sarama's default 256.
	sc.ChannelBufferSize = max(sc.ChannelBufferSize, id.batch)
}

// groupConsumerRules checks the settings of setGroupConsumer that Tune must
// not change.
func groupConsumerRules(r *rules, sc *sarama.Config, id identity) {
	r.require(sc.Consumer.IsolationLevel == sarama.ReadCommitted, "Consumer.IsolationLevel=ReadCommitted (records of aborted transactions must not be read), got %d", sc.Consumer.IsolationLevel)
	r.require(!sc.Consumer.Offsets.AutoCommit.Enable, "Consumer.Offsets.AutoCommit.Enable=false (eventgen commits offsets itself: in order, or in transactions)")
	r.require(sc.Consumer.Group.InstanceId == id.instanceID, "Consumer.Group.InstanceId=%q (set static membership with %s), got %q", id.instanceID, id.instanceIDField, sc.Consumer.Group.InstanceId)
	if id.shutdownGraceField != "" {
		graceRule(r, sc, id.shutdownGrace, id.shutdownGraceField)
	}
}

// graceRule checks, after Tune, a group member's shutdown grace against
// its rebalance timeout: a revoked partition's handler keeps a live context
// for grace, is cancelled, and is abandoned only one more grace later; until
// then the member does not rejoin, and the coordinator removes a member that
// has not rejoined within Consumer.Group.Rebalance.Timeout (the group then
// rebalances again when it comes back). graceField names the grace.
func graceRule(r *rules, sc *sarama.Config, grace time.Duration, graceField string) {
	rt := sc.Consumer.Group.Rebalance.Timeout
	r.require(2*grace < rt, "2×%s < Consumer.Group.Rebalance.Timeout (a revoked partition's handler is abandoned only 2×%s after the rebalance starts, and a member that has not rejoined by Rebalance.Timeout is removed from the group), got 2×%v = %v ≥ %v", graceField, graceField, grace, 2*grace, rt)
}

// pipelineTimingRules checks, after Tune, the pipeline's transaction
// timeout (pc, its transactional producer) against the rebalance timeout of
// its input consumer (sc). A rebalance waits for the member to end its open
// transaction (commit it, or abort it when the generation changed) before it
// rejoins; a transaction may stay open until Producer.Transaction.Timeout,
// when the coordinator aborts it. With a longer transaction timeout than
// Consumer.Group.Rebalance.Timeout, a member still legitimately inside its
// transaction is removed from the group: the commit fails on the old
// generation and the whole group rebalances again.
func pipelineTimingRules(r *rules, sc, pc *sarama.Config) {
	tt, rt := pc.Producer.Transaction.Timeout, sc.Consumer.Group.Rebalance.Timeout
	r.require(tt <= rt, "Producer.Transaction.Timeout ≤ Consumer.Group.Rebalance.Timeout (a rebalance waits for the open transaction to end before the member rejoins, and removes a member that has not rejoined by Rebalance.Timeout), got %v > %v", tt, rt)
}

// rules collects the conflicts of one role's configuration.
type rules struct {
	role string
	errs []error
}

// require records a conflict unless ok; format says what the role requires.
func (r *rules) require(ok bool, format string, args ...any) {
	if !ok {
		r.errs = append(r.errs, conflict(r.role, format, args...))
	}
}

// saramaConfig returns the sarama configuration of a client of role r:
// eventgen's base (protocol version, client ID, the Java-compatible murmur2
// partitioner), the role's settings, c.Tune, then the role's rules (every
// broken one named in one error matching ErrConflictingConfig), then
// sarama's own validation. c must have its defaults (withDefaults).
func (c Config) saramaConfig(r role, id identity) (*sarama.Config, error) {
	sc, errs := c.tunedConfig(r, id)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return saramaValidated(r, sc)
}

// tunedConfig is saramaConfig before sarama's validation: the configuration
// after Tune, and the conflicts with the role's rules, so that a caller can
// check rules between two clients and report every conflict at once.
func (c Config) tunedConfig(r role, id identity) (*sarama.Config, []error) {
	spec := r.spec()
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.ClientID = c.ClientID + id.clientIDSuffix
	// Same partition as the Java client and librdkafka's murmur2_random for
	// the same key, so producers in other languages agree on ordering.
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	spec.apply(sc, id)
	if c.Tune != nil {
		c.Tune(sc)
	}
	rs := rules{role: spec.name}
	spec.rules(&rs, sc, id)
	return sc, rs.errs
}

// saramaValidated runs sarama's own validation of a role's configuration.
func saramaValidated(r role, sc *sarama.Config) (*sarama.Config, error) {
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("eventgen: invalid sarama configuration for %s: %w", r.spec().name, err)
	}
	return sc, nil
}
