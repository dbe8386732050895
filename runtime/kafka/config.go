package kafka

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/event"
)

// The configuration of producers, consumers and pipelines. Each struct
// documents the default of every field; a zero field means "the default".
// A constructor checks the whole configuration at once and returns one
// error naming every invalid field (matching ErrInvalidConfig), then fills
// the defaults. Settings that Tune changes are checked after Tune runs (see
// settings.go and ErrConflictingConfig).

// Defaults of the configuration fields, see Config, ConsumerConfig and
// PipelineConfig (and RetryPolicy for the retry defaults).
const (
	DefaultClientID       = "eventgen"
	DefaultCloseTimeout   = 10 * time.Second
	DefaultMaxBatch       = 500
	DefaultCommitInterval = time.Second
	DefaultShutdownGrace  = 10 * time.Second
	// DefaultPipelineCommitInterval is how often a pipeline commits its
	// round: Kafka Streams' commit.interval.ms under exactly-once.
	DefaultPipelineCommitInterval = 100 * time.Millisecond
	// DefaultPipelineBatchSize is the most inputs a pipeline's round
	// holds before it commits without waiting for the interval.
	DefaultPipelineBatchSize = 10000
	// DefaultPipelineTransactionTimeout is the Producer.Transaction.Timeout
	// of a pipeline's transactional producer (sarama's default is 1 min),
	// Kafka Streams' default under exactly-once (KIP-447): no longer than
	// sarama's 10 s Consumer.Group.Session.Timeout. Tune may change it;
	// RunPipeline checks it against the group's timeouts.
	DefaultPipelineTransactionTimeout = 10 * time.Second
)

// ProtocolVersion returns the protocol version eventgen asks sarama to speak.
// It is at least 2.5 for KIP-447 (consumer group metadata in transactions)
// and is accepted by Kafka 3.x/4.x brokers and by kfake. Hand-written sarama
// clients that talk to the same topics (tests, benchmarks) use it too.
func ProtocolVersion() sarama.KafkaVersion { return sarama.V3_6_0_0 }

// Config holds what every eventgen producer and consumer needs. The zero value
// is not usable: Brokers is required.
type Config struct {
	// Brokers lists the bootstrap brokers as host:port. Required: no
	// default.
	Brokers []string
	// ClientID is the Kafka client.id. Default "eventgen" (DefaultClientID).
	// The dead-letter producer of a consumer and the transactional producer
	// of a pipeline append "-dlq" and "-txn".
	ClientID string
	// Logger receives diagnostics. Default: a logger that discards.
	Logger *slog.Logger
	// Metrics receives counters. Default: a no-op implementation.
	Metrics Metrics
	// Tune, when set, adjusts the sarama configuration after eventgen has
	// applied its defaults and the guarantee's settings. It is for timeouts,
	// batching, TLS, SASL and the like; settings that would weaken the
	// guarantee are rejected by name after Tune runs (for example
	// "at-least-once requires acks=all"). Default: nil.
	Tune func(*sarama.Config)
	// CloseTimeout bounds how long a producer's Close waits for queued and
	// in-flight records (a dead broker would otherwise hold it for sarama's
	// retry and dial timeouts per batch). Records still pending then are
	// abandoned: dropped (at-most-once) or failed (at-least-once Sends get
	// an error). Default 10 s (DefaultCloseTimeout); must not be negative.
	CloseTimeout time.Duration
}

