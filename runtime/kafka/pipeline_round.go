package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// A pipeline member works in rounds. A round is everything consumed since
// the last commit, across every partition the member holds: the inputs,
// each with what its handler emitted (or its dead letter), in the order
// each partition produced them. An exactly-once round is one Kafka
// transaction: its outputs are sent while it is open, and its commit adds
// the consumed offsets (with the group's generation, KIP-447) and ends it.
// An at-least-once round's outputs go through the idempotent producer; its
// commit waits for their acknowledgements, then commits the offsets.
//
// A round commits every CommitInterval and as soon as it holds BatchSize
// inputs, whichever comes first. While a commit runs, inputs that finish
// are kept for the next rounds (the next one is sent once it begins), so
// handlers never wait for the broker unless pendingRounds rounds of inputs
// are ready.
//
// The inputs of a round stay in memory until it commits: that is the
// replay buffer. A failed commit that the producer can go on from (an
// abortable error, an epoch error, a transaction the coordinator timed
// out) is aborted and the round is sent again from memory, without
// re-reading, without running handlers again, and without leaving the
// group: a rejoin would rebalance the whole group when the member leads
// it. Only a failure that says the member's generation is over
// (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) drops the
// round and ends the session; the partitions' next owner, this member or
// another, reads them again from the committed offsets.

// input is one consumed record in a round.
type input struct {
	m      *sarama.ConsumerMessage
	status inputStatus
	// event names the record's event for metrics: the pipeline's input
	// event, or the declared event of a skipped record.
	event string
	// outs are the handler's outputs, or the dead letter; none for a
	// skipped record. outEvents names the event of each output.
	outs      []*sarama.ProducerMessage
	outEvents []string
	attempts  int   // handler runs: the dead letter's eventgen_attempts
	retried   int   // failed attempts that were retried
	cause     error // why it was dead-lettered
	// suspect: a rejection for good that could not be pinned to one record
	// named this input's records; on the next try they go alone (1), or
	// one at a time (2). See engine.rebuild.
	suspect int
	// dlqTrim counts how much of the dead letter was dropped after the
	// dead letter itself was rejected for good (see trimmedDeadLetter).
	dlqTrim int
	// resend holds, in an at-least-once round being retried, the outputs
	// that failed (the acknowledged ones are not sent twice).
	resend []*sarama.ProducerMessage
}

type inputStatus int

const (
	handled inputStatus = iota + 1
	skipped
	deadLettered
)

// round is a session's open round. The claims of the session add inputs to
// it; one committer goroutine commits it; Cleanup commits the last one
// before the partitions are released.
type round struct {
	e    *engine
	sess sarama.ConsumerGroupSession
	gm   *sarama.ConsumerGroupMetadata

	mu      sync.Mutex
	room    *sync.Cond // claims wait here while a commit runs and pending is full
	open    []*input   // sent in the open round
	pending []*input   // finished while a commit runs: sent when the next round begins
	blocks  []int      // the sizes of the blocks in pending, in order (see add)
	closing bool       // a commit runs: new inputs go to pending
	// sentUpTo: the outputs of open[:sentUpTo] were sent; unsent counts
	// those of the rest.
	sentUpTo, unsent int
	// claims counts the session's claim loops running, idle those of them
	// waiting for a record with nothing in hand (see CommitWhenIdle).
	claims, idle int
	sealed       bool      // Cleanup took the round: an abandoned claim's late input is refused
	began        time.Time // when the open round sent its first record (zero: nothing yet)
	ended        bool      // the round was dropped: claims stop, the session ends

	full chan struct{} // BatchSize reached
	over chan struct{} // closed when ended
	// stop ends the committer: it starts no new commit, and a commit
	// waiting to retry gives up (the round is dropped). A commit in flight
	// completes: Cleanup waits for it, then commits what is left.
	stopCtx context.Context
	stop    context.CancelFunc
	done    chan struct{} // closed when the committer returned
}

