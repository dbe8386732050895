package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/event"
)

// prepareWork reads m and returns its work: routed, decoded and validated,
// or finished already when it is skipped (another declared event) or
// dead-lettered (it cannot be routed or decoded). An error is errStopped
// (a dead-letter write interrupted by the session's end) or ErrDeadLetter.
func (h *groupHandler) prepareWork(sctx context.Context, routes []*route, m *sarama.ConsumerMessage, log *slog.Logger) (*work, error) {
	in := readRecord(m)
	r, et, err := h.pick(routes, &in)
	if et == nil {
		return &work{m: m, name: m.Topic, finished: true}, h.deadLetter(sctx, m.Topic, m, err, 0, log)
	}
	if err == nil && r == nil {
		h.c.met.Count(et.Name, Skipped, 1)
		return &work{m: m, name: et.Name, finished: true}, nil
	}
	var w *work
	if err == nil {
		w, err = r.prepare(&in)
	}
	if err != nil {
		return &work{m: m, name: et.Name, finished: true}, h.deadLetter(sctx, et.Name, m, err, 0, log)
	}
	return w, nil
}

// settle runs ws (records of one partition, in offset order) through their
// stores until each is finished: handled, a duplicate, or dead-lettered
// after its attempts. exec makes one store call for a run of consecutive
// records of the same store (one record at a time for events without a
// store: nothing is gained by grouping them, and a handler abandoned at
// shutdown then leaves the records before it finished). A round that leaves records unfinished is
// followed by another after a backoff: a failed handler spends an attempt
// (RetryPolicy.delay of its attempt), while a key Busy in another worker, a
// store error and a record waiting behind an earlier one of its Kafka key
// spend none (infrastructure backoff). The partition keeps its order: a
// record runs only when every earlier one is done, so the records behind a
// failed or busy one wait, without running or spending attempts (per-key
// order follows). With passFinished (a store that keeps the offset), each
// call after the first is also given the records finished before, as
// records to pass, so that the stored offset moves past them. settle returns errStopped when the session ended first (the
// finished records are marked), or ErrDeadLetter.
func (h *groupHandler) settle(sctx context.Context, g *claimGuard, ws []*work, log *slog.Logger, passFinished bool,
	exec func(ctx context.Context, seg []*work, hs handlers) error) error {
	pol := h.c.cfg.Retry
	pending := ws
	infraTries := 0
	var storeErr error
	for len(pending) > 0 {
		// A record runs only if every earlier one of the round is done:
		// the partition keeps its order, a failed or busy record holding
		// the ones behind it (they wait without spending attempts).
		stalled := false
		for start := 0; start < len(pending); {
			end := start + 1
			for end < len(pending) && pending[end].store.same(pending[start].store) {
				end++
			}
			seg := pending[start:end]
			if stalled {
				// An earlier segment's record is not done: these wait
				// without a store call (a batch handler would run them).
				for _, w := range seg {
					w.waiting, w.outcome, w.err = true, dedup.Pending, nil
				}
				start = end
				continue
			}
			scanned := 0
			handle := func(ctx context.Context, i int, tx any, outcome func(int) dedup.Outcome) error {
				for ; scanned < i && !stalled; scanned++ {
					stalled = !outcome(scanned).Done()
				}
				w := seg[i]
				if stalled {
					w.waiting = true
					return errWaiting
				}
				err := safely(g.log, []any{"event", w.name, "offset", w.m.Offset}, func() error { return w.run(ctx, tx) })
				stalled = err != nil
				return err
			}
			// many runs the records idx of seg, every earlier one done (the
			// store sees to it), in one call: consecutive records of one
			// batch handler in one call of it, the others one at a time.
			// A panic is a handler error, as in handle.
			many := func(ctx context.Context, tx any, idx []int) error {
				for s := 0; s < len(idx); {
					w := seg[idx[s]]
					if w.batch == nil {
						if err := safely(g.log, []any{"event", w.name, "offset", w.m.Offset}, func() error { return w.run(ctx, tx) }); err != nil {
							return err
						}
						s++
						continue
					}
					e := s + 1
					for e < len(idx) && seg[idx[e]].batch == w.batch {
						e++
					}
					ws := make([]*work, e-s)
					for k := s; k < e; k++ {
						ws[k-s] = seg[idx[k]]
					}
					if err := safely(g.log, []any{"event", w.name, "from", ws[0].m.Offset, "to", ws[len(ws)-1].m.Offset}, func() error { return w.batch.run(ctx, tx, ws) }); err != nil {
						return err
					}
					s = e
				}
				return nil
			}
			for _, w := range seg {
				w.waiting, w.outcome, w.err = false, dedup.Pending, nil
			}
			err := g.call(func(ctx context.Context) error { return exec(ctx, seg, handlers{handle, many}) }, "event", seg[0].name, "from", seg[0].m.Offset, "to", seg[len(seg)-1].m.Offset)
			if errors.Is(err, errStopped) {
				if !g.abandoned() { // exec returned: its outcomes can be read
					h.finish(pending[:end])
				} else {
					h.finish(pending[:start])
				}
				log.Warn("eventgen: batch stopped by shutdown or revocation; its unfinished records left uncommitted", "from", seg[0].m.Offset, "error", err)
				return err
			}
			if err != nil {
				storeErr = err
			}
			for _, w := range seg {
				stalled = stalled || !w.outcome.Done()
			}
			start = end
		}
		var next []*work
		failedAttempt, busy := 0, 0
		for _, w := range pending {
			switch {
			case w.outcome.Done():
				h.finish([]*work{w})
			case w.outcome == dedup.Failed && (w.waiting || errors.Is(w.err, errWaiting)):
				next = append(next, w)
			case w.outcome == dedup.Failed:
				if g.ctx.Err() != nil {
					log.Warn("eventgen: handler failed after its context was cancelled; record left uncommitted", "event", w.name, "offset", w.m.Offset, "error", w.err)
					return errStopped
				}
				log.Warn("eventgen: handler failed", "event", w.name, "offset", w.m.Offset, "attempt", w.attempt, "permanent", IsPermanent(w.err), "error", w.err)
				if w.attempt >= pol.MaxAttempts || IsPermanent(w.err) {
					if err := h.deadLetter(sctx, w.name, w.m, w.err, w.attempt, log); err != nil {
						return err
					}
					if w.run = nil; w.store.passes() {
						next = append(next, w) // its offset passes in the store's next call
					} else {
						w.finished = true
					}
					continue
				}
				h.c.met.Count(w.name, Retried, 1)
				failedAttempt = max(failedAttempt, w.attempt)
				w.attempt++
				next = append(next, w)
			default: // Busy, or Pending after a store error
				if w.outcome == dedup.Busy {
					busy++
				}
				next = append(next, w)
			}
		}
		if len(next) == 0 {
			return nil
		}
		pending = next
		if passFinished {
			// The store keeps the offset: it moves past the done prefix of
			// what one call is given, so the next call is given the
			// finished records again, as records to pass.
			pending = pending[:0:0]
			for _, w := range ws {
				if w.finished {
					w.run = nil
				}
				if w.finished || slices.Contains(next, w) {
					pending = append(pending, w)
				}
			}
		}
		if storeErr == nil && busy == 0 && failedAttempt == 0 {
			continue // only records that waited behind a dead-lettered one
		}
		if storeErr != nil || busy > 0 {
			infraTries++
			h.c.met.Count(pending[0].name, InfraRetried, 1)
			log.Warn("eventgen: dedup store failed or a key is busy in another worker; retrying without spending the records' attempts (partition paused)",
				"event", pending[0].name, "offset", pending[0].m.Offset, "busy", busy, "try", infraTries, "error", storeErr)
		}
		wait := pol.delay(infraTries)
		if failedAttempt > 0 {
			wait = pol.delay(failedAttempt)
		}
		storeErr = nil
		if sleepCtx(sctx, wait) != nil {
			return errStopped
		}
	}
	return nil
}