// ProducerConfig configures a generated Producer and the transactional
// producer: what every producer needs, plus the transactional ID that
// exactly-once events are sent under. The generated NewProducer takes it for
// every schema, so that its signature does not change when a schema gains
// or loses an exactly-once event.
type ProducerConfig struct {
	Config
	// TransactionalID names this instance's transactional producer. It is
	// required by NewTransactionalProducer (so when the schema has
	// exactly-once events) and unused otherwise: no default. Keep it stable
	// across restarts of one instance and unique among instances: a
	// restarted instance then aborts what its predecessor left open and
	// fences it if it still runs.
	TransactionalID string
}

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	Config
	// GroupID is the Kafka consumer group. Required: no default.
	GroupID string
	// InstanceID, when set, makes this process a static member of the
	// group (group.instance.id): a restart with the same InstanceID takes
	// its partitions back without waiting for the session timeout, and an
	// older process still running with the same InstanceID is fenced.
	// Default "": dynamic membership.
	InstanceID string
	// Retry bounds at-least-once handler retries before dead-lettering.
	// Default: see RetryPolicy.
	Retry RetryPolicy
	// DisableDeadLetter turns off the dead-letter topic for at-least-once
	// handlers. A record that exhausts its retries (or fails to decode)
	// then stops Run with an error and is not committed: nothing is
	// skipped. Default false: dead-lettering is on.
	DisableDeadLetter bool
	// MaxBatch caps how many buffered at-most-once records are committed
	// together before their handlers run, how many at-least-once records
	// of one partition are handled between two commits (the most a crash
	// makes a partition redeliver), and how many records of a partition go
	// to a dedup store in one call (one transaction of a PostgreSQL
	// store). Dedup stores are chosen per event at registration
	// (HandleDeduped, HandleExactlyOnce, and their Batch forms, whose
	// batch handler gets a whole batch's new events). The consumer buffers
	// at least MaxBatch records per partition (sarama's ChannelBufferSize)
	// so that a batch can fill. Default 500 (DefaultMaxBatch); must not be
	// negative.
	MaxBatch int
	// CommitInterval is how long an at-least-once partition under constant
	// load goes between commits; a partition that has nothing buffered
	// commits at once. Default 1s (DefaultCommitInterval); must not be
	// negative.
	CommitInterval time.Duration
	// ShutdownGrace is how long in-flight handlers keep a live context
	// after their partition's session ends: on shutdown (Run's context is
	// done) and on revocation of the partition (a rebalance, which waits
	// for every member's handlers). Then the handlers' context is
	// cancelled; a record whose handler fails after that is not committed
	// and is redelivered to the partition's next owner. A handler that has
	// still not returned one more ShutdownGrace later is abandoned: its
	// record is left uncommitted and the consumer moves on (Run returns,
	// the rebalance completes), while its goroutine runs until it returns,
	// since Go cannot stop it. Default 10 s (DefaultShutdownGrace); must
	// not be negative; a tiny value such as time.Nanosecond cancels at once.
	// Run rejects 2×ShutdownGrace ≥ Consumer.Group.Rebalance.Timeout (after
	// Tune; sarama's default 60 s), matching ErrConflictingConfig: a handler
	// abandoned only after two graces must not hold a rebalance past the
	// point where the coordinator removes the member.
	ShutdownGrace time.Duration
}

// PipelineConfig configures RunPipeline and RunAtLeastOncePipeline.
type PipelineConfig struct {
	Config
	// GroupID is the consumer group of the input topic. Required: no
	// default.
	GroupID string
	// TransactionalID identifies this pipeline process to the transaction
	// coordinator. Required by RunPipeline (exactly-once), unused by
	// RunAtLeastOncePipeline: no default. It must be unique among the
	// running instances of the pipeline and stable across restarts of one
	// instance: a restart with the same TransactionalID aborts the
	// transaction its predecessor left open and fences that predecessor if
	// it is still running.
	TransactionalID string
	// InstanceID, when set, makes the process a static group member (see
	// ConsumerConfig.InstanceID). Using the TransactionalID here fences a
	// zombie twice: by the group and by the transaction coordinator.
	// Default "": dynamic membership.
	InstanceID string
	// Retry bounds handler retries before the input record is
	// dead-lettered (inside the transaction). Default: see RetryPolicy.
	Retry RetryPolicy
	// CommitInterval is how often the pipeline commits what it consumed
	// since the last commit, across every partition it holds: one
	// transaction (exactly-once), or the outputs' acknowledgements then
	// the offsets (at-least-once). It bounds the latency from input to
	// visible output. Default 100 ms (DefaultPipelineCommitInterval, Kafka
	// Streams' default under exactly-once); must not be negative.
	CommitInterval time.Duration
	// BatchSize is the most inputs one commit covers: a round that
	// reaches it commits at once, without waiting for CommitInterval, and
	// handlers wait while a commit runs and two rounds more are ready. A
	// claim adds the records buffered for its partition as one block (up to
	// 100), which is not split across rounds: a block that does not fit
	// commits the open round at once too. The inputs of the open round are
	// kept in memory, for replay after an aborted transaction. Default
	// 10,000 (DefaultPipelineBatchSize); must not be negative.
	BatchSize int
	// CommitWhenIdle commits the open round as soon as every partition's
	// buffered records are handled (each claim waits for its next record),
	// instead of waiting for CommitInterval: the policy of a hand-written
	// loop that commits whatever it has read. Outputs become visible sooner
	// when the input pauses or ends, at the cost of more transactions under
	// light load (up to one per fetch). CommitInterval still bounds a round
	// that keeps growing. Default false (Kafka Streams' policy: size or
	// interval).
	CommitWhenIdle bool
	// Events are the schema's declared events, for routing input records by
	// ce_type (see DeclareEvents): a record of another declared event is
	// skipped (committed in the transaction, counted as Skipped), an
	// unknown ce_type is dead-lettered, a record without ce_type is the
	// input event only if the input topic carries no other declared event.
	// Generated Run functions add their schema's events. Default: only the
	// input event is declared.
	Events []*event.Type
	// ShutdownGrace is how long in-flight handlers keep a live context
	// after their partition's session ends: on shutdown (Run's context is
	// done) and on revocation of the partition (a rebalance, which waits
	// for every member's handlers). Then the handlers' context is
	// cancelled; an input whose handler fails after that is not committed
	// (nor anything after it in its partition): it is read again by the
	// partition's next owner. What finished before is committed before the
	// partitions are released. A handler that has still not returned one
	// more ShutdownGrace later is abandoned: its input is not committed and
	// the pipeline moves on (RunPipeline returns, the rebalance completes),
	// while its goroutine runs until it returns, since Go cannot stop it.
	// Default 10 s (DefaultShutdownGrace); must not be negative; a tiny
	// value such as time.Nanosecond cancels at once. The commit of the open
	// round when the session ends gets ShutdownGrace too: a broker that
	// does not answer it by then stops the pipeline with ErrProducerFatal
	// (the coordinator settles the transaction; see docs/consumers.md).
	// RunPipeline rejects 2×ShutdownGrace ≥ Consumer.Group.Rebalance.Timeout
	// (after Tune; sarama's default 60 s), matching ErrConflictingConfig, as
	// Run does for consumers. It also checks, after Tune, the transactional
	// producer's Producer.Transaction.Timeout (default 10 s for pipelines,
	// DefaultPipelineTransactionTimeout) ≤ Consumer.Group.Rebalance.Timeout,
	// and logs a warning when it is longer than
	// Consumer.Group.Session.Timeout (see docs/consumers.md).
	ShutdownGrace time.Duration

	hooks *pipelineHooks // tests only
}

