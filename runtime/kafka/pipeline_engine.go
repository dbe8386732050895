package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// engine is the part of a pipeline that does not depend on the input's Go
// type: the producer, the rounds, their commits and recovery.
type engine struct {
	cfg      PipelineConfig
	eos      bool   // exactly-once: transactions; else at-least-once
	kind     string // "exactly-once pipeline" or "at-least-once pipeline", in logs and errors
	inName   string // the input event, for metrics
	dlqTopic string // the input topic's dead-letter topic
	log      *slog.Logger
	met      Metrics
	hooks    *pipelineHooks
	instance *string // static membership, for the group metadata of transactions

	*runState                // set when the group run starts
	prodCfg   *sarama.Config // to re-initialise the producer
	out       *outputs       // the producer; replaced by reinit
	// recoveries counts producer re-initialisations since the last
	// committed round.
	recoveries int
	// inTxn: the transactional producer has begun a transaction that was
	// not committed or aborted yet.
	inTxn bool

	cur *round // the session's round, between Setup and Cleanup

	// sessions counts the group sessions the member went through (a test
	// reads it to tell that an abort did not rejoin the group).
	sessions atomic.Int64
	// abandoned: Cleanup gave up waiting for a commit that the broker
	// does not answer; the committer leaves the producer alone from then
	// on and closes it when sarama returns (see cleanup).
	abandoned atomic.Bool
}

// pipelineHooks lets tests stop a pipeline at chosen points. Nil fields are
// skipped; production code never sets them.
type pipelineHooks struct {
	// beforeCommit runs just before the commit, with every output of the
	// round acknowledged (or failed) when the rounds wait for that (see
	// acks), else sent, and, exactly-once, the offsets added.
	beforeCommit func(batch []*sarama.ConsumerMessage)
	// atCleanup runs when a session ends (every claim has returned), with
	// the number of inputs the open round holds, before the committer is
	// stopped and the last round committed.
	atCleanup func(open int)
	// acks makes exactly-once rounds wait for every output's
	// acknowledgement, as at-least-once rounds do, so that beforeCommit
	// runs with every output written (without, it runs with every output
	// sent, and CommitTxn waits for them).
	acks bool
}

// ackedRounds reports whether the pipeline's rounds wait for every output's
// acknowledgement before they commit: at-least-once ones (to commit
// offsets only then), exactly-once ones only when a test asks. Other
// exactly-once rounds are acknowledged by their commit (see outputs).
func (e *engine) ackedRounds() bool {
	return !e.eos || e.hooks != nil && e.hooks.acks
}

// begin opens a transaction (exactly-once) if none is open.
func (e *engine) begin() error {
	if !e.eos || e.inTxn {
		return nil
	}
	if err := e.out.prod.BeginTxn(); err != nil {
		return fmt.Errorf("%w: %s %s: begin: %w", ErrProducerFatal, e.kind, e.cfg.TransactionalID, err)
	}
	e.inTxn = true
	return nil
}

