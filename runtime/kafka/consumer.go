package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/event"
)

// Consumer reads events of one consumer group and runs the handlers
// registered with HandleAtMostOnce and HandleAtLeastOnce. Records of one
// partition are handled one at a time, in offset order; offsets are committed
// only up to a record whose predecessors are all done.
type Consumer struct {
	cfg ConsumerConfig
	log *slog.Logger
	met Metrics

	mu       sync.Mutex
	routes   map[string][]*route // by topic
	declared []*event.Type       // DeclareEvents
	regErrs  []error
	running  bool
}

// route is one registered handler.
type route struct {
	et *event.Type
	g  event.Guarantee
	// store processes the route's records: a dedup store (HandleDeduped,
	// HandleExactlyOnce), or the store that runs every delivery
	// (HandleAtLeastOnce); nil at most once.
	store storeAdapter
	// prepare decodes and validates the record's data and returns the
	// work that runs the handler.
	prepare func(in *inbound) (*work, error)
}

// DeclareEvents tells c every event the schema declares (generated
// consumers call it with all of their schema's events), so that records are
// routed by ce_type: a record of a declared event with no handler in c is
// skipped (committed and counted as Skipped), a ce_type the schema does not
// declare is dead-lettered, and a record without ce_type is the event of its
// topic when the topic carries exactly one declared event. Events with a
// handler are always declared. Call it before Run.
func DeclareEvents(c *Consumer, ets ...*event.Type) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		c.regErrs = append(c.regErrs, errors.New("eventgen: DeclareEvents called after Run"))
		return
	}
	for _, et := range ets {
		if et != nil {
			c.declared = append(c.declared, et)
		}
	}
}

// NewConsumer checks cfg (every invalid field is named in one error matching
// ErrInvalidConfig), fills its defaults and returns a Consumer with no
// handlers. It does not connect: Run does, and rejects a Tune that breaks
// the consumer's settings (ErrConflictingConfig).
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Consumer{cfg: cfg, log: cfg.Logger, met: cfg.Metrics, routes: map[string][]*route{}}, nil
}

// HandleAtMostOnce registers h for events of type et, which must be an
// at-most-once event. Buffered records are committed before their handlers
// run: a crash or a handler error loses the record (counted as Dropped and
// logged), it is never handled twice by this group.
func HandleAtMostOnce[T any](c *Consumer, et *event.Type, decode func([]byte) (T, error), h func(context.Context, T, AtMostOnceRecord) error) {
	if h == nil {
		c.addErr(fmt.Errorf("eventgen: HandleAtMostOnce(%s): the handler is required", etName(et)))
		return
	}
	handle(c, "HandleAtMostOnce", et, event.AtMostOnce, nil, decode, func(ctx context.Context, v T, _ any, m Record) error {
		return h(ctx, v, AtMostOnceRecord{m})
	}, nil)
}

// HandleAtLeastOnce registers h for events of type et, which must be an
// at-least-once event whose schema says dedup store none: h runs for every
// delivery, redeliveries included (after a crash or rebalance), so it must
// be naturally idempotent. A record is committed after h succeeds; a
// failing h is retried per ConsumerConfig.Retry, then the record goes to
// the dead-letter topic (DeadLetterTopic) before it is committed. Events
// with a dedup store register with HandleDeduped.
func HandleAtLeastOnce[T any](c *Consumer, et *event.Type, decode func([]byte) (T, error), h func(context.Context, T, AtLeastOnceRecord) error) {
	if h == nil {
		c.addErr(fmt.Errorf("eventgen: HandleAtLeastOnce(%s): the handler is required", etName(et)))
		return
	}
	handle(c, "HandleAtLeastOnce", et, event.AtLeastOnce, everyDelivery{}, decode, func(ctx context.Context, v T, _ any, m Record) error {
		return h(ctx, v, AtLeastOnceRecord{m})
	}, nil)
}

