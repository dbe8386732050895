package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
		// Which input produced the output: a poison output dead-letters it.
		Metadata: outputOrigin{offset: em.rec.Offset, attempt: em.rec.Attempt},
	})
	return nil
}

// outputOrigin is the Metadata of a pipeline output: the offset of the
// input record (in its batch's partition) that emitted it.
type outputOrigin struct {
	offset  int64
	attempt int
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
// An output Kafka rejects for good (larger than Producer.MaxMessageBytes,
// MESSAGE_TOO_LARGE, INVALID_RECORD, ...) dead-letters the input that
// emitted it, inside a transaction, and the batch is committed without it.
// A rebalance aborts an open transaction; an abortable transaction error
// aborts and re-reads from the last committed offsets; INVALID_PRODUCER_EPOCH
// and a transaction the coordinator timed out (open longer than
// Producer.Transaction.Timeout) abort, re-initialise the producer with the
// same TransactionalID and re-read; a fatal error or fencing by a newer
// instance stops the pipeline with ErrProducerFatal or ErrFenced.
//
// RunPipeline blocks until ctx is done, commits the batches already handled,
// and returns nil; or returns an error when it cannot start or must stop.
// Before connecting it checks cfg, in, produces, decode and h, and reports
// every problem at once (ErrInvalidConfig, ErrGuaranteeMismatch), then the
// settings Tune must not break and the timeouts that must agree after Tune
// (ErrConflictingConfig): Producer.Transaction.Timeout (default 10 s for a
// pipeline, DefaultPipelineTransactionTimeout) ≤
// Consumer.Group.Rebalance.Timeout, and 2×cfg.ShutdownGrace <
// Consumer.Group.Rebalance.Timeout. A transaction timeout longer than
// Consumer.Group.Session.Timeout is allowed but logged as a warning.
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
	prodCfg   *sarama.Config // to re-initialise prod after an epoch error or a timeout
	// prodClosed is set when reinit closed prod and could not replace it
	// (sarama's Close must not run twice).
	prodClosed bool
	instance   *string
	txStart    time.Time // when the open transaction began (under txMu)
	// recoveries counts producer re-initialisations since the last
	// committed transaction (under txMu).
	recoveries int

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
// consumer and of its transactional producer. Every conflict is reported at
// once: each client's rules (the consumer's include graceRule), then the
// rules between the two (pipelineTimingRules).
func (p *pipeline[In]) saramaConfigs() (consumer, producer *sarama.Config, err error) {
	sc, errs := p.cfg.tunedConfig(readCommittedConsumer, identity{
		instanceID: p.cfg.InstanceID, instanceIDField: "PipelineConfig.InstanceID",
		shutdownGrace: p.cfg.ShutdownGrace, shutdownGraceField: "PipelineConfig.ShutdownGrace",
	})
	pc, perrs := p.cfg.tunedConfig(transactionalProducer, identity{
		clientIDSuffix: "-txn", transactionalID: p.cfg.TransactionalID, transactionalIDField: "PipelineConfig.TransactionalID",
		txTimeout: DefaultPipelineTransactionTimeout,
	})
	errs = append(errs, perrs...)
	rs := rules{role: readCommittedConsumer.spec().name}
	pipelineTimingRules(&rs, sc, pc)
	if err := errors.Join(append(errs, rs.errs...)...); err != nil {
		return nil, nil, err
	}
	if sc, err = saramaValidated(readCommittedConsumer, sc); err != nil {
		return nil, nil, err
	}
	if pc, err = saramaValidated(transactionalProducer, pc); err != nil {
		return nil, nil, err
	}
	return sc, pc, nil
}

func (p *pipeline[In]) run(ctx context.Context) error {
	sc, pc, err := p.saramaConfigs()
	if err != nil {
		return err
	}
	if tt, st := pc.Producer.Transaction.Timeout, sc.Consumer.Group.Session.Timeout; tt > st {
		// Allowed (a zombie test needs it, and KIP-447's generation fencing
		// keeps the output exactly once), but slow to recover from a crash.
		p.log.Warn("eventgen: Producer.Transaction.Timeout is longer than Consumer.Group.Session.Timeout: partitions of a member that crashes inside a transaction move after the session timeout, and their new owner then waits for that transaction to time out (UNSTABLE_OFFSET_COMMIT) before it reads; Kafka Streams and franz-go keep the transaction timeout at or below the session timeout",
			"transactional_id", p.cfg.TransactionalID, "transaction_timeout", tt, "session_timeout", st)
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
	p.prod, p.prodCfg = prod, pc
	defer func() { // the last producer: reinit may have replaced or closed it
		if !p.prodClosed {
			_ = p.prod.Close()
		}
	}()
	return runGroup(ctx, groupRun{
		kind:          "pipeline",
		brokers:       p.cfg.Brokers,
		config:        sc,
		groupID:       p.cfg.GroupID,
		instanceID:    p.cfg.InstanceID,
		topics:        []string{p.in.Topic},
		log:           p.log.With("group", p.cfg.GroupID, "transactional_id", p.cfg.TransactionalID, "instance", p.cfg.InstanceID),
		rejoinBackoff: 100 * time.Millisecond,
		start: func(st *runState) sessionHooks {
			p.runState = st
			return sessionHooks{consume: p.consumeClaim}
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
	return p.commitLocked(sess, batch, res)
}

// commitLocked is commit under txMu.
func (p *pipeline[In]) commitLocked(sess sarama.ConsumerGroupSession, batch []*sarama.ConsumerMessage, res *batchResult) error {
	if p.err() != nil || p.revoked(sess) {
		return errStopped
	}
	last := batch[len(batch)-1]
	p.txStart = time.Now()
	if err := p.prod.BeginTxn(); err != nil {
		return p.txnFailed("begin", last, err)
	}
	if len(res.out) > 0 {
		if err := p.prod.SendMessages(res.out); err != nil {
			if poison := poisonOutputs(err, p.prodCfg.Producer.MaxMessageBytes); len(poison) > 0 && p.prod.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0 && !fenced(err) {
				return p.poisoned(sess, batch, res, poison, err)
			}
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
	p.recoveries = 0
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

// maxRecoveries bounds the producer re-initialisations (after epoch errors
// and transaction timeouts) in a row without a committed transaction; one
// more stops the pipeline with ErrProducerFatal.
const maxRecoveries = 5

// overdue reports whether the open transaction has outlived
// Producer.Transaction.Timeout: the coordinator may have aborted it and
// bumped the epoch, so a PRODUCER_FENCED now is most likely our own
// timeout, not a newer instance. The clock starts before BeginTxn, that is
// before the coordinator's, so a transaction that is not overdue here
// cannot have been timed out there.
func (p *pipeline[In]) overdue() bool {
	return !p.txStart.IsZero() && time.Since(p.txStart) >= p.prodCfg.Producer.Transaction.Timeout
}

// txnFailed classifies a transaction error. Fencing by a newer instance
// stops the pipeline with ErrFenced; an epoch error (INVALID_PRODUCER_EPOCH)
// or a transaction the coordinator timed out aborts and, where the producer
// cannot go on, re-initialises it; other fatal errors stop the pipeline with
// ErrProducerFatal; anything else aborts the transaction. Unless the
// pipeline stops, the returned error ends the session, so the partitions
// restart from their committed offsets.
func (p *pipeline[In]) txnFailed(stage string, last *sarama.ConsumerMessage, err error) error {
	st := p.prod.TxnStatus()
	where := fmt.Sprintf("%s/%d@%d", last.Topic, last.Partition, last.Offset)
	// FENCED_INSTANCE_ID is the group's fencing (a newer static member):
	// never our own timeout.
	recoverable := epochError(err) || (producerFenced(err) && p.overdue())
	if fenced(err) && !recoverable {
		e := fmt.Errorf("%w: pipeline %s at %s (%s): %w", ErrFenced, p.cfg.TransactionalID, stage, where, err)
		p.fail(e)
		return e
	}
	if st&sarama.ProducerTxnFlagFatalError != 0 && !recoverable {
		e := fmt.Errorf("%w: pipeline %s at %s (%s): %w", ErrProducerFatal, p.cfg.TransactionalID, stage, where, err)
		p.fail(e)
		return e
	}
	if st&sarama.ProducerTxnFlagFatalError == 0 && st&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) != 0 {
		if aerr := p.prod.AbortTxn(); aerr != nil {
			switch {
			case fenced(aerr) && !(producerFenced(aerr) && p.overdue()):
				e := fmt.Errorf("%w: pipeline %s: abort after %s failed (%w): %w", ErrFenced, p.cfg.TransactionalID, stage, err, aerr)
				p.fail(e)
				return e
			case epochError(aerr) || producerFenced(aerr):
				recoverable = true
			default:
				e := fmt.Errorf("%w: pipeline %s: abort after %s failed (%w): %w", ErrProducerFatal, p.cfg.TransactionalID, stage, err, aerr)
				p.fail(e)
				return e
			}
		}
	}
	if recoverable && (p.prod.TxnStatus()&(sarama.ProducerTxnFlagFatalError|sarama.ProducerTxnFlagInError) != 0 || producerFenced(err)) {
		if e := p.reinit(stage, where, err); e != nil {
			return e
		}
	}
	p.log.Warn("eventgen: transaction aborted; re-reading from the committed offsets", "transactional_id", p.cfg.TransactionalID, "stage", stage, "at", where, "error", err)
	return fmt.Errorf("eventgen: pipeline transaction aborted at %s (%s): %w", stage, where, err)
}

// reinit replaces the transactional producer after an epoch error or a
// transaction timeout: the old one is closed and a new one with the same
// TransactionalID runs InitProducerID, which completes (aborts) whatever
// the old one left open and gives a fresh epoch. It returns nil when the
// pipeline can go on, or the error that stopped it.
func (p *pipeline[In]) reinit(stage, where string, cause error) error {
	p.recoveries++
	if p.recoveries > maxRecoveries {
		e := fmt.Errorf("%w: pipeline %s at %s (%s): %d producer re-initialisations without a commit: %w", ErrProducerFatal, p.cfg.TransactionalID, stage, where, maxRecoveries, cause)
		p.fail(e)
		return e
	}
	p.log.Warn("eventgen: epoch error or transaction timeout; re-initialising the transactional producer", "transactional_id", p.cfg.TransactionalID, "stage", stage, "at", where, "error", cause, "timeout", p.prodCfg.Producer.Transaction.Timeout)
	_ = p.prod.Close()
	p.prodClosed = true
	prod, err := sarama.NewSyncProducer(p.cfg.Brokers, p.prodCfg)
	if err != nil {
		kind := ErrProducerFatal
		if fenced(err) {
			kind = ErrFenced
		}
		e := fmt.Errorf("%w: pipeline %s: re-initialising the producer after %s (%s) failed (%w): %w", kind, p.cfg.TransactionalID, stage, where, cause, err)
		p.fail(e)
		return e
	}
	p.prod, p.prodClosed = prod, false
	p.txStart = time.Time{}
	return nil
}

// poisoned handles outputs the client or broker rejected for good
// (poisonOutputs): the transaction is aborted, the inputs that emitted
// them are dead-lettered instead (with the reason; none of their outputs
// are written), and the batch is committed again, in place, without
// re-reading it. When the input cannot be told (a broker error covers a
// whole produce batch, and sarama fails the rest of the send with it), the
// batch is committed one input per transaction instead, so that the next
// rejection names a single input. Each round removes an input or narrows
// the batch to one input, so it ends. A dead letter rejected for good
// cannot be dead-lettered: the transaction fails as before.
func (p *pipeline[In]) poisoned(sess sarama.ConsumerGroupSession, batch []*sarama.ConsumerMessage, res *batchResult, poison map[*sarama.ProducerMessage]error, cause error) error {
	last := batch[len(batch)-1]
	bad := map[int64]error{}
	attempts := map[int64]int{}
	for pm, err := range poison {
		off, ok := p.origin(pm)
		if !ok || pm.Topic == DeadLetterTopic(p.in.Topic) {
			return p.txnFailed("produce", last, cause)
		}
		if _, seen := bad[off]; !seen {
			bad[off] = fmt.Errorf("output to %s rejected for good: %w", pm.Topic, err)
			if o, ok := pm.Metadata.(outputOrigin); ok {
				attempts[off] = o.attempt
			}
		}
	}
	if err := p.prod.AbortTxn(); err != nil {
		return p.txnFailed("abort after a poison output", last, errors.Join(cause, err))
	}
	p.txStart = time.Time{}
	if len(bad) > 1 && !clientSide(poison) {
		return p.oneByOne(sess, batch, res, cause)
	}
	out := make([]*sarama.ProducerMessage, 0, len(res.out))
	for _, pm := range res.out {
		if off, ok := p.origin(pm); ok && bad[off] != nil {
			if pm.Topic == DeadLetterTopic(p.in.Topic) {
				res.deadLettered--
			} else {
				res.emitted[pm.Topic]--
			}
			continue
		}
		out = append(out, freshMessage(pm))
	}
	for _, m := range batch {
		if err := bad[m.Offset]; err != nil {
			p.log.Error("eventgen: pipeline output rejected for good; dead-lettering its input", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", err)
			out = append(out, deadLetterMessage(p.cfg.GroupID, m, err, attempts[m.Offset]))
			res.handled--
			res.deadLettered++
		}
	}
	res.out = out
	return p.commitLocked(sess, batch, res)
}

// oneByOne commits a batch one input per transaction, each with its own
// outputs, after a rejection that did not say which input was poison.
func (p *pipeline[In]) oneByOne(sess sarama.ConsumerGroupSession, batch []*sarama.ConsumerMessage, res *batchResult, cause error) error {
	last := batch[len(batch)-1]
	p.log.Warn("eventgen: pipeline output rejected for good; committing the batch one input per transaction to find the input", "topic", last.Topic, "partition", last.Partition, "from", batch[0].Offset, "to", last.Offset, "error", flattenProducerErrors(cause))
	byInput := map[int64][]*sarama.ProducerMessage{}
	for _, pm := range res.out {
		off, ok := p.origin(pm)
		if !ok {
			return fmt.Errorf("eventgen: pipeline transaction aborted at produce (%s/%d@%d): an output without its input: %w", last.Topic, last.Partition, last.Offset, cause)
		}
		byInput[off] = append(byInput[off], freshMessage(pm))
	}
	// The counts of res spread over the inputs: one with a dead letter is
	// dead-lettered, one with outputs handled; of those with neither, as
	// many as res has handled inputs left are handled (emitting nothing),
	// the rest skipped (res.skipped goes with the first input).
	handledLeft := res.handled
	for _, m := range batch {
		if outs := byInput[m.Offset]; len(outs) > 0 && outs[0].Topic != DeadLetterTopic(p.in.Topic) {
			handledLeft--
		}
	}
	for i, m := range batch {
		sub := &batchResult{out: byInput[m.Offset], emitted: map[string]int64{}, skipped: map[string]int64{}}
		for _, pm := range sub.out {
			if pm.Topic == DeadLetterTopic(p.in.Topic) {
				sub.deadLettered++
			} else {
				sub.emitted[pm.Topic]++
			}
		}
		switch {
		case sub.deadLettered > 0:
		case len(sub.out) > 0:
			sub.handled = 1
		case handledLeft > 0:
			sub.handled = 1
			handledLeft--
		}
		if i == 0 {
			sub.retried, sub.skipped = res.retried, res.skipped
		}
		if err := p.commitLocked(sess, batch[i:i+1], sub); err != nil {
			return err
		}
	}
	return nil
}

// origin returns the offset of the input (in the batch's partition) that
// an output or dead letter belongs to.
func (p *pipeline[In]) origin(pm *sarama.ProducerMessage) (int64, bool) {
	if o, ok := pm.Metadata.(outputOrigin); ok {
		return o.offset, true
	}
	for _, h := range pm.Headers {
		if string(h.Key) == HeaderDLQSourceOffset {
			off, err := strconv.ParseInt(string(h.Value), 10, 64)
			return off, err == nil
		}
	}
	return 0, false
}

// clientSide reports whether every rejection is the client's own, made per
// record (its size), so that each names its own input.
func clientSide(poison map[*sarama.ProducerMessage]error) bool {
	for _, err := range poison {
		var ce sarama.ConfigurationError
		if !errors.As(err, &ce) {
			return false
		}
	}
	return true
}

// freshMessage copies what a send needs of pm: sarama keeps per-send
// state in a ProducerMessage.
func freshMessage(pm *sarama.ProducerMessage) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: pm.Topic, Key: pm.Key, Value: pm.Value, Headers: pm.Headers, Metadata: pm.Metadata}
}
