package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
)

// AtMostOnceProducer sends events fire-and-forget: acks=0, no retries, and
// Send never waits for the network. A record can be lost (broker down, full
// queue, connection reset) but is never written twice. Safe for concurrent
// use.
type AtMostOnceProducer struct {
	ap      sarama.AsyncProducer
	log     *slog.Logger
	metrics Metrics

	// queue decouples Send from sarama, whose Input channel is unbuffered:
	// Send never blocks, a pump goroutine feeds sarama.
	queue chan *sarama.ProducerMessage

	closeTimeout time.Duration
	stop         chan struct{} // closed when Close gives up flushing

	mu      sync.RWMutex // guards closed against Send racing Close
	closed  bool
	pumped  chan struct{}
	drained chan struct{}
	drops   atomic.Int64
}

// NewAtMostOnceProducer connects to cfg.Brokers (it fails if none answers)
// and returns a producer with acks=0, Producer.Retry.Max=0 and a queue of
// ChannelBufferSize=4096 records in front of sarama (sarama's own channels
// hold as many again per partition). Tune may raise acks (that does not
// weaken at-most-once) but must keep Retry.Max=0, Return.Errors=true,
// Return.Successes=false, Idempotent=false and no Transaction.ID.
func NewAtMostOnceProducer(cfg Config) (*AtMostOnceProducer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sc, err := cfg.saramaConfig(atMostOnceProducer, identity{})
	if err != nil {
		return nil, err
	}
	ap, client, err := startProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, wrapf(err, "eventgen: at-most-once producer")
	}
	p := &AtMostOnceProducer{
		ap:      ap,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		queue:   make(chan *sarama.ProducerMessage, sc.ChannelBufferSize),
		pumped:  make(chan struct{}),
		stop:    make(chan struct{}),

		closeTimeout: cfg.CloseTimeout,
		drained:      make(chan struct{}),
	}
	go p.pump()
	go p.errors()
	go func() { <-p.drained; _ = client.Close() }() // Errors closed: sarama has shut down
	return p, nil
}

func (p *AtMostOnceProducer) pump() {
	defer close(p.pumped)
	for msg := range p.queue {
		select {
		case p.ap.Input() <- msg:
		case <-p.stop:
			p.drop(msg.Metadata.(*outMsg).event, "closed before sent", nil)
		}
	}
}

func (p *AtMostOnceProducer) errors() {
	defer close(p.drained)
	for pe := range p.ap.Errors() {
		event := ""
		if om, ok := pe.Msg.Metadata.(*outMsg); ok {
			event = om.event
		}
		p.drop(event, "send failed", pe.Err)
	}
}

func (p *AtMostOnceProducer) drop(event, why string, err error) {
	p.metrics.Count(event, Dropped, 1)
	// Log the 1st, 2nd, 4th, 8th... drop: a dead broker must not flood the log.
	if n := p.drops.Add(1); n&(n-1) == 0 {
		p.log.Warn("eventgen: at-most-once record dropped", "event", event, "reason", why, "err", err, "drops", n)
	}
}

// Send validates and encodes e and queues it without waiting: when the queue
// is full (the broker is slow or unreachable) the record is dropped and
// counted as Dropped, and Send returns nil. It returns an error only for an
// invalid event, a cancelled ctx, a closed producer, or an event whose schema
// requires a stronger guarantee (ErrWrongGuarantee).
func (p *AtMostOnceProducer) Send(ctx context.Context, e event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkGuarantee(event.AtMostOnce, e); err != nil {
		return err
	}
	msg, om, err := encodeEvent(ctx, e)
	if err != nil {
		return err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	select {
	case p.queue <- msg:
		p.metrics.Count(om.event, Sent, 1)
	default:
		p.drop(om.event, "queue full", nil)
	}
	return nil
}

// Close sends queued records, waiting at most Config.CloseTimeout; records
// still queued or in flight then are dropped and counted, and Close returns
// an error matching ErrDroppedAtClose. Close is safe to call more than once.
func (p *AtMostOnceProducer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.queue)
	p.mu.Unlock()
	deadline := time.NewTimer(p.closeTimeout)
	defer deadline.Stop()
	select {
	case <-p.pumped:
	case <-deadline.C:
		close(p.stop)
		<-p.pumped
		p.ap.AsyncClose()
		return fmt.Errorf("%w after %v: the queued ones are counted as dropped", ErrDroppedAtClose, p.closeTimeout)
	}
	p.ap.AsyncClose()
	select {
	case <-p.drained:
		return nil
	case <-deadline.C:
		// sarama keeps trying in the background until its own timeouts; the
		// records it fails are still counted as dropped.
		return fmt.Errorf("%w after %v: records still in flight are counted as dropped if the client fails them", ErrDroppedAtClose, p.closeTimeout)
	}
}
