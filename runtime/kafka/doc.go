// Package kafka is the Kafka part of the eventgen runtime, built on
// github.com/IBM/sarama: one producer per delivery guarantee, a group
// consumer with typed handlers, exactly-once consume-transform-produce
// pipelines, dead-letter topics, CloudEvents headers, and one style of
// configuration for all of them. Generated <schema>_kafka.gen.go files call
// it; event types, the wire codecs and the header names are in
// runtime/event, which needs no Kafka client.
//
// The examples show the calls generated code makes. OrderPlaced,
// PaymentCaptured and ReceiptIssued stand for generated event types and
// orderPlacedMeta and its siblings for their event.Type; with a generated
// package you write shop.NewProducer, consumer.HandleOrderPlaced and
// shop.RunIssueReceipts instead.
//
// # Configuration
//
// Config holds what every client needs and is embedded in ProducerConfig,
// ConsumerConfig and PipelineConfig. Each field's doc states its default,
// and a zero field takes it. A constructor checks every field at once and
// returns one error that names each invalid one ("ConsumerConfig.GroupID is
// required", "ConsumerConfig.MaxBatch must not be negative, got -1"),
// matching ErrInvalidConfig. Tune adjusts the sarama configuration after
// eventgen's settings; every setting the guarantee depends on is checked
// after it runs, and each conflict is named ("at-least-once requires
// acks=all (Producer.RequiredAcks=WaitForAll), got 1"), matching
// ErrConflictingConfig.
//
//	cfg := kafka.Config{
//		Brokers: []string{"localhost:9092"}, // required
//		Logger:  slog.Default(),             // default: discards
//		Metrics: &kafka.Counters{},          // default: no-op
//		Tune:    func(sc *sarama.Config) { sc.Producer.Flush.Frequency = 5 * time.Millisecond },
//	}
//
// # Producers, one per guarantee
//
// NewAtMostOnceProducer sends with acks=0 and no retries: a record may be
// lost but is never written twice, and Send never waits for the network.
// NewAtLeastOnceProducer sends with an idempotent producer and acks=all:
// Send returns once the record is stored, SendAsync reports the outcome to
// a callback. NewTransactionalProducer writes the records of one
// transaction so that read_committed consumers see all of them or none. A
// producer refuses an event whose schema asks for a stronger guarantee than
// its own (ErrWrongGuarantee).
//
//	p, err := kafka.NewAtLeastOnceProducer(cfg)
//	if err != nil {
//		return err
//	}
//	defer p.Close()
//	err = p.Send(ctx, &OrderPlaced{OrderID: id, Total: total})
//
//	tp, err := kafka.NewTransactionalProducer(kafka.ProducerConfig{Config: cfg, TransactionalID: "billing-1"})
//	...
//	err = tp.InTx(ctx, func(tx *kafka.Tx) error {
//		if err := tx.Send(payment); err != nil {
//			return err // aborts
//		}
//		return tx.Send(receipt) // commits when fn returns nil
//	})
//
// A transaction that failed with ErrTxnAborted can be run again. A
// transactional producer that is fenced by a newer instance with the same
// TransactionalID (ErrFenced) or hits a fatal error (ErrProducerFatal)
// closes itself and returns that error from then on. docs/producers.md
// describes each producer's settings, failure modes and costs.
//
// # The consumer
//
// NewConsumer returns a Consumer of one group. HandleAtMostOnce and
// HandleAtLeastOnce register a typed handler per event type; the record
// types differ per guarantee (AtMostOnceRecord, AtLeastOnceRecord), so a
// handler written for one guarantee does not compile for an event of
// another. Run joins the group and handles records, one at a time per
// partition, in order, until ctx is done; then it gives the handlers in
// flight ConsumerConfig.ShutdownGrace to finish, cancels their context,
// commits what was handled, leaves the group and returns nil.
//
//	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Config: cfg, GroupID: "billing"})
//	if err != nil {
//		return err
//	}
//	kafka.HandleAtLeastOnce(c, &orderPlacedMeta, event.DecodeEvent[OrderPlaced],
//		func(ctx context.Context, e *OrderPlaced, r kafka.AtLeastOnceRecord) error {
//			return bill(ctx, e) // retried on error, then dead-lettered
//		})
//	err = c.Run(ctx)
//
// At-most-once records are committed before their handler runs (a crash
// loses them, nothing runs twice). At-least-once records are committed
// after their handler succeeds, so a crash or rebalance redelivers them:
// register the event with its dedup store (HandleDeduped), or make the
// handler naturally idempotent (HandleAtLeastOnce, dedup store none).
// HandleExactlyOnce consumes exactly-once events into a database: effects,
// dedup keys and offsets in one transaction per batch (runtime/dedup).
// HandleDedupedBatch and HandleExactlyOnceBatch give a batch's new events
// to one handler call, for effects written with one statement; a failing
// call is narrowed down to its event, which fails as a record would.
// Run returns ErrGuaranteeMismatch for wrong registrations, ErrFenced when
// a newer member took over its InstanceID, and ErrDeadLetter when a record
// could be neither handled nor dead-lettered (DisableDeadLetter).
//
// A handler error spends one of the record's attempts; Permanent marks one
// that dead-letters at once; a panic is recovered into a handler error
// (ErrHandlerPanic, stack logged). Failures of the runtime's own
// dependencies (the dead-letter write) are retried without spending
// attempts and counted as InfraRetried.
//
// # Pipelines
//
// RunPipeline consumes exactly-once events, runs a handler on each and
// writes what it emits together with the consumed offsets in one
// transaction per round (everything the member consumed across its
// partitions since the last commit, committed every
// PipelineConfig.CommitInterval or at BatchSize inputs): a read_committed
// reader of the outputs sees each input's outputs exactly once, in input
// order per partition. A failed transaction is aborted and the round sent
// again from memory, without leaving the group. It stops with ErrFenced or
// ErrProducerFatal; restarting it with the same TransactionalID is safe.
// RunAtLeastOncePipeline runs the same rounds through the idempotent
// producer and commits the offsets once the outputs are acknowledged.
//
//	err := kafka.RunPipeline(ctx,
//		kafka.PipelineConfig{Config: cfg, GroupID: "receipts", TransactionalID: "receipts-1"},
//		&paymentCapturedMeta, []*event.Type{&receiptIssuedMeta}, event.DecodeEvent[PaymentCaptured],
//		func(ctx context.Context, p *PaymentCaptured, em *kafka.Emitter) error {
//			return em.Emit(&ReceiptIssued{PaymentID: p.PaymentID})
//		})
//
// # Dead letters
//
// A record whose handler failed RetryPolicy.MaxAttempts times, or that
// could not be decoded, is written to DeadLetterTopic(topic) (topic +
// ".dlq") with its key, value and headers unchanged, plus HeaderDLQError,
// HeaderDLQAttempts, HeaderDLQGroup and the HeaderDLQSource* headers
// locating the original,
// and then committed. An exactly-once pipeline writes it inside the
// round's transaction.
// With ConsumerConfig.DisableDeadLetter, Run stops with ErrDeadLetter and
// leaves the record uncommitted instead. docs/consumers.md describes
// commits, retries, rebalances and the pipeline's failure handling.
//
// # Headers
//
// Every record carries the CloudEvents binary-mode attributes
// (CloudEventHeaders: ce_id, ce_type, ce_source, ce_time, ...) and the W3C
// traceparent of the context it was sent with. Handlers read them from
// Record (ID, Type, Source, Time, Traceparent, Header), and Record.Context
// carries the traceparent on to the events a handler sends. HeaderValue
// reads a header of a raw sarama record.
//
// # Errors and metrics
//
// The sentinel errors, each with what it means and what to do, are in
// errors.go; returned errors wrap them and sarama's cause with %w, so match
// them with errors.Is. Metrics
// receives counters (Sent, Acked, Dropped, Retried, DeadLettered,
// Duplicates, Handled, Committed) per event; Counters is an in-memory
// implementation for tests and demos.
//
// No package variable is assigned after initialisation: the only ones are
// the sentinel errors and the default, discarding logger.
package kafka