// HandleDeduped registers h for events of type et, which must be an
// at-least-once event, with store absorbing redeliveries: a record whose
// idempotency key (scoped by the consumer group and the event's name) the
// store has recorded is committed without running h (counted as
// Duplicates), and the key is recorded when h succeeds, for et.DedupTTL.
// h receives what the store writes through: the pgx.Tx in which a
// pgdedup.Store records the key (so effects written through it commit
// with the key), dedup.NoTx for a Redis store. The records of a partition
// go through the store in batches (one Process per run of consecutive
// records of the same store, up to ConsumerConfig.MaxBatch); a failing h
// is retried per ConsumerConfig.Retry while later records of its Kafka key
// wait, then dead-lettered; the store's own errors (and keys Busy in
// another worker) are retried with backoff without spending attempts.
func HandleDeduped[T, Tx any](c *Consumer, et *event.Type, decode func([]byte) (T, error), store dedup.Store[Tx], h func(context.Context, T, Tx, AtLeastOnceRecord) error) {
	if h == nil || store == nil {
		c.addErr(fmt.Errorf("eventgen: HandleDeduped(%s): the store and the handler are required", etName(et)))
		return
	}
	handle(c, "HandleDeduped", et, event.AtLeastOnce, newTypedStore(store, nil), decode, func(ctx context.Context, v T, tx any, m Record) error {
		t, _ := tx.(Tx) // the zero Tx when the store passes none (dedup.Memory[pgx.Tx])
		return h(ctx, v, t, AtLeastOnceRecord{m})
	}, nil)
}

// HandleDedupedBatch is HandleDeduped with a batch handler: h receives the
// new events of a batch of the partition's records (redeliveries and
// records already processed are filtered out by the store's dedup
// statement), in offset order, with their records, so that it can write
// their effects with one statement through tx, the transaction that also
// records their keys (dedup.BatchStore.ProcessBatch). A batch can be a
// single event. If h fails, the effects of the call are rolled back and the
// store narrows the failure down to the first event that fails on its own,
// calling h again with shorter runs (halves, then that event alone): the
// events before it commit once, it is a handler failure with the error of
// the call that had it alone (retries, Permanent, a recovered panic and
// the dead-letter topic as for HandleDeduped), and the events after it
// wait and run again. h must therefore apply exactly the effects of the
// events it is given, and may be called several times with the same event
// in one round, all calls but the last rolled back.
func HandleDedupedBatch[T, Tx any](c *Consumer, et *event.Type, decode func([]byte) (T, error), store dedup.BatchStore[Tx], h func(ctx context.Context, tx Tx, vs []T, recs []AtLeastOnceRecord) error) {
	if h == nil || store == nil {
		c.addErr(fmt.Errorf("eventgen: HandleDedupedBatch(%s): the store and the handler are required", etName(et)))
		return
	}
	handle(c, "HandleDedupedBatch", et, event.AtLeastOnce, newTypedStore[Tx](store, nil), decode, nil, func(ctx context.Context, tx any, vs []T, ms []Record) error {
		t, _ := tx.(Tx)
		return h(ctx, t, vs, wrapRecords(ms, func(m Record) AtLeastOnceRecord { return AtLeastOnceRecord{m} }))
	})
}

// HandleExactlyOnce registers h for events of type et, which must be an
// exactly-once event, consumed into store's database with exactly-once
// effects: each batch of a partition's records is one transaction holding
// h's effects (written through tx), the records' dedup keys and the
// partition's next offset (dedup.OffsetStore.ProcessAt). On assignment the
// consumer resumes from the offsets stored there, not from Kafka's, which
// it still commits afterwards, as a hint for lag tools. The events of one
// topic must share one store. Failures are handled as in HandleDeduped; a
// record dead-lettered after its attempts has its offset passed in the
// database (a crash between the dead-letter write and that commit writes
// the dead letter again).
func HandleExactlyOnce[T, Tx any](c *Consumer, et *event.Type, decode func([]byte) (T, error), store dedup.OffsetStore[Tx], h func(context.Context, T, Tx, ExactlyOnceRecord) error) {
	if h == nil || store == nil {
		c.addErr(fmt.Errorf("eventgen: HandleExactlyOnce(%s): the store and the handler are required", etName(et)))
		return
	}
	handle(c, "HandleExactlyOnce", et, event.ExactlyOnce, newTypedStore[Tx](store, store), decode, func(ctx context.Context, v T, tx any, m Record) error {
		t, _ := tx.(Tx)
		return h(ctx, v, t, ExactlyOnceRecord{m})
	}, nil)
}