// problems collects what is wrong with a configuration, each problem naming
// its field, so that one validation reports them all.
type problems []error

// add records that field (e.g. "ConsumerConfig.GroupID") is invalid.
func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
}

// notNegative records field if v is negative.
func notNegative[T int | time.Duration](ps *problems, field string, v T) {
	if v < 0 {
		ps.add(field, "must not be negative, got %v", v)
	}
}

// err returns every problem joined, or nil.
func (ps problems) err() error { return errors.Join(ps...) }

// check records the problems of c; owner is the name of the struct c is
// part of, for the messages.
func (c Config) check(ps *problems, owner string) {
	if len(c.Brokers) == 0 {
		ps.add(owner+".Brokers", "is empty: at least one host:port is required")
	}
	notNegative(ps, owner+".CloseTimeout", c.CloseTimeout)
}

// validate reports every invalid field of c.
func (c Config) validate() error {
	var ps problems
	c.check(&ps, "Config")
	return ps.err()
}

// discardLogger is the default Logger. It is never reassigned, and a
// slog.Logger is safe for concurrent use.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// withDefaults returns c with the zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Logger == nil {
		c.Logger = discardLogger
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	return c
}

// validate reports every invalid field of a transactional producer's c.
func (c ProducerConfig) validate() error {
	var ps problems
	c.Config.check(&ps, "ProducerConfig")
	if c.TransactionalID == "" {
		ps.add("ProducerConfig.TransactionalID", "is required by the transactional producer")
	}
	return ps.err()
}

// validate reports every invalid field of c.
func (c ConsumerConfig) validate() error {
	var ps problems
	c.Config.check(&ps, "ConsumerConfig")
	if c.GroupID == "" {
		ps.add("ConsumerConfig.GroupID", "is required")
	}
	c.Retry.check(&ps, "ConsumerConfig.Retry")
	notNegative(&ps, "ConsumerConfig.MaxBatch", c.MaxBatch)
	notNegative(&ps, "ConsumerConfig.CommitInterval", c.CommitInterval)
	notNegative(&ps, "ConsumerConfig.ShutdownGrace", c.ShutdownGrace)
	return ps.err()
}

// withDefaults returns c with the zero fields set to their defaults.
func (c ConsumerConfig) withDefaults() ConsumerConfig {
	c.Config = c.Config.withDefaults()
	c.Retry = c.Retry.withDefaults()
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	return c
}

// validate reports every invalid field of c, for an exactly-once pipeline
// when eos is set and an at-least-once one otherwise.
func (c PipelineConfig) validate(eos bool) error {
	var ps problems
	c.Config.check(&ps, "PipelineConfig")
	if c.GroupID == "" {
		ps.add("PipelineConfig.GroupID", "is required")
	}
	if eos && c.TransactionalID == "" {
		ps.add("PipelineConfig.TransactionalID", "is required by an exactly-once pipeline")
	}
	c.Retry.check(&ps, "PipelineConfig.Retry")
	notNegative(&ps, "PipelineConfig.CommitInterval", c.CommitInterval)
	notNegative(&ps, "PipelineConfig.BatchSize", c.BatchSize)
	notNegative(&ps, "PipelineConfig.ShutdownGrace", c.ShutdownGrace)
	return ps.err()
}

// withDefaults returns c with the zero fields set to their defaults.
func (c PipelineConfig) withDefaults() PipelineConfig {
	c.Config = c.Config.withDefaults()
	c.Retry = c.Retry.withDefaults()
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultPipelineCommitInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultPipelineBatchSize
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	return c
}
