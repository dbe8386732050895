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

// Errors returned by producers; match them with errors.Is.
var (
	// ErrClosed is returned by a producer's methods after Close.
	ErrClosed = errors.New("eventgen: producer is closed")
	// ErrWrongGuarantee is returned when an event is sent through a producer
	// weaker than its schema requires (an at-least-once event through an
	// at-most-once producer, an exactly-once event outside a transaction).
	ErrWrongGuarantee = errors.New("eventgen: event sent through a producer weaker than its guarantee")
	// ErrConflictingConfig is returned by producer constructors when Tune
	// (or another setting) conflicts with the producer's guarantee; the
	// message names the setting.
	ErrConflictingConfig = errors.New("eventgen: configuration conflicts with the guarantee")
)

// conflict reports a setting that breaks guarantee g.
func conflict(g event.Guarantee, format string, args ...any) error {
	return fmt.Errorf("%w: %s requires %s", ErrConflictingConfig, g, fmt.Sprintf(format, args...))
}

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

// producerErrors flattens sarama's ProducerErrors, which does not implement
// Unwrap, so that errors.Is finds the causes.
func flattenProducerErrors(err error) error {
	var pes sarama.ProducerErrors
	if !errors.As(err, &pes) {
		return err
	}
	errs := make([]error, 0, len(pes)+1)
	seen := map[string]bool{}
	for _, pe := range pes {
		if pe == nil || pe.Err == nil || seen[pe.Err.Error()] {
			continue
		}
		seen[pe.Err.Error()] = true
		errs = append(errs, pe.Err)
	}
	return fmt.Errorf("%d records failed: %w", len(pes), errors.Join(errs...))
}

// wrapf wraps err with a prefix, flattening sarama.ProducerErrors.
func wrapf(err error, prefix string) error {
	return fmt.Errorf("%s: %w", prefix, flattenProducerErrors(err))
}