// HandleExactlyOnceBatch is HandleExactlyOnce with a batch handler: h
// receives the new events of a batch, in offset order, in the transaction
// that also records their keys and stores the partition's next offset
// (dedup.BatchOffsetStore.ProcessBatchAt). Failures are narrowed down to
// one event as in HandleDedupedBatch.
func HandleExactlyOnceBatch[T, Tx any](c *Consumer, et *event.Type, decode func([]byte) (T, error), store dedup.BatchOffsetStore[Tx], h func(ctx context.Context, tx Tx, vs []T, recs []ExactlyOnceRecord) error) {
	if h == nil || store == nil {
		c.addErr(fmt.Errorf("eventgen: HandleExactlyOnceBatch(%s): the store and the handler are required", etName(et)))
		return
	}
	handle(c, "HandleExactlyOnceBatch", et, event.ExactlyOnce, newTypedStore[Tx](store, store), decode, nil, func(ctx context.Context, tx any, vs []T, ms []Record) error {
		t, _ := tx.(Tx)
		return h(ctx, t, vs, wrapRecords(ms, func(m Record) ExactlyOnceRecord { return ExactlyOnceRecord{m} }))
	})
}

// wrapRecords gives a batch handler its records as its guarantee's type.
func wrapRecords[R any](ms []Record, wrap func(Record) R) []R {
	recs := make([]R, len(ms))
	for i, m := range ms {
		recs[i] = wrap(m)
	}
	return recs
}

// handle registers a typed handler for guarantee g; run calls it with the
// store's transaction (nil without one) and the record. A batch handler is
// given as batch instead of run: it runs many records in one call (a
// record alone where the store calls it so).
func handle[T any](c *Consumer, caller string, et *event.Type, g event.Guarantee, store storeAdapter, decode func([]byte) (T, error),
	run func(ctx context.Context, v T, tx any, m Record) error, batch func(ctx context.Context, tx any, vs []T, ms []Record) error) {
	if decode == nil {
		c.addErr(fmt.Errorf("eventgen: %s(%s): decode is required", caller, etName(et)))
		return
	}
	var br *batchRunner
	if batch != nil {
		br = &batchRunner{run: func(ctx context.Context, tx any, ws []*work) error {
			vs, ms := make([]T, len(ws)), make([]Record, len(ws))
			for i, w := range ws {
				vs[i], ms[i] = w.val.(T), w.rec
				ms[i].Attempt = w.attempt
			}
			return batch(ctx, tx, vs, ms)
		}}
		run = func(ctx context.Context, v T, tx any, m Record) error {
			return batch(ctx, tx, []T{v}, []Record{m})
		}
	}
	group := c.cfg.GroupID
	c.register(et, g, store, func(in *inbound) (*work, error) {
		v, err := decode(in.data)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", et.Name, err)
		}
		if err := validated(&v); err != nil {
			return nil, fmt.Errorf("invalid %s: %w", et.Name, err)
		}
		meta := in.rec
		w := &work{
			m: in.m, name: et.Name, attempt: 1, store: store,
			key: dedup.Key{Group: group, Event: et.Name, ID: idempotencyKey(&v, &meta)}, ttl: et.DedupTTL,
		}
		w.run = func(ctx context.Context, tx any) error {
			meta.Attempt = w.attempt
			return run(meta.Context(ctx), v, tx, meta)
		}
		if br != nil {
			w.batch, w.val, w.rec = br, v, meta
		}
		return w, nil
	})
}

func etName(et *event.Type) string {
	if et == nil {
		return "<nil EventType>"
	}
	return et.Name
}

// idempotencyKey returns the event's IdempotencyKey when the decoded value
// has a non-empty one, else the record's ce_id, else its coordinates (a
// record from a producer that is not eventgen has no ce_id).
func idempotencyKey[T any](v *T, meta *Record) string {
	// Each IdempotencyKey is called once: it formats the key (a UUID's
	// String, say) on every call.
	if k, ok := any(v).(interface{ IdempotencyKey() string }); ok {
		if id := k.IdempotencyKey(); id != "" {
			return id
		}
	}
	if k, ok := any(*v).(interface{ IdempotencyKey() string }); ok {
		if id := k.IdempotencyKey(); id != "" {
			return id
		}
	}
	if meta.ID != "" {
		return meta.ID
	}
	return fmt.Sprintf("%s/%d/%d", meta.Topic, meta.Partition, meta.Offset)
}

