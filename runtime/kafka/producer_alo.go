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

// AtLeastOnceProducer sends events with an idempotent producer (acks=all,
// one request in flight per broker, retries with sequence numbers): Send
// returns after the broker acknowledged the record, and a record retried
// after a lost acknowledgement or a dropped connection is written once.
// Concurrent Send calls share one sarama AsyncProducer, so they are batched
// into the same produce requests. Safe for concurrent use.
type AtLeastOnceProducer struct {
	ap      sarama.AsyncProducer
	log     *slog.Logger
	metrics Metrics

	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
	// abandoned is closed when Close gave up waiting for acknowledgements:
	// Sends still waiting return an error.
	abandoned    chan struct{}
	closeTimeout time.Duration
	senders      sync.WaitGroup // Sends between the closed check and the enqueue
	drained      sync.WaitGroup // the Successes and Errors readers
}

// NewAtLeastOnceProducer connects to cfg.Brokers (it fails if none answers)
// and returns an idempotent producer: acks=all, Producer.Idempotent=true,
// Net.MaxOpenRequests=1, Producer.Retry.Max=10 with Retry.Backoff=100ms.
// Tune may change batching, timeouts and retry counts, but the constructor
// rejects, by name, acks other than all, Idempotent=false,
// MaxOpenRequests!=1, Retry.Max<1 and a Transaction.ID.
func NewAtLeastOnceProducer(cfg Config) (*AtLeastOnceProducer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sc, err := cfg.saramaConfig(idempotentProducer, identity{})
	if err != nil {
		return nil, err
	}
	ap, client, err := startProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, wrapf(err, "eventgen: at-least-once producer")
	}
	p := &AtLeastOnceProducer{
		ap: ap, log: cfg.Logger, metrics: cfg.Metrics,
		closing: make(chan struct{}), abandoned: make(chan struct{}), closeTimeout: cfg.CloseTimeout,
	}
	p.drained.Add(2)
	go p.successes()
	go p.errors()
	go func() { p.drained.Wait(); _ = client.Close() }() // both channels closed: sarama has shut down
	return p, nil
}

func (p *AtLeastOnceProducer) successes() {
	defer p.drained.Done()
	for msg := range p.ap.Successes() {
		om := msg.Metadata.(*outMsg)
		if r := om.retries(); r > 0 {
			p.metrics.Count(om.event, Retried, r)
		}
		p.metrics.Count(om.event, Acked, 1)
		om.finish(nil)
	}
}

func (p *AtLeastOnceProducer) errors() {
	defer p.drained.Done()
	for pe := range p.ap.Errors() {
		om := pe.Msg.Metadata.(*outMsg)
		if r := om.retries(); r > 0 {
			p.metrics.Count(om.event, Retried, r)
		}
		p.log.Warn("eventgen: at-least-once send failed", "event", om.event, "topic", pe.Msg.Topic, "err", pe.Err)
		om.finish(fmt.Errorf("eventgen: sending %s to %s: %w", om.event, pe.Msg.Topic, pe.Err))
	}
}

// Send validates and encodes e, sends it and waits for the acknowledgement.
// A nil error means the record is stored with acks=all. An error means the
// record may or may not be stored: the caller can send the event again (a
// consumer-side dedup store absorbs the duplicate). If ctx is done first,
// Send returns ctx's error, and the record may still be written.
func (p *AtLeastOnceProducer) Send(ctx context.Context, e event.Event) error {
	done := make(chan error, 1)
	msg, om, err := p.queue(ctx, e, func(om *outMsg) { om.done = done })
	if err != nil {
		return err
	}
	select {
	case err := <-om.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("eventgen: sending %s to %s, record may still be written: %w", om.event, msg.Topic, ctx.Err())
	case <-p.abandoned:
		return fmt.Errorf("eventgen: sending %s to %s, record may still be written: %w before the acknowledgement", om.event, msg.Topic, ErrClosed)
	}
}

// SendAsync validates and encodes e and queues it without waiting for the
// acknowledgement: done is called exactly once with the outcome, nil when
// the record is stored with acks=all, from a producer goroutine (keep it
// short; it delays the outcomes of later records). Concurrent and
// back-to-back SendAsync calls fill produce requests the way a hand-written
// sarama pipeline does. SendAsync returns an error, and does not call done,
// when e is invalid, ctx is done before e is queued, or the producer is
// closed. Close waits for every outcome.
func (p *AtLeastOnceProducer) SendAsync(ctx context.Context, e event.Event, done func(error)) error {
	if done == nil {
		return errors.New("eventgen: SendAsync needs a done callback")
	}
	_, _, err := p.queue(ctx, e, func(om *outMsg) { om.callback = done })
	return err
}

// queue validates and encodes e, lets report attach the outcome's receiver,
// and hands the record to sarama.
func (p *AtLeastOnceProducer) queue(ctx context.Context, e event.Event, report func(*outMsg)) (*sarama.ProducerMessage, *outMsg, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := checkGuarantee(event.AtLeastOnce, e); err != nil {
		return nil, nil, err
	}
	msg, om, err := encodeEvent(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	report(om)
	if err := p.enqueue(ctx, msg); err != nil {
		return nil, nil, err
	}
	p.metrics.Count(om.event, Sent, 1)
	return msg, om, nil
}

func (p *AtLeastOnceProducer) enqueue(ctx context.Context, msg *sarama.ProducerMessage) error {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrClosed
	}
	p.senders.Add(1)
	p.mu.RUnlock()
	defer p.senders.Done()
	select {
	case p.ap.Input() <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return ErrClosed
	}
}

// Close stops accepting Sends, waits until every queued record is
// acknowledged or failed (pending Sends receive their outcome), and closes
// the connections. After Config.CloseTimeout it stops waiting: Sends still
// pending return an error matching ErrClosed (the record may be written),
// and so does Close. It is safe to call more than once.
func (p *AtLeastOnceProducer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	p.mu.Unlock()
	p.senders.Wait()
	p.ap.AsyncClose()
	drained := make(chan struct{})
	go func() { p.drained.Wait(); close(drained) }()
	deadline := time.NewTimer(p.closeTimeout)
	defer deadline.Stop()
	select {
	case <-drained:
		return nil
	case <-deadline.C:
		close(p.abandoned)
		return fmt.Errorf("%w after %v with records unacknowledged", ErrClosed, p.closeTimeout)
	}
}
