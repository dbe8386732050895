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

// TransactionalProducer writes events to several topics atomically: records
// sent in one transaction become visible to read_committed consumers all
// together at Commit, or never (Abort, failure). One transaction is open at a
// time; Begin waits for the previous one to finish. Safe for concurrent use.
type TransactionalProducer struct {
	sp      sarama.SyncProducer
	id      string
	log     *slog.Logger
	metrics Metrics

	sem chan struct{} // holds a token while a transaction is open

	// txTimeout is Producer.Transaction.Timeout; txStart is when Commit or
	// Abort of the open transaction started writing (under the token).
	txTimeout time.Duration
	txStart   time.Time

	mu     sync.Mutex
	err    error // sticky: ErrClosed, ErrFenced or ErrProducerFatal (wrapped)
	open   *Tx
	closed bool // sp closed
}

// NewTransactionalProducer connects to cfg.Brokers and initialises
// cfg.TransactionalID (aborting a transaction an earlier producer with the
// same ID left open, and fencing that producer). Settings: idempotent,
// acks=all, Net.MaxOpenRequests=1, Producer.Retry.Max=10,
// Producer.Transaction.ID = cfg.TransactionalID, sarama's defaults for
// Producer.Transaction.Timeout (1 min) and Transaction.Retry. Tune may change
// timeouts and batching; settings that break transactions are rejected by
// name.
func NewTransactionalProducer(cfg ProducerConfig) (*TransactionalProducer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Config = cfg.Config.withDefaults()
	transactionalID := cfg.TransactionalID
	sc, err := cfg.saramaConfig(transactionalProducer, identity{transactionalID: transactionalID, transactionalIDField: "ProducerConfig.TransactionalID"})
	if err != nil {
		return nil, err
	}
	sp, err := startSyncProducer(cfg.Brokers, sc)
	if err != nil {
		err = flattenProducerErrors(err)
		if fenced(err) {
			return nil, fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return nil, fmt.Errorf("eventgen: transactional producer %q: %w", transactionalID, err)
	}
	return &TransactionalProducer{
		sp:      sp,
		id:      transactionalID,
		log:     cfg.Logger.With("transactional_id", transactionalID),
		metrics: cfg.Metrics,
		sem:     make(chan struct{}, 1),

		txTimeout: sc.Producer.Transaction.Timeout,
	}, nil
}

// Tx is one open transaction. Its methods are safe for concurrent use, but
// Send after Commit or Abort returns ErrTxnDone.
type Tx struct {
	p   *TransactionalProducer
	ctx context.Context // for values (traceparent) only

	mu       sync.Mutex
	finished bool // Commit or Abort started
	msgs     []*sarama.ProducerMessage
}

// Begin waits until no other transaction of this producer is open (or ctx is
// done) and opens one. The traceparent of ctx goes into the headers of the
// transaction's records.
func (p *TransactionalProducer) Begin(ctx context.Context) (*Tx, error) {
	if err := p.state(); err != nil {
		return nil, err
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := p.state(); err != nil {
		<-p.sem
		return nil, err
	}
	p.txStart = time.Time{}
	if err := p.sp.BeginTxn(); err != nil {
		err = p.classify("begin", err)
		<-p.sem
		return nil, err
	}
	t := &Tx{p: p, ctx: context.WithoutCancel(ctx)}
	p.mu.Lock()
	p.open = t
	p.mu.Unlock()
	return t, nil
}

// overdue reports whether the open transaction started writing longer than
// Producer.Transaction.Timeout ago. This clock starts before the
// coordinator's (records are buffered until Commit), so a transaction that
// is not overdue here cannot have been timed out there.
func (p *TransactionalProducer) overdue() bool {
	return !p.txStart.IsZero() && time.Since(p.txStart) >= p.txTimeout
}

func (p *TransactionalProducer) state() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Send validates and encodes e and adds it to the transaction. Records are
// buffered and written at Commit, so Send does not touch the network; an
// error here (invalid event) leaves the transaction open and usable.
func (t *Tx) Send(e event.Event) error {
	msg, _, err := encodeEvent(t.ctx, e)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return ErrTxnDone
	}
	if err := t.p.state(); err != nil {
		return err
	}
	t.msgs = append(t.msgs, msg)
	return nil
}

// Len returns the number of records sent in the transaction so far.
func (t *Tx) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.msgs)
}