func (c *Consumer) addErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.regErrs = append(c.regErrs, err)
}

func (c *Consumer) register(et *event.Type, g event.Guarantee, store storeAdapter, prepare func(*inbound) (*work, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.running:
		c.regErrs = append(c.regErrs, fmt.Errorf("eventgen: handler for %s registered after Run", etName(et)))
		return
	case et == nil || et.Topic == "":
		c.regErrs = append(c.regErrs, fmt.Errorf("eventgen: handler registered for %s without a topic", etName(et)))
		return
	case et.Guarantee != g:
		c.regErrs = append(c.regErrs, fmt.Errorf("%w: %s is %s, handler is %s", ErrGuaranteeMismatch, et.Name, et.Guarantee, g))
		return
	}
	for _, r := range c.routes[et.Topic] {
		if r.et == et || r.et.Name == et.Name {
			c.regErrs = append(c.regErrs, fmt.Errorf("eventgen: two handlers for %s", et.Name))
			return
		}
		if r.g != g {
			c.regErrs = append(c.regErrs, fmt.Errorf("eventgen: topic %q has %s (%s) and %s (%s) handlers; one topic needs one guarantee", et.Topic, r.et.Name, r.g, et.Name, g))
			return
		}
		if g == event.ExactlyOnce && !r.store.same(store) {
			c.regErrs = append(c.regErrs, fmt.Errorf("eventgen: topic %q has exactly-once handlers for %s and %s with different stores; the offsets of a topic's partitions live in one store", et.Topic, r.et.Name, et.Name))
			return
		}
	}
	c.routes[et.Topic] = append(c.routes[et.Topic], &route{et: et, g: g, store: store, prepare: prepare})
}

// Run joins the group and handles records until ctx is done, then shuts down
// gracefully: each partition finishes its in-flight handler (handlers'
// context stays live for ConsumerConfig.ShutdownGrace, then is cancelled; a
// handler still running one more ShutdownGrace later is abandoned), commits
// what was handled (not a cancelled or abandoned record), and the consumer
// leaves. A panicking handler is recovered into a handler error
// (ErrHandlerPanic); a failed dead-letter write is retried. Run returns nil
// after a shutdown caused by ctx, and an error when it could not start or
// had to stop: registration errors (ErrGuaranteeMismatch), a Tune that
// breaks the consumer's settings (ErrConflictingConfig), ErrFenced,
// ErrDeadLetter (with DisableDeadLetter).
func (c *Consumer) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("eventgen: Consumer.Run called twice")
	}
	c.running = true
	regErrs := errors.Join(c.regErrs...)
	routes := c.routes
	index := newSchemaIndex()
	for _, rs := range routes {
		for _, r := range rs {
			index.add(r.et)
		}
	}
	for _, et := range c.declared {
		index.add(et)
	}
	c.mu.Unlock()
	if regErrs != nil {
		return regErrs
	}
	if len(routes) == 0 {
		return errors.New("eventgen: Consumer.Run: no handlers registered")
	}
	topics := make([]string, 0, len(routes))
	needDLQ := false
	for t, rs := range routes {
		topics = append(topics, t)
		needDLQ = needDLQ || (rs[0].g != event.AtMostOnce && !c.cfg.DisableDeadLetter)
	}
	sort.Strings(topics)

	sc, err := c.cfg.saramaConfig(groupConsumer, identity{
		instanceID: c.cfg.InstanceID, instanceIDField: "ConsumerConfig.InstanceID",
		shutdownGrace: c.cfg.ShutdownGrace, shutdownGraceField: "ConsumerConfig.ShutdownGrace",
		batch: c.cfg.MaxBatch,
	})
	if err != nil {
		return err
	}
	// The dead-letter producer is ready before the first record is read.
	var dlq sarama.SyncProducer
	if needDLQ {
		pc, err := c.cfg.saramaConfig(deadLetterProducer, identity{clientIDSuffix: "-dlq"})
		if err != nil {
			return err
		}
		dlq, err = sarama.NewSyncProducer(c.cfg.Brokers, pc)
		if err != nil {
			return fmt.Errorf("eventgen: consumer %s: dead-letter producer: %w", c.cfg.GroupID, err)
		}
		defer dlq.Close()
	}
	return runGroup(ctx, groupRun{
		kind:          "consumer",
		brokers:       c.cfg.Brokers,
		config:        sc,
		groupID:       c.cfg.GroupID,
		instanceID:    c.cfg.InstanceID,
		topics:        topics,
		log:           c.log.With("group", c.cfg.GroupID, "instance", c.cfg.InstanceID),
		rejoinBackoff: 250 * time.Millisecond,
		start: func(st *runState) sessionHooks {
			h := &groupHandler{runState: st, c: c, dlq: dlq, routes: routes, index: index}
			return sessionHooks{setup: h.setup, consume: h.consumeClaim}
		},
	})
}

