package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
)

// RawRecord is a record encoded before it reaches the producer: a row of
// the transactional outbox, whose value and CloudEvents headers were
// written when the event was enqueued. The producer sends it as it is.
type RawRecord struct {
	Topic   string
	Key     []byte
	Headers []event.Header
	Value   []byte
}

// ErrRejected is matched by the outcome of a raw record that the client or
// the broker rejected for good: larger than Producer.MaxMessageBytes,
// MESSAGE_TOO_LARGE, INVALID_RECORD, CORRUPT_MESSAGE, or
// RECORD_LIST_TOO_LARGE once sarama's retries are spent. Sending the same
// record again fails again; other failures may pass on a later attempt.
var ErrRejected = errors.New("eventgen: record rejected")

// SendRawAsync queues rec on the idempotent producer without waiting for
// the acknowledgement, like SendAsync for an event: done is called exactly
// once with the outcome, nil when the record is stored with acks=all, an
// error matching ErrRejected when sending it again cannot succeed, another
// error when it may (the record may or may not be stored). done runs on a
// producer goroutine: keep it short. SendRawAsync returns an error, and
// does not call done, when rec has no topic, ctx is done before rec is
// queued, or the producer is closed. Metrics count the record under its
// ce_type header, or its topic when it has none.
func (p *AtLeastOnceProducer) SendRawAsync(ctx context.Context, rec RawRecord, done func(error)) error {
	if done == nil {
		return errors.New("eventgen: SendRawAsync needs a done callback")
	}
	if rec.Topic == "" {
		return errors.New("eventgen: raw record without a topic")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := rec.Topic
	hs := make([]sarama.RecordHeader, len(rec.Headers))
	for i, h := range rec.Headers {
		hs[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		if h.Key == event.HeaderType {
			name = string(h.Value)
		}
	}
	om := &outMsg{value: rec.Value, event: name, callback: func(err error) {
		if err != nil && permanentOutputError(err) {
			err = fmt.Errorf("%w: %w", ErrRejected, err)
		}
		done(err)
	}}
	msg := &sarama.ProducerMessage{
		Topic:    rec.Topic,
		Key:      sarama.ByteEncoder(rec.Key),
		Value:    om,
		Headers:  hs,
		Metadata: om,
	}
	if err := p.enqueue(ctx, msg); err != nil {
		return err
	}
	p.metrics.Count(name, Sent, 1)
	return nil
}