// Commit writes the transaction's records and commits them. On success all
// of them are visible to read_committed consumers. On an abortable error the
// transaction is aborted and the error matches ErrTxnAborted (nothing is
// visible; the producer is usable). On a fatal error or fencing the producer
// is closed and the error matches ErrProducerFatal or ErrFenced.
// If ctx is done first, Commit returns ctx's error and the transaction
// finishes in the background with an unknown outcome; the next Begin waits
// for it.
func (t *Tx) Commit(ctx context.Context) error { return t.finish(ctx, true) }

// Abort aborts the transaction: none of its records become visible.
func (t *Tx) Abort(ctx context.Context) error { return t.finish(ctx, false) }

func (t *Tx) finish(ctx context.Context, commit bool) error {
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return ErrTxnDone
	}
	t.finished = true
	msgs := t.msgs
	t.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		err := t.p.end(msgs, commit)
		t.p.mu.Lock()
		t.p.open = nil
		t.p.mu.Unlock()
		<-t.p.sem
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		verb := "commit"
		if !commit {
			verb = "abort"
		}
		return fmt.Errorf("eventgen: transaction %s continues in the background, outcome unknown: %w", verb, ctx.Err())
	}
}

// end runs on a goroutine holding the transaction token.
func (p *TransactionalProducer) end(msgs []*sarama.ProducerMessage, commit bool) error {
	// Close waits for the token before closing sp, so sp is only closed here
	// after a fencing or fatal error.
	p.mu.Lock()
	closed, perr := p.closed, p.err
	p.mu.Unlock()
	if closed {
		return perr
	}
	// Records are buffered until now, so the coordinator's transaction
	// cannot have begun before this.
	p.txStart = time.Now()
	if !commit {
		if err := p.sp.AbortTxn(); err != nil {
			return p.classify("abort", err)
		}
		p.count(msgs, Dropped)
		return nil
	}
	if len(msgs) > 0 {
		p.count(msgs, Sent)
		err := p.sp.SendMessages(msgs)
		p.countRetries(msgs)
		if err != nil {
			return p.abortAfter("send", msgs, err)
		}
	}
	if err := p.sp.CommitTxn(); err != nil {
		return p.abortAfter("commit", msgs, err)
	}
	p.count(msgs, Acked)
	return nil
}

// abortAfter handles a failed send or commit: fatal errors and fencing close
// the producer; otherwise the transaction is aborted.
func (p *TransactionalProducer) abortAfter(op string, msgs []*sarama.ProducerMessage, err error) error {
	err = flattenProducerErrors(err)
	if fenced(err) || p.sp.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 {
		p.count(msgs, Dropped)
		return p.classify(op, err)
	}
	p.log.Warn("eventgen: aborting transaction", "op", op, "err", err)
	if aerr := p.sp.AbortTxn(); aerr != nil {
		p.count(msgs, Dropped)
		// An abort that fails leaves the transaction's outcome unknown:
		// stop writing.
		return p.shutdown(ErrProducerFatal, fmt.Errorf("%s: %w; abort: %w", op, err, flattenProducerErrors(aerr)))
	}
	p.count(msgs, Dropped)
	return fmt.Errorf("%w: %s: %w", ErrTxnAborted, op, err)
}

