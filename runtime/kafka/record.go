package kafka

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	if len(m.Headers) == 0 {
		return r
	}
	// Every header key and the values kept as strings are copied into one
	// string, which the fields then slice: one allocation per record
	// instead of one per header.
	size := 0
	for _, h := range m.Headers {
		if h != nil {
			size += len(h.Key)
			if keptAsString(string(h.Key)) {
				size += len(h.Value)
			}
		}
	}
	var b strings.Builder
	b.Grow(size)
	type span struct{ key, value [2]int }
	var spanBuf [8]span // eventgen writes 6 or 7 headers: no allocation
	spans := spanBuf[:0]
	for _, h := range m.Headers {
		if h == nil {
			continue
		}
		var sp span
		sp.key[0] = b.Len()
		b.Write(h.Key)
		sp.key[1] = b.Len()
		if keptAsString(string(h.Key)) {
			sp.value[0] = b.Len()
			b.Write(h.Value)
			sp.value[1] = b.Len()
		}
		spans = append(spans, sp)
	}
	all := b.String()
	r.Headers = make([]event.Header, 0, len(spans))
	i := 0
	// A header that appears twice is read from its first occurrence, as
	// Header reads it.
	var seen struct{ id, typ, source, time, traceparent bool }
	first := func(b *bool) bool { ok := !*b; *b = true; return ok }
	for _, h := range m.Headers {
		if h == nil {
			continue
		}
		sp := spans[i]
		i++
		key := all[sp.key[0]:sp.key[1]]
		r.Headers = append(r.Headers, event.Header{Key: key, Value: h.Value})
		v := all[sp.value[0]:sp.value[1]]
		switch key {
		case event.HeaderID:
			if first(&seen.id) {
				r.ID = v
			}
		case event.HeaderType:
			if first(&seen.typ) {
				r.Type = v
			}
		case event.HeaderSource:
			if first(&seen.source) {
				r.Source = v
			}
		case event.HeaderTime:
			if first(&seen.time) {
				if t, err := time.Parse(time.RFC3339Nano, string(h.Value)); err == nil {
					r.Time = t.UTC()
				}
			}
		case event.HeaderTraceparent:
			if first(&seen.traceparent) {
				r.Traceparent = v
			}
		}
	}
	return r
}

// keptAsString reports whether newRecord keeps a header's value as a
// string field of Record.
func keptAsString(key string) bool {
	switch key {
	case event.HeaderID, event.HeaderType, event.HeaderSource, event.HeaderTraceparent:
		return true
	}
	return false
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

// ContentTypeCloudEvents is the content-type header of a structured-mode
// CloudEvents record: the value is one JSON document holding the attributes
// and the event in "data" (or "data_base64"). Consumers and pipelines
// decode such records like binary-mode ones.
const ContentTypeCloudEvents = "application/cloudevents+json"

// Reasons a record cannot be decoded, whatever its event.
var (
	errTombstone  = errors.New("tombstone: the record has no value")
	errEmptyValue = errors.New("empty value")
)

// inbound is a consumed record read once: its attributes (from the ce_*
// headers in binary mode, from the envelope in structured mode), the event
// data, and why the data cannot be decoded, if it cannot.
type inbound struct {
	m    *sarama.ConsumerMessage
	rec  Record
	data []byte
	err  error // tombstone, empty value, malformed structured envelope
}

// readRecord reads m's attributes and data.
func readRecord(m *sarama.ConsumerMessage) inbound {
	in := inbound{m: m, rec: newRecord(m), data: m.Value}
	switch {
	case m.Value == nil:
		in.err = errTombstone
	case len(m.Value) == 0:
		in.err = errEmptyValue
	case structured(&in.rec):
		in.data, in.err = readEnvelope(&in.rec, m.Value)
	}
	return in
}

// structured reports whether the record's content-type is structured-mode
// CloudEvents JSON (parameters such as "; charset=utf-8" allowed).
func structured(r *Record) bool {
	ct, ok := r.Header(event.HeaderContentType)
	if !ok {
		return false
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), ContentTypeCloudEvents)
}

