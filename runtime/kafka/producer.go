package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
)

// outMsg is the value encoder and metadata of one produced record. sarama
// calls Encode each time it adds the record to a produce request, so
// attempts-1 is the number of retries.
type outMsg struct {
	value    []byte
	event    string
	attempts atomic.Int32
	done     chan error  // at-least-once Send: receives the outcome
	callback func(error) // at-least-once SendAsync: called with the outcome
}

// finish reports the record's outcome to whoever waits for it.
func (m *outMsg) finish(err error) {
	switch {
	case m.callback != nil:
		m.callback(err)
	case m.done != nil:
		m.done <- err
	}
}

func (m *outMsg) Encode() ([]byte, error) {
	m.attempts.Add(1)
	return m.value, nil
}

func (m *outMsg) Length() int { return len(m.value) }

// retries returns how many times the record was sent again.
func (m *outMsg) retries() int64 {
	if n := m.attempts.Load(); n > 1 {
		return int64(n - 1)
	}
	return 0
}

// encodeEvent validates e and builds its record: key = e.Key(), value = the
// event's JSON, CloudEvents headers with a fresh ce_id and the current time,
// and the traceparent of ctx.
func encodeEvent(ctx context.Context, e event.Event) (*sarama.ProducerMessage, *outMsg, error) {
	if e == nil {
		return nil, nil, errors.New("eventgen: nil event")
	}
	et := e.EventType()
	if et == nil || et.Topic == "" {
		return nil, nil, fmt.Errorf("eventgen: event %T has no event type or topic", e)
	}
	if err := e.Validate(); err != nil {
		return nil, nil, fmt.Errorf("eventgen: invalid %s event: %w", et.Name, err)
	}
	om := &outMsg{value: e.AppendJSON(make([]byte, 0, 256)), event: et.Name}
	msg := &sarama.ProducerMessage{
		Topic:    et.Topic,
		Key:      sarama.StringEncoder(e.Key()),
		Value:    om,
		Headers:  CloudEventHeaders(ctx, et, event.NewUUID().String(), time.Now()),
		Metadata: om,
	}
	return msg, om, nil
}

// checkGuarantee rejects events whose schema guarantee is stronger than what
// producer g provides.
func checkGuarantee(g event.Guarantee, e event.Event) error {
	if e == nil || e.EventType() == nil {
		return nil // encodeEvent reports it
	}
	if eg := e.EventType().Guarantee; eg > g {
		return fmt.Errorf("%w: %s is %s, producer is %s", ErrWrongGuarantee, e.EventType().Name, eg, g)
	}
	return nil
}

// startProducer connects a client and starts an async producer on it.
// sarama.NewAsyncProducer leaves the client it creates open when the
// producer cannot start (InitProducerID refused, the coordinator
// unreachable): a process retrying its start would leak a client, its
// metadata goroutine and its connections, per try. Here the client is
// closed on that path; otherwise the caller closes it once the producer has
// shut down (after Close, or once its result channels are closed).
func startProducer(brokers []string, sc *sarama.Config) (sarama.AsyncProducer, sarama.Client, error) {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, nil, err
	}
	ap, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, nil, err
	}
	return ap, client, nil
}

// syncProducer is a sarama.SyncProducer that closes its client when it is
// closed (see startProducer).
type syncProducer struct {
	sarama.SyncProducer
	client sarama.Client
}

// startSyncProducer is startProducer for a sarama.SyncProducer.
func startSyncProducer(brokers []string, sc *sarama.Config) (sarama.SyncProducer, error) {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, err
	}
	sp, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &syncProducer{SyncProducer: sp, client: client}, nil
}

// Close closes the producer, then its client.
func (p *syncProducer) Close() error {
	err := p.SyncProducer.Close()
	if cerr := p.client.Close(); cerr != nil && !errors.Is(cerr, sarama.ErrClosedClient) {
		err = errors.Join(err, cerr)
	}
	return err
}
