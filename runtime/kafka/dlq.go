package kafka

import (
	"strconv"

	"github.com/IBM/sarama"
)

// Headers a consumer or pipeline adds to a dead-lettered record, after the
// original record's headers (which are kept unchanged, CloudEvents
// attributes and traceparent included).
const (
	// HeaderDLQError carries the last error's text: the handler's error,
	// or the decoding error for a record that could not be decoded.
	HeaderDLQError = "eventgen_error"
	// HeaderDLQAttempts carries how many times the handler ran, in decimal;
	// "0" for a record that failed to decode (the handler never ran).
	HeaderDLQAttempts = "eventgen_attempts"
	// HeaderDLQSourceTopic, HeaderDLQSourcePartition and
	// HeaderDLQSourceOffset locate the original record.
	HeaderDLQSourceTopic     = "eventgen_source_topic"
	HeaderDLQSourcePartition = "eventgen_source_partition"
	HeaderDLQSourceOffset    = "eventgen_source_offset"
)

// DeadLetterTopic returns the dead-letter topic of topic: topic + ".dlq".
func DeadLetterTopic(topic string) string { return topic + ".dlq" }

// deadLetterMessage builds the dead-letter record of m: same key, value and
// headers, plus the eventgen_* headers. The record is partitioned by its key
// like any eventgen record, so a key's dead letters keep their order.
func deadLetterMessage(m *sarama.ConsumerMessage, cause error, attempts int) *sarama.ProducerMessage {
	hs := make([]sarama.RecordHeader, 0, len(m.Headers)+5)
	for _, h := range m.Headers {
		if h != nil {
			hs = append(hs, *h)
		}
	}
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	hs = append(hs,
		sarama.RecordHeader{Key: []byte(HeaderDLQError), Value: []byte(msg)},
		sarama.RecordHeader{Key: []byte(HeaderDLQAttempts), Value: strconv.AppendInt(nil, int64(attempts), 10)},
		sarama.RecordHeader{Key: []byte(HeaderDLQSourceTopic), Value: []byte(m.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderDLQSourcePartition), Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		sarama.RecordHeader{Key: []byte(HeaderDLQSourceOffset), Value: strconv.AppendInt(nil, m.Offset, 10)},
	)
	pm := &sarama.ProducerMessage{
		Topic:   DeadLetterTopic(m.Topic),
		Headers: hs,
	}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		pm.Value = sarama.ByteEncoder(m.Value)
	}
	return pm
}