func newRound(e *engine, sess sarama.ConsumerGroupSession) *round {
	r := &round{e: e, sess: sess, full: make(chan struct{}, 1), over: make(chan struct{}), done: make(chan struct{})}
	r.room = sync.NewCond(&r.mu)
	r.stopCtx, r.stop = context.WithCancel(e.handlerCtx)
	if e.eos {
		r.gm = sarama.NewConsumerGroupMetadataFromSession(sess, e.cfg.GroupID, e.instance)
	}
	return r
}

// add puts a block of finished inputs of one partition, in order, into the
// open round, or, while a commit runs, into the next ones. A block is not
// split across rounds: one that does not fit in the open round waits for
// the next, and the open round is committed now (on keyed-alike topics a
// round then touches the partitions of its blocks only). It reports false
// when the round was dropped: the claim must stop, and the block is read
// again later.
func (r *round) add(block ...*input) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for !r.ended && r.laterLocked(len(block)) && len(r.pending) >= pendingRounds*r.e.cfg.BatchSize {
		r.room.Wait()
	}
	if r.ended || r.sealed {
		return false
	}
	if r.laterLocked(len(block)) {
		if !r.closing && len(r.pending) == 0 {
			r.signalLocked() // the open round is as full as it gets
		}
		r.pending = append(r.pending, block...)
		r.blocks = append(r.blocks, len(block))
		return true
	}
	for _, in := range block {
		r.sendLocked(in, in.outs)
	}
	r.signalFullLocked()
	return true
}

// join and leave count a claim loop in the round's session; waiting and
// working mark it waiting for a record with nothing in hand, or not.
func (r *round) join() { r.mu.Lock(); r.claims++; r.mu.Unlock() }

func (r *round) leave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claims--
	r.commitIfIdleLocked()
}

func (r *round) waiting() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle++
	r.commitIfIdleLocked()
}

func (r *round) working() { r.mu.Lock(); r.idle--; r.mu.Unlock() }

// commitIfIdleLocked wakes the committer when CommitWhenIdle is set, the
// open round holds inputs, nothing waits behind it and every claim waits
// for its next record: the round will not grow until records arrive.
func (r *round) commitIfIdleLocked() {
	if r.e.cfg.CommitWhenIdle && r.idle >= r.claims && len(r.open) > 0 && len(r.pending) == 0 && !r.closing {
		r.signalLocked()
	}
}

// laterLocked reports whether a block of n inputs must wait for a later
// round: a commit runs, older inputs wait already (a partition's inputs are
// committed in order), or the open round has no room for the whole block.
func (r *round) laterLocked(n int) bool {
	return r.closing || len(r.pending) > 0 || len(r.open) > 0 && len(r.open)+n > r.e.cfg.BatchSize
}

// pendingRounds is how many rounds of finished inputs may wait while a
// commit runs: the next round is ready when the commit returns, and the
// claims go on transforming the one after it meanwhile, rather than wait
// for room each time the committer takes a round.
const pendingRounds = 2

// sendLocked adds in to the open round; its outputs go to the producer
// with the next chunk (flushLocked). Sending under r.mu keeps every send of
// a round before its commit starts.
func (r *round) sendLocked(in *input, msgs []*sarama.ProducerMessage) {
	r.open = append(r.open, in)
	if r.unsent += len(msgs); r.unsent >= sendChunk {
		r.flushLocked()
	}
}

// sendChunk is how many outputs a round hands to the producer at once (a
// commit sends the rest). Outputs handed over one by one as handlers emit
// them leave in many small produce requests (one in flight per broker for
// an idempotent producer), each costing the broker and the client nearly
// as much as a full one.
const sendChunk = 100

// flushLocked sends the outputs of the open round's inputs not sent yet.
func (r *round) flushLocked() {
	for _, in := range r.open[r.sentUpTo:] {
		r.sendOnlyLocked(in, in.outs, false)
	}
	r.sentUpTo, r.unsent = len(r.open), 0
}

