package kafka

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/IBM/sarama"
)

// Headers a consumer or pipeline adds to a dead-lettered record, after the
// original record's headers (which are kept unchanged, CloudEvents
// attributes and traceparent included).
const (
	// HeaderDLQError carries the last error's text on one line: the
	// handler's error, or the decoding error for a record that could not
	// be decoded. Line breaks (CR, LF, and CRLF) become " | ", tabs and
	// other control characters a space, invalid UTF-8 U+FFFD, and a text
	// longer than MaxDLQErrorBytes is cut there and ends in "…".
	HeaderDLQError = "eventgen_error"
	// HeaderDLQAttempts carries how many times the handler ran, in decimal;
	// "0" for a record that failed to decode (the handler never ran).
	HeaderDLQAttempts = "eventgen_attempts"
	// HeaderDLQSourceTopic, HeaderDLQSourcePartition and
	// HeaderDLQSourceOffset locate the original record.
	HeaderDLQSourceTopic     = "eventgen_source_topic"
	HeaderDLQSourcePartition = "eventgen_source_partition"
	HeaderDLQSourceOffset    = "eventgen_source_offset"
	// HeaderDLQGroup carries the consumer group that dead-lettered the
	// record (ConsumerConfig.GroupID or PipelineConfig.GroupID).
	HeaderDLQGroup = "eventgen_group"
)

// MaxDLQErrorBytes bounds the eventgen_error header, in bytes, the
// ellipsis included.
const MaxDLQErrorBytes = 1000

// DeadLetterTopic returns the dead-letter topic of topic: topic + ".dlq".
func DeadLetterTopic(topic string) string { return topic + ".dlq" }

// deadLetterMessage builds the dead-letter record of m that group gives up
// on: same key, value and headers, plus the eventgen_* headers. The record is partitioned by its key
// like any eventgen record, so a key's dead letters keep their order.
func deadLetterMessage(group string, m *sarama.ConsumerMessage, cause error, attempts int) *sarama.ProducerMessage {
	hs := make([]sarama.RecordHeader, 0, len(m.Headers)+6)
	for _, h := range m.Headers {
		if h != nil {
			hs = append(hs, *h)
		}
	}
	msg := "unknown error"
	if cause != nil {
		msg = oneLine(cause.Error(), MaxDLQErrorBytes)
	}
	hs = append(hs,
		sarama.RecordHeader{Key: []byte(HeaderDLQError), Value: []byte(msg)},
		sarama.RecordHeader{Key: []byte(HeaderDLQAttempts), Value: strconv.AppendInt(nil, int64(attempts), 10)},
		sarama.RecordHeader{Key: []byte(HeaderDLQSourceTopic), Value: []byte(m.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderDLQSourcePartition), Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		sarama.RecordHeader{Key: []byte(HeaderDLQSourceOffset), Value: strconv.AppendInt(nil, m.Offset, 10)},
		sarama.RecordHeader{Key: []byte(HeaderDLQGroup), Value: []byte(group)},
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

// oneLine returns s on one line of at most max bytes (see HeaderDLQError).
func oneLine(s string, max int) string {
	const ellipsis = "…"
	var b strings.Builder
	b.Grow(min(len(s), max) + 4)
	for i := 0; i < len(s) && b.Len() <= max; {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
			b.WriteString(" | ")
			n = 2
		case r == '\r' || r == '\n':
			b.WriteString(" | ")
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	out := b.String()
	if len(out) <= max {
		return out
	}
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + ellipsis
}