// commitRound makes batch durable: exactly-once, the consumed offsets are
// added to the transaction (with the session's group metadata) and the
// transaction is committed, which flushes the outputs first; at-least-once,
// every output's acknowledgement is awaited, then the offsets are
// committed for the session's generation.
func (e *engine) commitRound(ctx context.Context, r *round, batch []*input) error {
	next := offsetsOf(batch)
	if e.out.acks {
		// Every output answered first (a commit would flush them anyway),
		// so that a failed send is the commit's error, not a later symptom
		// of it.
		fs, err := e.out.wait(ctx)
		if err != nil {
			return err
		}
		if len(fs) > 0 {
			return failuresError(fs)
		}
	}
	if !e.eos {
		if e.hooks != nil && e.hooks.beforeCommit != nil {
			e.hooks.beforeCommit(messagesOf(batch))
		}
		return commitOffsets(e.client, e.cfg.GroupID, e.cfg.InstanceID, r.sess, next)
	}
	offsets := make(map[string][]*sarama.PartitionOffsetMetadata, len(next))
	for topic, ps := range next {
		for p, off := range ps {
			// Leader epoch -1 (unknown), not sarama's default 0: see
			// commitOffsets.
			offsets[topic] = append(offsets[topic], &sarama.PartitionOffsetMetadata{Partition: p, Offset: off, LeaderEpoch: -1})
		}
	}
	if err := e.out.prod.AddOffsetsToTxnWithGroupMetadata(offsets, r.gm); err != nil {
		if !e.out.acks && e.out.prod.TxnStatus()&sarama.ProducerTxnFlagInError != 0 {
			// A record failed (sarama refuses offsets once the transaction
			// is in error): learn which, as below.
			return e.txnFailures(e.out.prod.CommitTxn())
		}
		return err
	}
	if e.hooks != nil && e.hooks.beforeCommit != nil {
		e.hooks.beforeCommit(messagesOf(batch))
	}
	err := e.out.prod.CommitTxn()
	for try := 1; err != nil && stuckCommitting(e.out.prod.TxnStatus()) && !e.abandoned.Load(); try++ {
		// sarama gave up on EndTxn without an answer that settles it
		// (CONCURRENT_TRANSACTIONS or coordinator errors past its retries,
		// no response). The transaction may already be committing: it
		// must not be aborted and replayed, only asked again (EndTxn is
		// idempotent for its epoch). A coordinator that never answers
		// times the transaction out, and the next try says so.
		e.log.Warn("eventgen: transaction commit not settled; asking again", "transactional_id", e.cfg.TransactionalID, "try", try, "error", err)
		time.Sleep(e.cfg.Retry.delay(try))
		err = e.out.prod.CommitTxn()
	}
	if err == nil {
		e.inTxn = false
		e.recoveries = 0
		return nil
	}
	if !e.out.acks {
		return e.txnFailures(err)
	}
	return err
}

// txnFailures is the error of a failed CommitTxn of a producer without
// acks. CommitTxn first waits for every record in flight, and in a
// transaction in error (a record failed, or the producer was fenced) it
// returns that error without committing anything (sarama's
// finishTransaction); the failed records then name the cause, as a
// producer with acks names them before it commits.
func (e *engine) txnFailures(commitErr error) error {
	if commitErr == nil {
		// Unreachable with sarama v1.61.1: it commits nothing once the
		// transaction is in error. Offsets were refused, so the outputs
		// went without them: the inputs are read again.
		return fmt.Errorf("%w: %s %s: a transaction in error was committed without its offsets", ErrProducerFatal, e.kind, e.cfg.TransactionalID)
	}
	if fs := e.out.settle(); len(fs) > 0 {
		return failuresError(fs)
	}
	return commitErr
}

// stuckCommitting reports whether a transactional producer is left in the
// middle of a commit: EndTxn sent, no answer that settles it.
func stuckCommitting(st sarama.ProducerTxnStatusFlag) bool {
	return st&sarama.ProducerTxnFlagCommittingTransaction != 0 && st&sarama.ProducerTxnFlagInError == 0
}

func messagesOf(batch []*input) []*sarama.ConsumerMessage {
	ms := make([]*sarama.ConsumerMessage, len(batch))
	for i, in := range batch {
		ms[i] = in.m
	}
	return ms
}

// maxRecoveries bounds the producer re-initialisations (after epoch errors
// and transaction timeouts) in a row without a committed round; one more
// stops the pipeline with ErrProducerFatal.
const maxRecoveries = 5

// maxFinalTries bounds Cleanup's commit attempts: poison outputs need one
// try each to be found; anything else drops the round.
const maxFinalTries = 8