// sendOnlyLocked sends msgs of in, which is already in the round; again
// when they were sent before (see outputs.send).
func (r *round) sendOnlyLocked(in *input, msgs []*sarama.ProducerMessage, again bool) {
	if r.began.IsZero() {
		// No later than the coordinator's clock, which starts when the
		// first record or offset reaches it (see overdue).
		r.began = time.Now()
	}
	r.e.out.send(in, msgs, again)
}

// overdue reports whether the open round has outlived
// Producer.Transaction.Timeout: the coordinator may have aborted it and
// bumped the epoch, so a PRODUCER_FENCED now is most likely its own
// timeout, not a newer instance. The clock starts before anything of the
// round reached the coordinator, so a round that is not overdue here
// cannot have been timed out there.
func (r *round) overdue() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.began.IsZero() && time.Since(r.began) >= r.e.prodCfg.Producer.Transaction.Timeout
}

// run commits the round every CommitInterval, and at once when it is full,
// until stop or the round ends.
func (r *round) run() {
	defer close(r.done)
	t := time.NewTicker(r.e.cfg.CommitInterval)
	defer t.Stop()
	for {
		if r.stopCtx.Err() != nil {
			// Before a full round's signal: once stopped, every commit is
			// Cleanup's (last).
			r.last()
			return
		}
		select {
		case <-r.stopCtx.Done():
			r.last()
			return
		case <-r.over:
			return
		case <-t.C:
		case <-r.full:
		}
		r.commit(false)
	}
}

// last is the session's last commit, when Cleanup stops the committer
// (the round is sealed by then): the open round is committed before the
// partitions are released, or aborted if the pipeline failed.
func (r *round) last() {
	if r.e.err() != nil {
		r.e.abandonTxn()
		return
	}
	r.mu.Lock()
	n := len(r.open)
	r.mu.Unlock()
	if n > 0 {
		r.e.log.Info("eventgen: session ending; committing the open round before the partitions are released", "kind", r.e.kind, "inputs", n)
	}
	// Up to pendingRounds rounds wait behind the open one: each is
	// committed in turn (the claims have returned, so no more come).
	for {
		r.commit(true)
		r.mu.Lock()
		more := !r.ended && len(r.open) > 0
		r.mu.Unlock()
		if !more {
			return
		}
	}
}

// end drops what the round holds and ends the session: claims return, and
// the partitions are read again from their committed offsets.
func (r *round) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.ended = true
	r.open, r.pending, r.blocks = nil, nil, nil
	close(r.over)
	r.room.Broadcast()
}

// commit commits the open round, recovering from what can be recovered
// from. final is Cleanup's commit: the session is over, so a failure that
// would be retried later drops the round instead (its partitions' next
// owner reads it again). Waits for the broker are bounded by sarama's own
// timeouts, not by stop: a rebalance lets a commit in flight complete.
func (r *round) commit(final bool) {
	ctx := r.e.handlerCtx
	r.mu.Lock()
	if len(r.open) == 0 || r.ended || r.closing {
		r.mu.Unlock()
		return
	}
	r.closing = true
	r.flushLocked()
	batch := r.open
	r.mu.Unlock()
	for try := 1; ; try++ {
		err := r.e.commitRound(ctx, r, batch)
		if err == nil {
			r.e.out.reset()
			r.e.count(batch)
			if r.e.out.acks && !r.e.ackedRounds() && !r.e.setAcks(false, where(batch)) {
				r.end()
				return
			}
			r.reopen()
			return
		}
		next, ok := r.e.recover(ctx, r, batch, err, try, final)
		if !ok {
			r.end()
			return
		}
		batch = next
		r.e.out.reset()
		if err := r.resend(ctx, batch); err != nil {
			r.e.fail(err)
			r.end()
			return
		}
	}
}

