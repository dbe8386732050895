package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
)

// Emitter collects the events a pipeline handler produces for one input
// record. They are written in the round that commits the input's offset,
// in the order emitted.
type Emitter struct {
	ctx     context.Context
	allowed map[*event.Type]bool
	rec     ExactlyOnceRecord
	msgs    []*sarama.ProducerMessage
	events  []string // the event of each of msgs, for metrics
}

// Emit validates and encodes e and queues it for the current round. It
// returns ErrNotProduced for an event type outside the pipeline's produces
// and the validation error for an invalid event. Outputs carry fresh
// CloudEvents headers and the input record's traceparent.
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
		Value:   sarama.ByteEncoder(e.AppendJSON(make([]byte, 0, 256))), // as encodeEvent: one allocation for most events
		Headers: CloudEventHeaders(em.ctx, et, event.NewUUID().String(), time.Now()),
	})
	em.events = append(em.events, et.Name)
	return nil
}

// Record describes the input record being handled.
func (em *Emitter) Record() ExactlyOnceRecord { return em.rec }

// RunPipeline consumes events of type in, runs h on each, and writes what h
// emits together with the consumed offsets in Kafka transactions: a
// read_committed reader of the outputs sees each input's outputs exactly
// once, in input order per partition. in and every type in produces must be
// exactly-once events.
//
// One transaction covers everything the member consumed across all its
// partitions since the last commit, and commits every cfg.CommitInterval
// (default 100 ms) or as soon as it holds cfg.BatchSize inputs (default
// 10,000). Handlers of different partitions run concurrently, one record
// at a time per partition; outputs are sent while handlers go on.
//
// A handler error (a recovered panic included, ErrHandlerPanic) is retried
// per cfg.Retry; after the last attempt, at once for a Permanent error, and
// at once for a record that fails to decode or to route, the input record
// goes to DeadLetterTopic(in.Topic) inside the transaction (no outputs for
// it). An output Kafka rejects for good (larger than
// Producer.MaxMessageBytes, MESSAGE_TOO_LARGE, INVALID_RECORD, ...)
// dead-letters the input that emitted it, inside a transaction; a rejected
// dead letter is trimmed (value, then original headers) before giving up
// with ErrDeadLetter.
//
// A transaction that fails is aborted and sent again from memory: the
// inputs are not re-read, the handlers do not run again, and the member
// stays in its group session. INVALID_PRODUCER_EPOCH and a transaction the
// coordinator timed out (open longer than Producer.Transaction.Timeout)
// also re-initialise the producer with the same TransactionalID first. A
// failure that says the member's generation is over (ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) aborts and ends the session;
// the partitions are read again from their committed offsets. A rebalance
// commits the open transaction before the partitions are released. A fatal
// error or fencing by a newer instance stops the pipeline with
// ErrProducerFatal or ErrFenced.
//
// RunPipeline blocks until ctx is done, commits what was handled, and
// returns nil; or returns an error when it cannot start or must stop.
// Before connecting it checks cfg, in, produces, decode and h, and reports
// every problem at once (ErrInvalidConfig, ErrGuaranteeMismatch), then the
// settings Tune must not break and the timeouts that must agree after Tune
// (ErrConflictingConfig): Producer.Transaction.Timeout (default 10 s for a
// pipeline, DefaultPipelineTransactionTimeout) ≤
// Consumer.Group.Rebalance.Timeout, and 2×cfg.ShutdownGrace <
// Consumer.Group.Rebalance.Timeout. A transaction timeout longer than
// Consumer.Group.Session.Timeout is allowed but logged as a warning.
func RunPipeline[In any](ctx context.Context, cfg PipelineConfig, in *event.Type, produces []*event.Type, decode func([]byte) (In, error), h func(context.Context, In, *Emitter) error) error {
	p, err := newPipeline(cfg, event.ExactlyOnce, in, produces, decode, h)
	if err != nil {
		return err
	}
	return p.run(ctx)
}

// RunAtLeastOncePipeline consumes events of type in, runs h on each, and
// writes what h emits through the idempotent producer (acks=all); once
// every output of a round is acknowledged, it commits the round's offsets.
// No output is lost, but a crash or a rebalance between the
// acknowledgements and the offset commit repeats the outputs of up to one
// round per partition: consumers of the outputs absorb repeats with their
// dedup store (the outputs of one input keep their CloudEvents id only
// within a process; the idempotency key of the event is what dedup uses).
// in must be an at-least-once or exactly-once event, and every type in
// produces an at-least-once event.
//
// Rounds, routing, retries, dead letters (written through the same
// producer, acknowledged before the offset passes them), poison outputs,
// shutdown and configuration checks are those of RunPipeline, without
// transactions: cfg.TransactionalID is not used.
func RunAtLeastOncePipeline[In any](ctx context.Context, cfg PipelineConfig, in *event.Type, produces []*event.Type, decode func([]byte) (In, error), h func(context.Context, In, *Emitter) error) error {
	p, err := newPipeline(cfg, event.AtLeastOnce, in, produces, decode, h)
	if err != nil {
		return err
	}
	return p.run(ctx)
}

