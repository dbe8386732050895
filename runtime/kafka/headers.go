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
	hs := make([]sarama.RecordHeader, 0, 7)
	hs = append(hs,
		sarama.RecordHeader{Key: []byte(event.HeaderSpecVersion), Value: []byte(event.SpecVersion)},
		sarama.RecordHeader{Key: []byte(event.HeaderID), Value: []byte(id)},
		sarama.RecordHeader{Key: []byte(event.HeaderType), Value: []byte(et.CEType)},
		sarama.RecordHeader{Key: []byte(event.HeaderSource), Value: []byte(et.Source)},
		sarama.RecordHeader{Key: []byte(event.HeaderTime), Value: at.UTC().AppendFormat(nil, time.RFC3339Nano)},
		sarama.RecordHeader{Key: []byte(event.HeaderContentType), Value: []byte(event.ContentTypeJSON)},
	)
	if tp := event.Traceparent(ctx); tp != "" {
		hs = append(hs, sarama.RecordHeader{Key: []byte(event.HeaderTraceparent), Value: []byte(tp)})
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