// groupHandler handles the claims of a Consumer's sessions.
type groupHandler struct {
	*runState
	c      *Consumer
	dlq    sarama.SyncProducer
	routes map[string][]*route
	index  *schemaIndex

	// stored holds, per topic and partition, the offset an exactly-once
	// store had for the partition when this session started (see setup).
	storedMu sync.Mutex
	stored   map[string]map[int32]int64
}

// consumeClaim routes a claim to its guarantee's loop.
func (h *groupHandler) consumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	routes := h.routes[claim.Topic()]
	if len(routes) == 0 {
		return fmt.Errorf("eventgen: no handler for topic %q", claim.Topic())
	}
	switch routes[0].g {
	case event.AtMostOnce:
		return h.consumeAtMostOnce(sess, claim, routes)
	case event.ExactlyOnce:
		return h.consumeExactlyOnce(sess, claim, routes)
	}
	return h.consumeAtLeastOnce(sess, claim, routes)
}

// pick routes a record by ce_type (see DeclareEvents). It returns the
// record's route, or, with a nil route, the declared event it is (a record
// to skip: no handler here), or the reason it cannot be routed (an unknown
// ce_type, a record without ce_type on a topic with several events, a
// tombstone...).
func (h *groupHandler) pick(routes []*route, in *inbound) (*route, *event.Type, error) {
	et, err := h.index.resolve(in.m.Topic, in)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range routes {
		if r.et.CEType == et.CEType {
			return r, et, in.err
		}
	}
	return nil, et, nil
}

// consumeAtMostOnce commits each batch of buffered records, then handles
// it. A failed commit ends the session without handling the batch: the
// records stay uncommitted and the partition's next owner gets them.
func (h *groupHandler) consumeAtMostOnce(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, routes []*route) error {
	log := h.c.log.With("group", h.c.cfg.GroupID, "topic", claim.Topic(), "partition", claim.Partition())
	g := newClaimGuard(h.runState, sess, h.c.cfg.ShutdownGrace, log)
	defer g.release()
	batch := make([]*sarama.ConsumerMessage, 0, h.c.cfg.MaxBatch)
	for {
		var ok bool
		if batch, ok = nextBatch(sess, claim, batch, h.c.cfg.MaxBatch); !ok {
			return nil
		}
		last := batch[len(batch)-1]
		if err := h.commit(sess, claim.Topic(), claim.Partition(), last.Offset+1); err != nil {
			log.Warn("eventgen: at-most-once commit failed; leaving the batch unhandled for the partition's next owner",
				"from", batch[0].Offset, "to", last.Offset, "error", err)
			return fmt.Errorf("eventgen: at-most-once commit of %s/%d: %w", claim.Topic(), claim.Partition(), err)
		}
		for _, m := range batch {
			in := readRecord(m)
			r, et, err := h.pick(routes, &in)
			name := claim.Topic()
			if et != nil {
				name = et.Name
			}
			h.c.met.Count(name, Committed, 1)
			if err == nil && r == nil {
				h.c.met.Count(name, Skipped, 1)
				continue
			}
			if g.ctx.Err() != nil {
				// The grace period after shutdown or revocation is over:
				// the rest of the batch, already committed, is dropped.
				h.c.met.Count(name, Dropped, 1)
				log.Warn("eventgen: at-most-once record dropped: shutdown grace period over", "event", name, "offset", m.Offset)
				continue
			}
			var w *work
			if err == nil {
				w, err = r.prepare(&in)
			}
			if err == nil {
				err = g.call(func(ctx context.Context) error { return w.run(ctx, nil) }, "event", name, "offset", m.Offset)
			}
			if err != nil {
				h.c.met.Count(name, Dropped, 1)
				log.Warn("eventgen: at-most-once record dropped", "event", name, "offset", m.Offset, "error", err)
				continue
			}
			h.c.met.Count(name, Handled, 1)
		}
	}
}