// recover handles a failed commit of batch. It returns the batch to send
// again (poison outputs replaced by dead letters) and true, or false when
// the round must be dropped: the member's generation is over, Cleanup's
// commit cannot complete, the pipeline stopped (fencing, a fatal error:
// e.fail was called), or ctx ended while waiting to retry.
func (e *engine) recover(ctx context.Context, r *round, batch []*input, cause error, try int, final bool) ([]*input, bool) {
	if e.err() != nil {
		return nil, false // the pipeline stopped (an abandoned commit, another failure): touch nothing
	}
	at := where(batch)
	out := e.out // recoverTxn may replace it
	if e.eos && !e.recoverTxn(r, at, cause) {
		return nil, false
	}
	// The transaction is over (aborted, or its producer closed): every
	// record has its answer.
	fs, _ := out.failures(ctx)
	if !e.eos && fenced(cause) {
		// FENCED_INSTANCE_ID on an offset commit (at-least-once): a newer
		// static member has this one's identity. (Exactly-once,
		// recoverTxn has classified it.)
		e.fail(fmt.Errorf("%w: %s %s at %s: %w", ErrFenced, e.kind, e.cfg.GroupID, at, cause))
		return nil, false
	}
	if membershipError(cause) {
		what := "round dropped"
		if e.eos {
			what = "transaction aborted"
		}
		e.log.Warn("eventgen: the group's generation moved on; "+what+", its inputs are read again by their partitions' next owner", "kind", e.kind, "round", at, "error", cause)
		return nil, false
	}
	poisoned, suspects := e.rebuild(batch, fs)
	if suspects > 0 && !e.out.acks && !e.setAcks(true, at) {
		return nil, false // isolating a suspect waits for acknowledgements
	}
	if final && try >= maxFinalTries {
		e.log.Warn("eventgen: the session's last round could not be committed; dropped, its inputs are read again by their partitions' next owner", "kind", e.kind, "round", at, "error", cause)
		return nil, false
	}
	if poisoned+suspects > 0 {
		// Progress is certain: retry at once.
		return batch, true
	}
	if final {
		e.log.Warn("eventgen: the session's last round failed; dropped, its inputs are read again by their partitions' next owner", "kind", e.kind, "round", at, "error", cause)
		return nil, false
	}
	e.log.Warn("eventgen: round failed; sending it again from memory", "kind", e.kind, "round", at, "try", try, "error", flattenProducerErrors(cause))
	if sleepCtx(r.stopCtx, e.cfg.Retry.delay(try)) != nil {
		return nil, false // the session is ending: its next owner reads the round again
	}
	return batch, true
}

// recoverTxn ends the failed transaction of an exactly-once round: fencing
// by a newer instance and fatal errors stop the pipeline (false); an
// abortable error is aborted; an epoch error or a transaction the
// coordinator timed out re-initialises the producer (at most maxRecoveries
// times in a row without a commit). It reports whether the round can be
// sent again.
func (e *engine) recoverTxn(r *round, at string, cause error) bool {
	st := e.out.prod.TxnStatus()
	// FENCED_INSTANCE_ID is the group's fencing (a newer static member):
	// never our own timeout.
	recoverable := epochError(cause) || (producerFenced(cause) && r.overdue())
	if fenced(cause) && !recoverable {
		e.fail(fmt.Errorf("%w: %s %s at %s: %w", ErrFenced, e.kind, e.cfg.TransactionalID, at, cause))
		return false
	}
	if st&sarama.ProducerTxnFlagFatalError != 0 && !recoverable {
		e.fail(fmt.Errorf("%w: %s %s at %s: %w", ErrProducerFatal, e.kind, e.cfg.TransactionalID, at, flattenProducerErrors(cause)))
		return false
	}
	if st&sarama.ProducerTxnFlagFatalError == 0 && st&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) != 0 {
		if err := e.out.prod.AbortTxn(); err != nil {
			switch {
			case fenced(err) && !(producerFenced(err) && r.overdue()):
				e.fail(fmt.Errorf("%w: %s %s: abort at %s failed (%w): %w", ErrFenced, e.kind, e.cfg.TransactionalID, at, cause, err))
				return false
			case epochError(err) || producerFenced(err):
				recoverable = true
			default:
				e.fail(fmt.Errorf("%w: %s %s: abort at %s failed (%w): %w", ErrProducerFatal, e.kind, e.cfg.TransactionalID, at, cause, err))
				return false
			}
		}
	}
	e.inTxn = false
	if recoverable && (e.out.prod.TxnStatus()&(sarama.ProducerTxnFlagFatalError|sarama.ProducerTxnFlagInError) != 0 || producerFenced(cause)) {
		return e.reinit(at, cause)
	}
	return true
}

