package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
)

// Emitter collects the events a pipeline handler produces for one input
// record. They are written in the transaction that commits the input's
// offset, in the order emitted.
type Emitter struct {
	ctx     context.Context
	allowed map[*event.Type]bool
	rec     ExactlyOnceRecord
	msgs    []*sarama.ProducerMessage
}

// Emit validates and encodes e and queues it for the current transaction.
// It returns ErrNotProduced for an event type outside the pipeline's
// produces and the validation error for an invalid event. Outputs carry
// fresh CloudEvents headers and the input record's traceparent.
func (em *Emitter) Emit(e event.Event) error {
	et := e.EventType()
	if !em.allowed[et] {
		return fmt.Errorf("%w: %s", ErrNotProduced, etName(et))
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("eventgen: emitting %s: %w", et.Name, err)
	}
	em.msgs = append(em.msgs, &sarama.ProducerMessage{
		Topic:   et.Topic,
		Key:     sarama.StringEncoder(e.Key()),
		Value:   sarama.ByteEncoder(e.AppendJSON(nil)),
		Headers: CloudEventHeaders(em.ctx, et, event.NewUUID().String(), time.Now()),
	})
	return nil
}

// Record describes the input record being handled.
func (em *Emitter) Record() ExactlyOnceRecord { return em.rec }

// RunPipeline consumes events of type in, runs h on each, and writes what h
// emits together with the consumed offsets in one Kafka transaction per
// batch: a read_committed reader of the outputs sees each input's outputs
// exactly once, in input order per partition. in and every type in produces
// must be exactly-once events.
//
// A handler error (a recovered panic included, ErrHandlerPanic) is retried
// per cfg.Retry; after the last attempt, at once for a Permanent error, and
// at once for a record that fails to decode, the input record goes to
// DeadLetterTopic(in.Topic) inside the same transaction (no outputs for it).
// A rebalance aborts an open transaction; an abortable transaction error
// aborts and re-reads from the last committed offsets; a fatal error or
// fencing stops the pipeline with ErrProducerFatal or ErrFenced.
//
// RunPipeline blocks until ctx is done, commits the batches already handled,
// and returns nil; or returns an error when it cannot start or must stop.
// Before connecting it checks cfg, in, produces, decode and h, and reports
// every problem at once (ErrInvalidConfig, ErrGuaranteeMismatch), then the
// settings Tune must not break (ErrConflictingConfig).
func RunPipeline[In any](ctx context.Context, cfg PipelineConfig, in *event.Type, produces []*event.Type, decode func([]byte) (In, error), h func(context.Context, In, *Emitter) error) error {
	p, err := newPipeline(cfg, in, produces, decode, h)
	if err != nil {
		return err
	}
	return p.run(ctx)
}

// pipelineHooks lets tests stop a pipeline at chosen points. Nil fields are
// skipped; production code never sets them.
type pipelineHooks struct {
	// beforeCommit runs with the transaction open, outputs and offsets
	// added, just before CommitTxn.
	beforeCommit func(batch []*sarama.ConsumerMessage)
}

type pipeline[In any] struct {
	cfg     PipelineConfig
	in      *event.Type
	allowed map[*event.Type]bool
	decode  func([]byte) (In, error)
	h       func(context.Context, In, *Emitter) error
	log     *slog.Logger
	met     Metrics
	hooks   *pipelineHooks
	index   *schemaIndex // routing of input records by ce_type

	*runState // set when the group run starts
	prod      sarama.SyncProducer
	instance  *string

	txMu sync.Mutex // one transaction at a time across partitions
}