// deadLetter writes m to its dead-letter topic and waits for the ack. With
// dead-lettering disabled it stops the consumer (ErrDeadLetter). A failed
// write is the dead-letter topic's fault, not the record's: it is retried
// with the Retry backoff (capped at Retry.MaxBackoff) for as long as sctx
// lives, pausing only m's partition, and counted as InfraRetried; when sctx
// ends first, deadLetter returns errStopped and m stays uncommitted.
func (h *groupHandler) deadLetter(sctx context.Context, name string, m *sarama.ConsumerMessage, cause error, attempts int, log *slog.Logger) error {
	if h.dlq == nil {
		err := fmt.Errorf("%w: %s/%d@%d: dead-lettering is disabled: %v", ErrDeadLetter, m.Topic, m.Partition, m.Offset, cause)
		h.fail(err)
		return err
	}
	msg := deadLetterMessage(h.c.cfg.GroupID, m, cause, attempts)
	for try := 1; ; try++ {
		_, _, err := h.dlq.SendMessage(msg)
		if err == nil {
			break
		}
		h.c.met.Count(name, InfraRetried, 1)
		log.Warn("eventgen: dead-letter write failed; retrying without spending the record's attempts (partition paused)",
			"event", name, "offset", m.Offset, "dlq", DeadLetterTopic(m.Topic), "try", try, "error", err)
		if sleepCtx(sctx, h.c.cfg.Retry.delay(try)) != nil {
			return fmt.Errorf("%w: dead-letter write of %s/%d@%d interrupted", errStopped, m.Topic, m.Partition, m.Offset)
		}
	}
	h.c.met.Count(name, DeadLettered, 1)
	log.Error("eventgen: record dead-lettered", "event", name, "offset", m.Offset, "attempts", attempts, "dlq", DeadLetterTopic(m.Topic), "error", cause)
	return nil
}

// commit synchronously commits next as the group's offset of one partition,
// on behalf of the session's member and generation, so the coordinator
// rejects it once the partition may belong to someone else. (sarama's
// session.Commit reports no errors, which at-most-once needs.)
func (h *groupHandler) commit(sess sarama.ConsumerGroupSession, topic string, partition int32, next int64) error {
	return commitOffsets(h.client, h.c.cfg.GroupID, h.c.cfg.InstanceID, sess, map[string]map[int32]int64{topic: {partition: next}})
}

func commitOffsets(client sarama.Client, group, instanceID string, sess sarama.ConsumerGroupSession, offsets map[string]map[int32]int64) error {
	req := &sarama.OffsetCommitRequest{
		Version:                 8,
		ConsumerGroup:           group,
		ConsumerGroupGeneration: sess.GenerationID(),
		ConsumerID:              sess.MemberID(),
	}
	if instanceID != "" {
		req.GroupInstanceId = &instanceID
	}
	for t, ps := range offsets {
		for p, off := range ps {
			// Leader epoch -1 (unknown): sarama's AddBlock sends 0, which a
			// client checking epochs (franz-go, Java) takes for a commit
			// from epoch 0 and, after a leader change, resumes early.
			req.AddBlockWithLeaderEpoch(t, p, off, -1, 0, "")
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			_ = client.RefreshCoordinator(group)
		}
		broker, err := client.Coordinator(group)
		if err != nil {
			lastErr = err
			continue
		}
		resp, err := broker.CommitOffset(req)
		if err != nil {
			lastErr = err
			continue
		}
		retry := false
		lastErr = nil
		for t, ps := range offsets {
			for p := range ps {
				kerr := sarama.ErrIncompleteResponse
				if e, ok := resp.Errors[t][p]; ok {
					kerr = e
				}
				switch kerr {
				case sarama.ErrNoError:
				case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrRequestTimedOut:
					retry, lastErr = true, kerr
				default:
					return kerr
				}
			}
		}
		if !retry {
			return nil
		}
	}
	return lastErr
}