// finish marks the done records of ws finished and counts them (a record
// passed without effects was counted when it was skipped or dead-lettered).
func (h *groupHandler) finish(ws []*work) {
	for _, w := range ws {
		if w.finished || !w.outcome.Done() {
			continue
		}
		w.finished = true
		switch {
		case w.run == nil:
		case w.outcome == dedup.Duplicate:
			h.c.met.Count(w.name, Duplicates, 1)
		default:
			h.c.met.Count(w.name, Handled, 1)
		}
	}
}

// errWaiting is what a record's handle returns instead of running, while an
// earlier record of its Kafka key is unfinished.
var errWaiting = errors.New("eventgen: waiting for an earlier record of the same key")

// consumeAtLeastOnce takes the partition's buffered records (up to
// MaxBatch), settles them through their events' stores, and commits the
// offset after the finished prefix: contiguously, when nothing more is
// buffered, after MaxBatch records or after CommitInterval.
func (h *groupHandler) consumeAtLeastOnce(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, routes []*route) error {
	log := h.c.log.With("group", h.c.cfg.GroupID, "topic", claim.Topic(), "partition", claim.Partition())
	next := int64(-1)
	pending := map[string]int64{} // finished but uncommitted records, by event name
	uncommitted := 0
	lastCommit := time.Now()
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if err := h.commit(sess, claim.Topic(), claim.Partition(), next); err != nil {
			// Commits are cumulative: the next one covers these records;
			// if there is none, they are redelivered (at-least-once).
			log.Warn("eventgen: commit failed", "offset", next, "error", err)
			return
		}
		for name, n := range pending {
			h.c.met.Count(name, Committed, n)
		}
		clear(pending)
		uncommitted = 0
		lastCommit = time.Now()
	}
	defer flush()
	g := newClaimGuard(h.runState, sess, h.c.cfg.ShutdownGrace, log)
	defer g.release()
	buf := make([]*sarama.ConsumerMessage, 0, h.c.cfg.MaxBatch)
	for {
		var ok bool
		// No more than MaxBatch records of the partition are handled
		// between two commits: the most a crash redelivers.
		if buf, ok = nextBatch(sess, claim, buf, max(1, h.c.cfg.MaxBatch-uncommitted)); !ok {
			return nil
		}
		ws := make([]*work, 0, len(buf))
		var err error
		for _, m := range buf {
			var w *work
			if w, err = h.prepareWork(sess.Context(), routes, m, log); err != nil {
				break
			}
			ws = append(ws, w)
		}
		if err == nil {
			var todo []*work
			for _, w := range ws {
				if !w.finished {
					todo = append(todo, w)
				}
			}
			err = h.settle(sess.Context(), g, todo, log, false, func(ctx context.Context, seg []*work, hs handlers) error {
				return seg[0].store.process(ctx, seg, hs)
			})
		}
		for _, w := range ws {
			if !w.finished {
				break
			}
			next = w.m.Offset + 1
			pending[w.name]++
			uncommitted++
		}
		if err != nil {
			if errors.Is(err, errStopped) {
				return nil
			}
			return err
		}
		if len(claim.Messages()) == 0 || uncommitted >= h.c.cfg.MaxBatch || time.Since(lastCommit) >= h.c.cfg.CommitInterval {
			flush()
		}
	}
}