func newPipeline[In any](cfg PipelineConfig, in *event.Type, produces []*event.Type, decode func([]byte) (In, error), h func(context.Context, In, *Emitter) error) (*pipeline[In], error) {
	errs := []error{cfg.validate()}
	cfg = cfg.withDefaults()
	if decode == nil || h == nil {
		errs = append(errs, errors.New("eventgen: RunPipeline: decode and handler are required"))
	}
	if in == nil || in.Topic == "" {
		errs = append(errs, fmt.Errorf("eventgen: RunPipeline: input %s has no topic", etName(in)))
	} else if in.Guarantee != event.ExactlyOnce {
		errs = append(errs, fmt.Errorf("%w: pipeline input %s is %s, want exactly-once", ErrGuaranteeMismatch, in.Name, in.Guarantee))
	}
	allowed := map[*event.Type]bool{}
	for _, et := range produces {
		switch {
		case et == nil || et.Topic == "":
			errs = append(errs, fmt.Errorf("eventgen: RunPipeline: output %s has no topic", etName(et)))
		case et.Guarantee != event.ExactlyOnce:
			errs = append(errs, fmt.Errorf("%w: pipeline output %s is %s, want exactly-once", ErrGuaranteeMismatch, et.Name, et.Guarantee))
		default:
			allowed[et] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	index := newSchemaIndex()
	index.add(in)
	for _, et := range cfg.Events {
		index.add(et)
	}
	p := &pipeline[In]{cfg: cfg, in: in, allowed: allowed, decode: decode, h: h, log: cfg.Logger, met: cfg.Metrics, hooks: cfg.hooks, index: index}
	if cfg.InstanceID != "" {
		p.instance = &p.cfg.InstanceID
	}
	return p, nil
}

// saramaConfigs returns the configurations of the pipeline's input
// consumer and of its transactional producer.
func (p *pipeline[In]) saramaConfigs() (consumer, producer *sarama.Config, err error) {
	sc, err := p.cfg.saramaConfig(readCommittedConsumer, identity{instanceID: p.cfg.InstanceID, instanceIDField: "PipelineConfig.InstanceID"})
	if err != nil {
		return nil, nil, err
	}
	pc, err := p.cfg.saramaConfig(transactionalProducer, identity{
		clientIDSuffix: "-txn", transactionalID: p.cfg.TransactionalID, transactionalIDField: "PipelineConfig.TransactionalID",
	})
	if err != nil {
		return nil, nil, err
	}
	return sc, pc, nil
}

func (p *pipeline[In]) run(ctx context.Context) error {
	sc, pc, err := p.saramaConfigs()
	if err != nil {
		return err
	}
	// The producer first: InitProducerID aborts what a predecessor with
	// this TransactionalID left open and fences it, before this process
	// reads any committed offset.
	prod, err := sarama.NewSyncProducer(p.cfg.Brokers, pc)
	if err != nil {
		if fenced(err) {
			return fmt.Errorf("%w: pipeline %s: %w", ErrFenced, p.cfg.TransactionalID, err)
		}
		return fmt.Errorf("eventgen: pipeline %s: transactional producer: %w", p.cfg.TransactionalID, err)
	}
	p.prod = prod
	defer prod.Close()
	return runGroup(ctx, groupRun{
		kind:          "pipeline",
		brokers:       p.cfg.Brokers,
		config:        sc,
		groupID:       p.cfg.GroupID,
		instanceID:    p.cfg.InstanceID,
		topics:        []string{p.in.Topic},
		log:           p.log.With("group", p.cfg.GroupID, "transactional_id", p.cfg.TransactionalID, "instance", p.cfg.InstanceID),
		rejoinBackoff: 100 * time.Millisecond,
		start: func(st *runState) claimFunc {
			p.runState = st
			return p.consumeClaim
		},
	})
}

// consumeClaim runs batches of one partition. Each batch is transformed
// outside the transaction lock, then committed in one transaction. Any
// failure returns from ConsumeClaim, which ends the session: after the
// rejoin every partition restarts from Kafka's committed offsets, so nothing
// read into memory past them survives a failure.
func (p *pipeline[In]) consumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	batch := make([]*sarama.ConsumerMessage, 0, p.cfg.BatchSize)
	g := newClaimGuard(p.runState, sess, p.cfg.ShutdownGrace, p.log.With("group", p.cfg.GroupID, "topic", claim.Topic(), "partition", claim.Partition()))
	defer g.release()
	for {
		// A failed pipeline starts nothing new; nextBatch stops on a revoked partition.
		if p.err() != nil {
			return nil
		}
		var ok bool
		if batch, ok = nextBatch(sess, claim, batch, p.cfg.BatchSize); !ok {
			return nil
		}
		res, err := p.transform(sess.Context(), g, batch)
		if err != nil {
			return nil // session ended during a retry backoff, or a handler was cancelled or abandoned; nothing was written
		}
		if err := p.commit(sess, batch, res); err != nil {
			if errors.Is(err, errStopped) {
				return nil
			}
			return err
		}
	}
}

// batchResult is what transform made of a batch.
type batchResult struct {
	out          []*sarama.ProducerMessage
	handled      int64
	retried      int64
	deadLettered int64
	skipped      map[string]int64 // by event name
	emitted      map[string]int64 // outputs by event name
}

// transform runs the handler over a batch (each attempt through g), with
// retries and dead letters. It returns an error matching errStopped when the
// batch must not be committed: sctx ended during a backoff, or a handler was
// cancelled or abandoned by g.
func (p *pipeline[In]) transform(sctx context.Context, g *claimGuard, batch []*sarama.ConsumerMessage) (*batchResult, error) {
	res := &batchResult{emitted: map[string]int64{}, skipped: map[string]int64{}}
	for _, m := range batch {
		v, meta, skipped, err := p.decodeInput(m)
		if skipped != nil {
			res.skipped[skipped.Name]++
			continue
		}
		if err != nil {
			res.out = append(res.out, deadLetterMessage(p.cfg.GroupID, m, err, 0))
			res.deadLettered++
			p.log.Error("eventgen: pipeline input undecodable; dead-lettering", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", err)
			continue
		}
		for attempt := 1; ; attempt++ {
			if g.ctx.Err() != nil {
				// The grace period after the session's end is over: start
				// no handler; the batch is not committed.
				return nil, fmt.Errorf("%w: shutdown grace period over", errStopped)
			}
			meta.Attempt = attempt
			em := &Emitter{allowed: p.allowed, rec: ExactlyOnceRecord{meta}}
			err := g.call(func(ctx context.Context) error {
				em.ctx = meta.Context(ctx)
				return p.h(em.ctx, v, em)
			}, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "attempt", attempt)
			if errors.Is(err, errStopped) {
				p.log.Warn("eventgen: pipeline handler stopped by shutdown or revocation; batch not committed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "attempt", attempt, "error", err)
				return nil, err
			}
			if err == nil {
				res.out = append(res.out, em.msgs...)
				for _, pm := range em.msgs {
					res.emitted[pm.Topic]++
				}
				res.handled++
				break
			}
			p.log.Warn("eventgen: pipeline handler failed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "attempt", attempt, "permanent", IsPermanent(err), "error", err)
			if attempt >= p.cfg.Retry.MaxAttempts || IsPermanent(err) {
				res.out = append(res.out, deadLetterMessage(p.cfg.GroupID, m, err, attempt))
				res.deadLettered++
				break
			}
			res.retried++
			if sleepCtx(sctx, p.cfg.Retry.delay(attempt)) != nil {
				return nil, errStopped
			}
		}
	}
	return res, nil
}

// decodeInput routes m by ce_type and decodes it as the input event. skip
// is the other declared event m is (committed, not transformed);
// an error is the reason to dead-letter m (an unknown ce_type, a record
// without ce_type on a topic of several events, a tombstone, data that does
// not decode or fails Validate).
func (p *pipeline[In]) decodeInput(m *sarama.ConsumerMessage) (v In, meta Record, skip *event.Type, err error) {
	in := readRecord(m)
	et, err := p.index.resolve(m.Topic, &in)
	switch {
	case err != nil:
		return v, meta, nil, err
	case et.CEType != p.in.CEType:
		return v, meta, et, nil
	case in.err != nil:
		return v, meta, nil, in.err
	}
	if v, err = p.decode(in.data); err != nil {
		return v, meta, nil, fmt.Errorf("decoding %s: %w", p.in.Name, err)
	}
	if err := validated(&v); err != nil {
		return v, meta, nil, fmt.Errorf("invalid %s: %w", p.in.Name, err)
	}
	return v, in.rec, nil, nil
}

// revoked reports whether the session ended for a reason other than the
// caller's shutdown: a rebalance, or another partition's failure. A batch is
// not committed then; on shutdown a handled batch still is (the commit is
// fenced by the session's generation either way).
func (p *pipeline[In]) revoked(sess sarama.ConsumerGroupSession) bool {
	return sess.Context().Err() != nil && p.userCtx.Err() == nil
}

// commit writes a transformed batch and its offsets in one transaction.
func (p *pipeline[In]) commit(sess sarama.ConsumerGroupSession, batch []*sarama.ConsumerMessage, res *batchResult) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.err() != nil || p.revoked(sess) {
		return errStopped
	}
	last := batch[len(batch)-1]
	if err := p.prod.BeginTxn(); err != nil {
		return p.txnFailed("begin", last, err)
	}
	if len(res.out) > 0 {
		if err := p.prod.SendMessages(res.out); err != nil {
			return p.txnFailed("produce", last, err)
		}
	}
	// Offsets go in even when nothing was produced: the transaction then
	// carries only them, and the input is still consumed exactly once.
	// Leader epoch -1 (unknown), not sarama's default 0: see commitOffsets.
	gm := sarama.NewConsumerGroupMetadataFromSession(sess, p.cfg.GroupID, p.instance)
	offsets := map[string][]*sarama.PartitionOffsetMetadata{
		last.Topic: {{Partition: last.Partition, Offset: last.Offset + 1, LeaderEpoch: -1}},
	}
	if err := p.prod.AddOffsetsToTxnWithGroupMetadata(offsets, gm); err != nil {
		return p.txnFailed("add offsets", last, err)
	}
	if p.hooks != nil && p.hooks.beforeCommit != nil {
		p.hooks.beforeCommit(batch)
	}
	if p.revoked(sess) {
		p.log.Warn("eventgen: rebalance; transaction aborted", "transactional_id", p.cfg.TransactionalID, "at", fmt.Sprintf("%s/%d@%d", last.Topic, last.Partition, last.Offset))
		if err := p.prod.AbortTxn(); err != nil {
			return p.txnFailed("abort on rebalance", last, err)
		}
		return errStopped
	}
	if err := p.prod.CommitTxn(); err != nil {
		return p.txnFailed("commit", last, err)
	}
	name := p.in.Name
	p.met.Count(name, Handled, res.handled)
	p.met.Count(name, Committed, int64(len(batch)))
	if res.retried > 0 {
		p.met.Count(name, Retried, res.retried)
	}
	if res.deadLettered > 0 {
		p.met.Count(name, DeadLettered, res.deadLettered)
	}
	for skipped, n := range res.skipped {
		p.met.Count(skipped, Skipped, n)
	}
	for et := range p.allowed {
		if n := res.emitted[et.Topic]; n > 0 {
			p.met.Count(et.Name, Acked, n)
		}
	}
	return nil
}

// txnFailed classifies a transaction error: fenced and fatal errors stop the
// pipeline; anything else aborts the transaction and returns an error that
// ends the session, so the partitions restart from their committed offsets.
func (p *pipeline[In]) txnFailed(stage string, last *sarama.ConsumerMessage, err error) error {
	st := p.prod.TxnStatus()
	where := fmt.Sprintf("%s/%d@%d", last.Topic, last.Partition, last.Offset)
	if fenced(err) {
		e := fmt.Errorf("%w: pipeline %s at %s (%s): %w", ErrFenced, p.cfg.TransactionalID, stage, where, err)
		p.fail(e)
		return e
	}
	if st&sarama.ProducerTxnFlagFatalError != 0 {
		e := fmt.Errorf("%w: pipeline %s at %s (%s): %w", ErrProducerFatal, p.cfg.TransactionalID, stage, where, err)
		p.fail(e)
		return e
	}
	if st&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) != 0 {
		if aerr := p.prod.AbortTxn(); aerr != nil {
			kind := ErrProducerFatal
			if fenced(aerr) {
				kind = ErrFenced
			}
			e := fmt.Errorf("%w: pipeline %s: abort after %s failed (%w): %w", kind, p.cfg.TransactionalID, stage, err, aerr)
			p.fail(e)
			return e
		}
	}
	p.log.Warn("eventgen: transaction aborted; re-reading from the committed offsets", "transactional_id", p.cfg.TransactionalID, "stage", stage, "at", where, "error", err)
	return fmt.Errorf("eventgen: pipeline transaction aborted at %s (%s): %w", stage, where, err)
}
