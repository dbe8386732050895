package kafka

import (
	"context"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
)

// CloudEventHeaders returns the headers of one record of event type et: the
// CloudEvents binary-mode attributes with the given ce_id and ce_time, and
// the traceparent of ctx when it has one. Producers call it with a fresh
// UUID and the current time.
func CloudEventHeaders(ctx context.Context, et *event.Type, id string, at time.Time) []sarama.RecordHeader {
	tp := event.Traceparent(ctx)
	// Every key and value goes into one buffer that the headers slice: two
	// allocations per record instead of fourteen. The buffer is sized up
	// front (a timestamp is at most 35 bytes), so that it never moves.
	buf := make([]byte, 0, len(event.HeaderSpecVersion)+len(event.SpecVersion)+len(event.HeaderID)+len(id)+
		len(event.HeaderType)+len(et.CEType)+len(event.HeaderSource)+len(et.Source)+len(event.HeaderTime)+35+
		len(event.HeaderContentType)+len(event.ContentTypeJSON)+len(event.HeaderTraceparent)+len(tp))
	field := func(s string) []byte {
		start := len(buf)
		buf = append(buf, s...)
		return buf[start:len(buf):len(buf)]
	}
	hs := make([]sarama.RecordHeader, 0, 7)
	hs = append(hs,
		sarama.RecordHeader{Key: field(event.HeaderSpecVersion), Value: field(event.SpecVersion)},
		sarama.RecordHeader{Key: field(event.HeaderID), Value: field(id)},
		sarama.RecordHeader{Key: field(event.HeaderType), Value: field(et.CEType)},
		sarama.RecordHeader{Key: field(event.HeaderSource), Value: field(et.Source)},
	)
	key := field(event.HeaderTime)
	start := len(buf)
	buf = at.UTC().AppendFormat(buf, time.RFC3339Nano)
	hs = append(hs,
		sarama.RecordHeader{Key: key, Value: buf[start:len(buf):len(buf)]},
		sarama.RecordHeader{Key: field(event.HeaderContentType), Value: field(event.ContentTypeJSON)},
	)
	if tp != "" {
		hs = append(hs, sarama.RecordHeader{Key: field(event.HeaderTraceparent), Value: field(tp)})
	}
	return hs
}

// HeaderValue returns the value of the first header called name in a
// consumed record's headers, and whether there is one.
func HeaderValue(hs []*sarama.RecordHeader, name string) (string, bool) {
	for _, h := range hs {
		if h != nil && string(h.Key) == name {
			return string(h.Value), true
		}
	}
	return "", false
}