// reinit replaces the transactional producer after an epoch error or a
// transaction timeout: the old one is closed and a new one with the same
// TransactionalID runs InitProducerID, which completes (aborts) whatever
// the old one left open and gives a fresh epoch. It reports whether the
// pipeline can go on.
func (e *engine) reinit(at string, cause error) bool {
	e.recoveries++
	if e.recoveries > maxRecoveries {
		e.fail(fmt.Errorf("%w: %s %s at %s: %d producer re-initialisations without a commit: %w", ErrProducerFatal, e.kind, e.cfg.TransactionalID, at, maxRecoveries, cause))
		return false
	}
	e.log.Warn("eventgen: epoch error or transaction timeout; re-initialising the transactional producer", "transactional_id", e.cfg.TransactionalID, "round", at, "error", cause, "timeout", e.prodCfg.Producer.Transaction.Timeout)
	if kind, err := e.replaceProducer(e.out.acks); err != nil {
		e.fail(fmt.Errorf("%w: %s %s: re-initialising the producer after %s failed (%w): %w", kind, e.kind, e.cfg.TransactionalID, at, cause, err))
		return false
	}
	return true
}

// replaceProducer closes the producer and starts another with the same
// TransactionalID, with or without acks: its InitProducerID completes what
// the old one left open and gives a fresh epoch. A failure comes with its
// kind: ErrFenced when a newer instance holds the TransactionalID, else
// ErrProducerFatal.
func (e *engine) replaceProducer(acks bool) (kind, err error) {
	_ = e.out.close()
	out, err := newOutputs(e.cfg.Brokers, e.prodCfg, acks)
	if err != nil {
		if fenced(err) {
			return ErrFenced, err
		}
		return ErrProducerFatal, err
	}
	e.out = out
	return nil, nil
}

// setAcks replaces an exactly-once pipeline's producer, between
// transactions, by one with or without acks (see outputs): with them to
// isolate a poison output, without them again once the round that held it
// is committed. The new producer's InitProducerID gives a fresh epoch of
// the same TransactionalID. It reports whether the pipeline can go on.
func (e *engine) setAcks(acks bool, at string) bool {
	e.log.Info("eventgen: replacing the transactional producer", "transactional_id", e.cfg.TransactionalID, "acknowledgements", acks, "round", at)
	if kind, err := e.replaceProducer(acks); err != nil {
		e.fail(fmt.Errorf("%w: %s %s: replacing the producer at %s: %w", kind, e.kind, e.cfg.TransactionalID, at, err))
		return false
	}
	return true
}