// reopen starts the next round after a commit with the inputs that
// finished meanwhile: the blocks that fit in one round; the rest stay
// pending, and the new round is then committed as soon as it is sent.
func (r *round) reopen() {
	r.mu.Lock()
	defer r.mu.Unlock()
	take, k := 0, 0
	for k < len(r.blocks) && (k == 0 || take+r.blocks[k] <= r.e.cfg.BatchSize) {
		take += r.blocks[k]
		k++
	}
	pending := r.pending[:take]
	r.open, r.pending, r.blocks = nil, slices.Clone(r.pending[take:]), slices.Clone(r.blocks[k:])
	r.closing, r.began = false, time.Time{}
	r.sentUpTo, r.unsent = 0, 0
	if err := r.e.begin(); err != nil {
		r.e.fail(err)
		r.ended = true
		close(r.over)
		r.room.Broadcast()
		return
	}
	for _, in := range pending {
		r.sendLocked(in, in.outs)
	}
	if len(r.pending) > 0 {
		r.signalLocked() // what waits does not fit: nothing joins this round
	} else {
		r.signalFullLocked()
		r.commitIfIdleLocked()
	}
	r.room.Broadcast()
}

// signalFullLocked wakes the committer when the open round is full.
func (r *round) signalFullLocked() {
	if len(r.open) >= r.e.cfg.BatchSize {
		r.signalLocked()
	}
}

// signalLocked wakes the committer to commit the open round now.
func (r *round) signalLocked() {
	select {
	case r.full <- struct{}{}:
	default:
	}
}

// resend begins the round again and sends its outputs from memory. A
// suspect input (see input.suspect) is sent alone, what was sent before it
// acknowledged first and its own answers awaited, so that a rejection
// names it alone; at suspect level 2 each of its records goes alone.
// resend stops at the first failure: the commit then fails, and recover
// learns from it.
func (r *round) resend(ctx context.Context, batch []*input) error {
	if err := r.e.begin(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open, r.began = batch, time.Time{}
	r.sentUpTo, r.unsent = len(batch), 0 // sent below, from memory
	// clean waits until everything sent so far is answered, and reports
	// whether none of it failed.
	clean := func() bool {
		fs, err := r.e.out.wait(ctx)
		return err == nil && len(fs) == 0
	}
	for _, in := range batch {
		msgs := in.outs
		if !r.e.eos {
			msgs, in.resend = in.resend, nil // the acknowledged ones are durable
		}
		level := in.suspect
		in.suspect = 0
		switch {
		case level == 0:
			r.sendOnlyLocked(in, msgs, true)
		case level == 1 || len(msgs) < 2:
			if !clean() {
				in.resend, in.suspect = msgs, level
				return nil
			}
			r.sendOnlyLocked(in, msgs, true)
			if !clean() {
				return nil
			}
		default:
			for i, pm := range msgs {
				if !clean() {
					in.resend, in.suspect = msgs[i:], level
					return nil
				}
				r.sendOnlyLocked(in, []*sarama.ProducerMessage{pm}, true)
				if !clean() {
					in.resend = msgs[i+1:]
					return nil
				}
			}
		}
	}
	return nil
}

// offsets returns the next offset of every partition of batch.
func offsetsOf(batch []*input) map[string]map[int32]int64 {
	next := map[string]map[int32]int64{}
	for _, in := range batch {
		m := in.m
		ps := next[m.Topic]
		if ps == nil {
			ps = map[int32]int64{}
			next[m.Topic] = ps
		}
		if m.Offset+1 > ps[m.Partition] {
			ps[m.Partition] = m.Offset + 1
		}
	}
	return next
}

// membershipError reports whether err says that the member's generation is
// over: its offsets can no longer be committed for this session.
func membershipError(err error) bool {
	return anyProducerError(err, func(err error) bool {
		return errors.Is(err, sarama.ErrIllegalGeneration) || errors.Is(err, sarama.ErrUnknownMemberId) ||
			errors.Is(err, sarama.ErrRebalanceInProgress)
	})
}

// where locates a round in logs and errors: its inputs per partition.
func where(batch []*input) string {
	if len(batch) == 0 {
		return "an empty round"
	}
	first, last := batch[0].m, batch[len(batch)-1].m
	return fmt.Sprintf("%d inputs, %s/%d@%d … %s/%d@%d", len(batch), first.Topic, first.Partition, first.Offset, last.Topic, last.Partition, last.Offset)
}
