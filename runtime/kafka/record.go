package kafka

import (
	"context"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/event"
)

// Record describes the Kafka record an event was decoded from. Handlers
// receive it wrapped in a guarantee-specific type (AtMostOnceRecord,
// AtLeastOnceRecord, ExactlyOnceRecord). It carries no type of the Kafka
// client underneath, so that generated handler signatures do not depend on
// it.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	// Key is the record key: the event's Key() for eventgen producers.
	Key []byte
	// Timestamp is the record timestamp set by the producer or the broker.
	Timestamp time.Time
	// Headers are all record headers, CloudEvents attributes included, in
	// the order the producer wrote them.
	Headers []event.Header
	// ID is the ce_id header: unique per send, so a redelivered record keeps
	// its ID while a resent event gets a new one.
	ID string
	// Type and Source are the ce_type and ce_source headers.
	Type, Source string
	// Time is the ce_time header, zero when absent or malformed.
	Time time.Time
	// Traceparent is the W3C traceparent header, "" when absent.
	Traceparent string
	// Attempt counts deliveries of this record to the handler in this
	// process, starting at 1; consumers set it when they retry.
	Attempt int
}

// newRecord reads a consumed record's coordinates and headers. Attempt is
// set to 1.
func newRecord(m *sarama.ConsumerMessage) Record {
	r := Record{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Timestamp: m.Timestamp,
		Attempt:   1,
	}
	if len(m.Headers) > 0 {
		r.Headers = make([]event.Header, 0, len(m.Headers))
	}
	for _, h := range m.Headers {
		if h == nil {
			continue
		}
		r.Headers = append(r.Headers, event.Header{Key: string(h.Key), Value: h.Value})
		switch v := string(h.Value); string(h.Key) {
		case event.HeaderID:
			r.ID = v
		case event.HeaderType:
			r.Type = v
		case event.HeaderSource:
			r.Source = v
		case event.HeaderTime:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				r.Time = t.UTC()
			}
		case event.HeaderTraceparent:
			r.Traceparent = v
		}
	}
	return r
}

// Header returns the value of the first header called name.
func (r *Record) Header(name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value), true
		}
	}
	return "", false
}

// Context returns ctx carrying the record's traceparent (if valid), so that
// events a handler produces continue the trace.
func (r *Record) Context(ctx context.Context) context.Context {
	if r.Traceparent == "" {
		return ctx
	}
	return event.WithTraceparent(ctx, r.Traceparent)
}

// AtMostOnceRecord is the record given to at-most-once handlers. It is a
// distinct type from AtLeastOnceRecord so that a handler written for one
// guarantee cannot be registered for an event of another: wrong wiring fails
// to compile.
type AtMostOnceRecord struct{ Record }

// AtLeastOnceRecord is the record given to at-least-once handlers; see
// AtMostOnceRecord.
type AtLeastOnceRecord struct{ Record }

// ExactlyOnceRecord is the record given to exactly-once pipeline handlers;
// see AtMostOnceRecord.
type ExactlyOnceRecord struct{ Record }