// setup runs when a session starts: for each assigned partition of a topic
// with exactly-once handlers, it seeks to the offset stored in the
// handlers' store, which is authoritative (Kafka's committed offset is a
// hint). ResetOffset alone cannot move past a committed offset and
// MarkOffset alone cannot move back: both together start at the stored
// offset. A store that cannot be read fails the session, which is retried
// after the rejoin backoff.
func (h *groupHandler) setup(sess sarama.ConsumerGroupSession) error {
	stored := map[string]map[int32]int64{}
	for topic, parts := range sess.Claims() {
		rs := h.routes[topic]
		if len(rs) == 0 || rs[0].g != event.ExactlyOnce {
			continue
		}
		offs, err := rs[0].store.loadOffsets(sess.Context(), h.c.cfg.GroupID, topic)
		if err != nil {
			return fmt.Errorf("eventgen: consumer %s: loading the offsets of %s stored with its effects: %w", h.c.cfg.GroupID, topic, err)
		}
		for _, p := range parts {
			if off, ok := offs[p]; ok {
				sess.ResetOffset(topic, p, off, "")
				sess.MarkOffset(topic, p, off, "")
			}
		}
		stored[topic] = offs
	}
	h.storedMu.Lock()
	h.stored = stored
	h.storedMu.Unlock()
	return nil
}

// consumeExactlyOnce settles each batch of the partition's records through
// the store's ProcessAt: effects, dedup keys and the partition's offset in
// one transaction per store call. After each batch it commits the stored
// offset to Kafka too, for lag tools (a failure there is only logged).
func (h *groupHandler) consumeExactlyOnce(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, routes []*route) error {
	log := h.c.log.With("group", h.c.cfg.GroupID, "topic", claim.Topic(), "partition", claim.Partition())
	at := dedup.Partition{Group: h.c.cfg.GroupID, Topic: claim.Topic(), Partition: claim.Partition()}
	h.storedMu.Lock()
	stored, ok := h.stored[claim.Topic()][claim.Partition()]
	h.storedMu.Unlock()
	if ok && claim.InitialOffset() > stored {
		// Records between would be skipped (a partition assigned without
		// setup, e.g. incrementally): end the session, whose successor's
		// setup seeks.
		return fmt.Errorf("eventgen: %s/%d starts at %d but its effects end at %d; rejoining to resume from the store", claim.Topic(), claim.Partition(), claim.InitialOffset(), stored)
	}
	store := routes[0].store
	g := newClaimGuard(h.runState, sess, h.c.cfg.ShutdownGrace, log)
	defer g.release()
	buf := make([]*sarama.ConsumerMessage, 0, h.c.cfg.MaxBatch)
	for {
		var ok bool
		if buf, ok = nextBatch(sess, claim, buf, h.c.cfg.MaxBatch); !ok {
			return nil
		}
		ws := make([]*work, 0, len(buf))
		var err error
		for _, m := range buf {
			var w *work
			if w, err = h.prepareWork(sess.Context(), routes, m, log); err != nil {
				break
			}
			w.store, w.finished = store, false // even a skipped record passes through the store: its offset is stored there
			ws = append(ws, w)
		}
		if err == nil {
			next := int64(-1)
			err = h.settle(sess.Context(), g, ws, log, true, func(ctx context.Context, seg []*work, hs handlers) error {
				n, err := store.processAt(ctx, at, seg, hs)
				if err == nil {
					next = n
				}
				return err
			})
			if next >= 0 {
				if cerr := h.commit(sess, claim.Topic(), claim.Partition(), next); cerr != nil {
					log.Debug("eventgen: committing the stored offset to Kafka (a hint) failed", "offset", next, "error", cerr)
				}
			}
		}
		done := map[string]int64{}
		for _, w := range ws {
			if !w.finished {
				break
			}
			done[w.name]++
		}
		for name, n := range done {
			h.c.met.Count(name, Committed, n)
		}
		if err != nil {
			if errors.Is(err, errStopped) {
				return nil
			}
			return err
		}
	}
}