// rebuild prepares a failed round to be sent again, learning from the
// failures fs of its outputs. An input is dead-lettered instead (none of
// its outputs sent) only once a rejection for good is pinned on one of its
// records: the client's own size check names its record; a broker's
// rejection names a whole produce request (Kafka checks max.message.bytes
// against the batch), so when it covers several inputs they are sent alone
// on the next try (suspect 1), and when it covers several records of one
// input, those are sent one at a time (suspect 2); each try pins a record
// or clears a suspect, so this ends. A rejected dead letter is trimmed
// (value, original headers, key). An at-least-once round resends only what
// failed. It returns how many inputs were dead-lettered and how many are
// suspects.
func (e *engine) rebuild(batch []*input, fs []sendFailure) (poisoned, suspects int) {
	rejected := map[*input]error{}
	records := map[*input]int{} // records of each input rejected for good
	client := true
	for _, f := range fs {
		if f.in == nil || !permanentOutputError(f.err) {
			continue
		}
		var ce sarama.ConfigurationError
		own := errors.As(f.err, &ce)
		if own && f.msg.ByteSize(2) <= e.prodCfg.Producer.MaxMessageBytes {
			// Not this record's fault: once a transaction is in error,
			// sarama fails the records still queued with the first error.
			continue
		}
		if _, seen := rejected[f.in]; !seen {
			rejected[f.in] = fmt.Errorf("output to %s rejected for good: %w", f.msg.Topic, f.err)
		}
		records[f.in]++
		client = client && own
	}
	var poison []*input
	switch {
	case len(rejected) == 0:
	case client:
		for in := range rejected {
			poison = append(poison, in)
		}
	case len(rejected) > 1:
		for in := range rejected {
			in.suspect = max(in.suspect, 1)
			suspects++
		}
		e.log.Warn("eventgen: outputs rejected for good, several inputs' records in one produce request; sending each of those inputs alone to find the poison", "kind", e.kind, "inputs", len(rejected))
	default:
		for in := range rejected {
			if records[in] == 1 || len(in.outs) == 1 {
				poison = append(poison, in)
				continue
			}
			in.suspect = 2
			suspects++
			e.log.Warn("eventgen: records of one input rejected for good together; sending them one at a time to find the poison", "kind", e.kind, "topic", in.m.Topic, "partition", in.m.Partition, "offset", in.m.Offset, "records", records[in])
		}
	}
	if !e.eos {
		dead := map[*input]bool{}
		for _, in := range poison {
			dead[in] = true
		}
		for _, f := range fs {
			if f.in != nil && !dead[f.in] {
				f.in.resend = append(f.in.resend, f.msg)
			}
		}
	}
	for _, in := range poison {
		err, m := rejected[in], in.m
		if in.status == deadLettered {
			in.dlqTrim++
			if in.dlqTrim > maxDeadLetterTrim {
				e.fail(fmt.Errorf("%w: %s: the dead letter of %s/%d@%d is rejected even without value, headers and key: %w", ErrDeadLetter, e.kind, m.Topic, m.Partition, m.Offset, err))
				return poisoned, suspects
			}
			e.log.Error("eventgen: dead letter rejected for good; trimming it", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "trim", in.dlqTrim, "error", err)
		} else {
			e.log.Error("eventgen: pipeline output rejected for good; dead-lettering its input", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", err)
			in.status, in.cause = deadLettered, err
		}
		in.outs = []*sarama.ProducerMessage{trimmedDeadLetter(e.cfg.GroupID, m, in.cause, in.attempts, in.dlqTrim, err)}
		in.outEvents = nil
		in.resend = in.outs
		in.suspect = 0
		poisoned++
	}
	return poisoned, suspects
}

// maxDeadLetterTrim is the last trim level of a rejected dead letter (see
// trimmedDeadLetter).
const maxDeadLetterTrim = 3

// trimmedDeadLetter is the dead letter of m with parts dropped after
// rejections: trim 0 the whole record, 1 without its value, 2 also without
// the original headers, 3 also without its key (the eventgen_* headers
// stay, and eventgen_error says why).
func trimmedDeadLetter(group string, m *sarama.ConsumerMessage, cause error, attempts, trim int, rejected error) *sarama.ProducerMessage {
	if trim == 0 {
		return deadLetterMessage(group, m, cause, attempts)
	}
	c := *m
	c.Value = nil
	if trim > 1 {
		c.Headers = nil
	}
	if trim > 2 {
		c.Key = nil
	}
	return deadLetterMessage(group, &c, fmt.Errorf("%w (dead letter trimmed: %v)", cause, rejected), attempts)
}

// count reports a committed round to the metrics.
func (e *engine) count(batch []*input) {
	var handledN, deadN, retriedN int64
	skippedN := map[string]int64{}
	emitted := map[string]int64{}
	for _, in := range batch {
		retriedN += int64(in.retried)
		switch in.status {
		case handled:
			handledN++
			for _, name := range in.outEvents {
				emitted[name]++
			}
		case skipped:
			skippedN[in.event]++
		case deadLettered:
			deadN++
		}
	}
	e.met.Count(e.inName, Committed, int64(len(batch)))
	if handledN > 0 {
		e.met.Count(e.inName, Handled, handledN)
	}
	if deadN > 0 {
		e.met.Count(e.inName, DeadLettered, deadN)
	}
	if retriedN > 0 {
		e.met.Count(e.inName, Retried, retriedN)
	}
	for name, n := range skippedN {
		e.met.Count(name, Skipped, n)
	}
	for name, n := range emitted {
		e.met.Count(name, Acked, n)
	}
}