// pipeline is a running pipeline: the engine, plus what depends on the
// input's Go type.
type pipeline[In any] struct {
	*engine
	in      *event.Type
	allowed map[*event.Type]bool
	decode  func([]byte) (In, error)
	h       func(context.Context, In, *Emitter) error
	index   *schemaIndex // routing of input records by ce_type
}

func newPipeline[In any](cfg PipelineConfig, g event.Guarantee, in *event.Type, produces []*event.Type, decode func([]byte) (In, error), h func(context.Context, In, *Emitter) error) (*pipeline[In], error) {
	eos := g == event.ExactlyOnce
	errs := []error{cfg.validate(eos)}
	cfg = cfg.withDefaults()
	caller := "RunPipeline"
	if !eos {
		caller = "RunAtLeastOncePipeline"
	}
	if decode == nil || h == nil {
		errs = append(errs, fmt.Errorf("eventgen: %s: decode and handler are required", caller))
	}
	switch {
	case in == nil || in.Topic == "":
		errs = append(errs, fmt.Errorf("eventgen: %s: input %s has no topic", caller, etName(in)))
	case eos && in.Guarantee != event.ExactlyOnce:
		errs = append(errs, fmt.Errorf("%w: pipeline input %s is %s, want exactly-once", ErrGuaranteeMismatch, in.Name, in.Guarantee))
	case !eos && in.Guarantee < event.AtLeastOnce:
		errs = append(errs, fmt.Errorf("%w: at-least-once pipeline input %s is %s, want at-least-once or exactly-once", ErrGuaranteeMismatch, in.Name, in.Guarantee))
	}
	allowed := map[*event.Type]bool{}
	for _, et := range produces {
		switch {
		case et == nil || et.Topic == "":
			errs = append(errs, fmt.Errorf("eventgen: %s: output %s has no topic", caller, etName(et)))
		case et.Guarantee != g:
			errs = append(errs, fmt.Errorf("%w: %s pipeline output %s is %s, want %s", ErrGuaranteeMismatch, g, et.Name, et.Guarantee, g))
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
	e := &engine{cfg: cfg, eos: eos, kind: g.String() + " pipeline", inName: in.Name, dlqTopic: DeadLetterTopic(in.Topic), log: cfg.Logger, met: cfg.Metrics, hooks: cfg.hooks}
	if cfg.InstanceID != "" {
		e.instance = &e.cfg.InstanceID
	}
	return &pipeline[In]{engine: e, in: in, allowed: allowed, decode: decode, h: h, index: index}, nil
}

// saramaConfigs returns the configurations of the pipeline's input
// consumer and of its producer. Every conflict is reported at once: each
// client's rules (the consumer's include graceRule), then the rules
// between the two (pipelineTimingRules, exactly-once).
func (p *pipeline[In]) saramaConfigs() (consumer, producer *sarama.Config, err error) {
	cons, prod := readCommittedConsumer, transactionalProducer
	prodID := identity{
		clientIDSuffix: "-txn", transactionalID: p.cfg.TransactionalID, transactionalIDField: "PipelineConfig.TransactionalID",
		txTimeout: DefaultPipelineTransactionTimeout,
	}
	if !p.eos {
		cons, prod = pipelineConsumer, idempotentProducer
		prodID = identity{clientIDSuffix: "-out"}
	}
	sc, errs := p.cfg.tunedConfig(cons, identity{
		instanceID: p.cfg.InstanceID, instanceIDField: "PipelineConfig.InstanceID",
		shutdownGrace: p.cfg.ShutdownGrace, shutdownGraceField: "PipelineConfig.ShutdownGrace",
	})
	pc, perrs := p.cfg.tunedConfig(prod, prodID)
	errs = append(errs, perrs...)
	if p.eos {
		rs := rules{role: cons.spec().name}
		pipelineTimingRules(&rs, sc, pc)
		errs = append(errs, rs.errs...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if sc, err = saramaValidated(cons, sc); err != nil {
		return nil, nil, err
	}
	if pc, err = saramaValidated(prod, pc); err != nil {
		return nil, nil, err
	}
	return sc, pc, nil
}

func (p *pipeline[In]) run(ctx context.Context) error {
	sc, pc, err := p.saramaConfigs()
	if err != nil {
		return err
	}
	if tt, st := pc.Producer.Transaction.Timeout, sc.Consumer.Group.Session.Timeout; p.eos && tt > st {
		// Allowed (a zombie test needs it, and KIP-447's generation fencing
		// keeps the output exactly once), but slow to recover from a crash.
		p.log.Warn("eventgen: Producer.Transaction.Timeout is longer than Consumer.Group.Session.Timeout: partitions of a member that crashes inside a transaction move after the session timeout, and their new owner then waits for that transaction to time out (UNSTABLE_OFFSET_COMMIT) before it reads; Kafka Streams and franz-go keep the transaction timeout at or below the session timeout",
			"transactional_id", p.cfg.TransactionalID, "transaction_timeout", tt, "session_timeout", st)
	}
	// The producer first: InitProducerID aborts what a predecessor with
	// this TransactionalID left open and fences it, before this process
	// reads any committed offset.
	out, err := newOutputs(p.cfg.Brokers, pc, p.ackedRounds())
	if err != nil {
		if fenced(err) {
			return fmt.Errorf("%w: pipeline %s: %w", ErrFenced, p.cfg.TransactionalID, err)
		}
		return fmt.Errorf("eventgen: %s %s: producer: %w", p.kind, p.cfg.GroupID, err)
	}
	p.out, p.prodCfg = out, pc
	defer func() {
		// The last producer (reinit may have replaced it), unless an
		// abandoned commit still uses it: its committer closes it.
		if !p.abandoned.Load() {
			_ = p.out.close()
		}
	}()
	return runGroup(ctx, groupRun{
		kind:          p.kind,
		brokers:       p.cfg.Brokers,
		config:        sc,
		groupID:       p.cfg.GroupID,
		instanceID:    p.cfg.InstanceID,
		topics:        []string{p.in.Topic},
		log:           p.log.With("group", p.cfg.GroupID, "transactional_id", p.cfg.TransactionalID, "instance", p.cfg.InstanceID),
		rejoinBackoff: 100 * time.Millisecond,
		start: func(st *runState) sessionHooks {
			p.runState = st
			return sessionHooks{setup: p.setup, consume: p.consumeClaim, cleanup: p.cleanup}
		},
	})
}

// setup starts the session's round and its committer.
func (e *engine) setup(sess sarama.ConsumerGroupSession) error {
	e.sessions.Add(1)
	if err := e.begin(); err != nil {
		e.fail(err)
		return err
	}
	e.cur = newRound(e, sess)
	go e.cur.run()
	return nil
}

// cleanup runs when every claim of the session has returned, before the
// partitions are released: it seals the round (nothing more is added),
// and the committer finishes its commit in flight, then commits the open
// round (or aborts it, when the generation changed or the pipeline
// failed). A commit the broker does not answer within ShutdownGrace is
// abandoned (see abandonCommit).
func (e *engine) cleanup(sarama.ConsumerGroupSession) error {
	r := e.cur
	if r == nil {
		return nil
	}
	e.cur = nil
	r.mu.Lock()
	n := len(r.open)
	r.sealed = true
	r.mu.Unlock()
	if e.hooks != nil && e.hooks.atCleanup != nil {
		e.hooks.atCleanup(n)
	}
	r.stop()
	t := time.NewTimer(e.cfg.ShutdownGrace)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		e.abandonCommit(r)
	}
	return nil
}

// abandonCommit gives up on a session-end commit that the broker has not
// answered within ShutdownGrace (sarama would keep asking for up to its
// retries × Net.ReadTimeout). The pipeline stops with ErrProducerFatal
// rather than hold the rebalance or the shutdown: the transaction's
// outcome is settled by the coordinator (it aborts a transaction at its
// timeout) or by the next instance with this TransactionalID, and the
// partitions' next owner waits for it (RequireStable), so nothing is lost
// or written twice. The committer's goroutine leaves the producer alone
// and closes it once sarama returns.
func (e *engine) abandonCommit(r *round) {
	e.abandoned.Store(true)
	e.fail(fmt.Errorf("%w: %s %s: the commit at the session's end got no answer within ShutdownGrace (%v); the coordinator or the next instance with this TransactionalID settles it", ErrProducerFatal, e.kind, e.cfg.TransactionalID, e.cfg.ShutdownGrace))
	go func() {
		<-r.done
		_ = e.out.close()
	}()
}

// abandonTxn aborts an open transaction of a pipeline that stopped, best
// effort: the next owner of the TransactionalID aborts it anyway.
func (e *engine) abandonTxn() {
	if !e.eos || !e.inTxn {
		return
	}
	if e.out.prod.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0 {
		_ = e.out.prod.AbortTxn()
	}
	e.inTxn = false
}

// consumeClaim runs the handler over a partition's records, one at a time,
// and adds each to the session's round. It returns when the session ends
// (a revoked partition starts nothing new), when the round was dropped, or
// when a handler was stopped by the end of the session (its input and the
// ones after it are not committed).
func (p *pipeline[In]) consumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	r := p.cur
	if r == nil {
		return nil
	}
	g := newClaimGuard(p.runState, sess, p.cfg.ShutdownGrace, p.log.With("group", p.cfg.GroupID, "topic", claim.Topic(), "partition", claim.Partition()))
	defer g.release()
	g.detach(func() { p.claimLoop(sess, claim, g, r) })
	return nil
}

// claimLoop is consumeClaim's loop, run detached from sarama's goroutine
// so that a hung handler can be abandoned (see claimGuard.detach).
//
// It hands the round its inputs in blocks: the records already buffered
// for the partition (up to claimBlock) are transformed, then added at
// once. On topics keyed alike (an order's payment and its receipt on the
// same partition number, the common case) a block's outputs go to one
// partition, so a round made of whole blocks touches few partitions: one
// AddPartitionsToTxn entry, one produce batch and one transaction marker
// per partition, where records added one at a time from every claim
// interleave and touch them all.
func (p *pipeline[In]) claimLoop(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, g *claimGuard, r *round) {
	block := make([]*input, 0, min(p.cfg.BatchSize, claimBlock))
	r.join()
	defer r.leave()
	for {
		if p.err() != nil || sess.Context().Err() != nil {
			return
		}
		var m *sarama.ConsumerMessage
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return
			}
			m = msg
		default:
			// Nothing buffered: wait for the next record, as an idle
			// claim (see PipelineConfig.CommitWhenIdle).
			r.waiting()
			select {
			case <-sess.Context().Done():
			case <-r.over:
			case msg, ok := <-claim.Messages():
				if ok {
					m = msg
				}
			}
			r.working()
			if m == nil {
				return
			}
		}
		block = block[:0]
		more := true
		for m != nil {
			in, err := p.transform(sess.Context(), g, m)
			if err != nil {
				// The session ended during a retry backoff, or the handler
				// was cancelled or abandoned: this input and the ones after
				// it are not committed; those before it are.
				more = false
				break
			}
			block = append(block, in)
			m = nil
			if len(block) == cap(block) || p.err() != nil || sess.Context().Err() != nil {
				break
			}
			select {
			case msg, ok := <-claim.Messages():
				if ok {
					m = msg
				} else {
					more = false
				}
			default: // nothing buffered: do not wait with finished inputs in hand
			}
		}
		if len(block) > 0 && !r.add(block...) {
			return
		}
		if !more {
			return
		}
	}
}