// readEnvelope decodes a structured-mode CloudEvent: the attributes go into
// r (as the ce_* headers would in binary mode), the returned data is the
// event's JSON.
func readEnvelope(r *Record, value []byte) ([]byte, error) {
	var env struct {
		SpecVersion string          `json:"specversion"`
		ID          string          `json:"id"`
		Type        string          `json:"type"`
		Source      string          `json:"source"`
		Time        string          `json:"time"`
		Traceparent string          `json:"traceparent"`
		Data        json.RawMessage `json:"data"`
		DataBase64  *string         `json:"data_base64"`
	}
	if err := json.Unmarshal(value, &env); err != nil {
		return nil, fmt.Errorf("structured CloudEvent (content-type %s): %w", ContentTypeCloudEvents, err)
	}
	r.ID, r.Type, r.Source = env.ID, env.Type, env.Source
	if t, err := time.Parse(time.RFC3339Nano, env.Time); err == nil {
		r.Time = t.UTC()
	}
	if r.Traceparent == "" {
		r.Traceparent = env.Traceparent
	}
	switch {
	case env.DataBase64 != nil:
		data, err := base64.StdEncoding.DecodeString(*env.DataBase64)
		if err != nil {
			return nil, fmt.Errorf("structured CloudEvent: data_base64: %w", err)
		}
		if len(data) == 0 {
			return nil, errEmptyValue
		}
		return data, nil
	case len(env.Data) == 0 || string(env.Data) == "null":
		return nil, errors.New("structured CloudEvent: no data")
	}
	return env.Data, nil
}

// schemaIndex knows the events declared for each topic and by ce_type, to
// route records: the schema's events (DeclareEvents, PipelineConfig.Events)
// and the ones handlers are registered for.
type schemaIndex struct {
	byType  map[string]*event.Type
	byTopic map[string][]*event.Type
}

func newSchemaIndex() *schemaIndex {
	return &schemaIndex{byType: map[string]*event.Type{}, byTopic: map[string][]*event.Type{}}
}

// add declares et (once per ce_type).
func (s *schemaIndex) add(et *event.Type) {
	if et == nil || et.CEType == "" {
		return
	}
	if _, ok := s.byType[et.CEType]; ok {
		return
	}
	s.byType[et.CEType] = et
	s.byTopic[et.Topic] = append(s.byTopic[et.Topic], et)
}

// resolve returns the declared event a record of topic is: the one its
// ce_type names, or, for a record without ce_type, the topic's only event.
// A ce_type the schema does not declare, and a record without ce_type on a
// topic that carries several events, are errors (dead-lettered).
func (s *schemaIndex) resolve(topic string, in *inbound) (*event.Type, error) {
	if in.rec.Type != "" {
		if et, ok := s.byType[in.rec.Type]; ok {
			return et, nil
		}
		if in.err != nil {
			return nil, in.err
		}
		return nil, fmt.Errorf("unknown ce_type %q: not an event of the schema", in.rec.Type)
	}
	if in.err != nil {
		return nil, in.err
	}
	ets := s.byTopic[topic]
	if len(ets) == 1 {
		return ets[0], nil
	}
	names := make([]string, len(ets))
	for i, et := range ets {
		names[i] = et.Name
	}
	return nil, fmt.Errorf("unroutable: no ce_type, and topic %q carries %d events (%s)", topic, len(ets), strings.Join(names, ", "))
}

// validated calls v's Validate method, if it has one: a record that decodes
// but is not a valid event is not handled.
func validated[T any](v *T) error {
	if x, ok := any(v).(interface{ Validate() error }); ok {
		return x.Validate()
	}
	if x, ok := any(*v).(interface{ Validate() error }); ok {
		return x.Validate()
	}
	return nil
}