// classify turns an error from sarama into ErrFenced or
// ErrProducerFatal (closing the producer) or returns it wrapped.
// PRODUCER_FENCED on a transaction older than Producer.Transaction.Timeout
// is the coordinator's timeout (ErrProducerFatal), not fencing;
// INVALID_PRODUCER_EPOCH never is fencing (see epochError).
func (p *TransactionalProducer) classify(op string, err error) error {
	err = flattenProducerErrors(err)
	switch {
	case producerFenced(err) && p.overdue():
		// The coordinator aborted the transaction after
		// Producer.Transaction.Timeout and bumped the epoch: our own
		// timeout, not a newer instance. sarama cannot go on.
		return p.shutdown(ErrProducerFatal, fmt.Errorf("%s: transaction outlived Producer.Transaction.Timeout (%v) and was aborted by the coordinator: %w", op, p.txTimeout, err))
	case fenced(err):
		return p.shutdown(ErrFenced, fmt.Errorf("%s: %w", op, err))
	case p.sp.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0:
		return p.shutdown(ErrProducerFatal, fmt.Errorf("%s: %w", op, err))
	}
	return fmt.Errorf("eventgen: transaction %s: %w", op, err)
}

// shutdown makes the producer refuse every later call with sentinel and
// closes the sarama producer, so that nothing more is written.
func (p *TransactionalProducer) shutdown(sentinel, cause error) error {
	err := fmt.Errorf("%w: %w", sentinel, cause)
	p.mu.Lock()
	if p.err == nil || errors.Is(p.err, ErrClosed) {
		p.err = err
	}
	closeNow := !p.closed
	p.closed = true
	p.mu.Unlock()
	p.log.Error("eventgen: transactional producer closed", "err", err)
	if closeNow {
		if cerr := p.sp.Close(); cerr != nil {
			p.log.Debug("eventgen: closing fenced/failed producer", "err", cerr)
		}
	}
	return err
}

func (p *TransactionalProducer) count(msgs []*sarama.ProducerMessage, c Counter) {
	for _, m := range msgs {
		p.metrics.Count(m.Metadata.(*outMsg).event, c, 1)
	}
}

func (p *TransactionalProducer) countRetries(msgs []*sarama.ProducerMessage) {
	for _, m := range msgs {
		om := m.Metadata.(*outMsg)
		if r := om.retries(); r > 0 {
			p.metrics.Count(om.event, Retried, r)
		}
	}
}

// InTx runs fn in a transaction: it commits when fn returns nil and aborts
// when fn returns an error (returning fn's error, joined with the abort's
// error if that failed too). Commit errors are as for Tx.Commit.
func (p *TransactionalProducer) InTx(ctx context.Context, fn func(*Tx) error) error {
	t, err := p.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(t); err != nil {
		if aerr := t.Abort(ctx); aerr != nil {
			return errors.Join(err, aerr)
		}
		return err
	}
	return t.Commit(ctx)
}

// Close aborts an open transaction that is not committing, waits for one
// that is, and closes the producer. Later calls return ErrClosed (or the
// fencing/fatal error that closed the producer). Safe to call more than once.
func (p *TransactionalProducer) Close() error {
	p.mu.Lock()
	if p.err == nil {
		p.err = ErrClosed
	}
	open := p.open
	p.mu.Unlock()
	if open != nil {
		open.mu.Lock()
		idle := !open.finished
		open.finished = true
		open.mu.Unlock()
		if idle {
			// Abort synchronously: end checks p.err, so call AbortTxn here.
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if !closed {
				if err := p.sp.AbortTxn(); err != nil {
					p.log.Warn("eventgen: aborting open transaction on close", "err", err)
				}
			}
			p.mu.Lock()
			p.open = nil
			p.mu.Unlock()
			<-p.sem
		}
	}
	p.sem <- struct{}{} // wait for a commit in flight
	defer func() { <-p.sem }()
	p.mu.Lock()
	closeNow := !p.closed
	p.closed = true
	p.mu.Unlock()
	if closeNow {
		if err := p.sp.Close(); err != nil {
			return fmt.Errorf("eventgen: closing transactional producer: %w", flattenProducerErrors(err))
		}
	}
	return nil
}