// claimBlock is the most inputs a claim transforms before it adds them to
// the round.
const claimBlock = sendChunk

// transform routes, decodes and handles one input record (each attempt
// through g.inline), with retries and dead letters. It returns an error
// matching errStopped when the record must not be committed: sctx ended
// during a backoff, or a handler was cancelled or abandoned by g.
func (p *pipeline[In]) transform(sctx context.Context, g *claimGuard, m *sarama.ConsumerMessage) (*input, error) {
	in := &input{m: m, event: p.in.Name}
	v, meta, skip, err := p.decodeInput(m)
	if skip != nil {
		in.status, in.event = skipped, skip.Name
		return in, nil
	}
	if err != nil {
		p.log.Error("eventgen: pipeline input undecodable; dead-lettering", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", err)
		p.deadLetter(in, err)
		return in, nil
	}
	for attempt := 1; ; attempt++ {
		if g.ctx.Err() != nil {
			// The grace period after the session's end is over: start no
			// handler; the record is not committed.
			return nil, fmt.Errorf("%w: shutdown grace period over", errStopped)
		}
		meta.Attempt = attempt
		in.attempts = attempt
		em := &Emitter{allowed: p.allowed, rec: ExactlyOnceRecord{meta}}
		err := g.inline(func(ctx context.Context) error {
			em.ctx = em.rec.Context(ctx)
			return p.h(em.ctx, v, em)
		}, m, attempt)
		if errors.Is(err, errStopped) {
			p.log.Warn("eventgen: pipeline handler stopped by shutdown or revocation; input not committed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "attempt", attempt, "error", err)
			return nil, err
		}
		if err == nil {
			in.status, in.outs, in.outEvents = handled, em.msgs, em.events
			return in, nil
		}
		p.log.Warn("eventgen: pipeline handler failed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "attempt", attempt, "permanent", IsPermanent(err), "error", err)
		if attempt >= p.cfg.Retry.MaxAttempts || IsPermanent(err) {
			p.deadLetter(in, err)
			return in, nil
		}
		in.retried++
		if sleepCtx(sctx, p.cfg.Retry.delay(attempt)) != nil {
			return nil, errStopped
		}
	}
}

// deadLetter makes in the dead letter of its record, for cause.
func (e *engine) deadLetter(in *input, cause error) {
	in.status, in.cause = deadLettered, cause
	in.outs = []*sarama.ProducerMessage{deadLetterMessage(e.cfg.GroupID, in.m, cause, in.attempts)}
	in.outEvents = nil
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
