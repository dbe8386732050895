package event

import "context"

// Record headers written by every eventgen producer: the CloudEvents Kafka
// protocol binding in binary mode (the record value is the event data, the
// attributes are headers prefixed "ce_") plus W3C trace context. They are
// declared here, not in runtime/kafka, because anything that stores records
// for later publication (the outbox) writes the same headers.
const (
	// HeaderSpecVersion carries the CloudEvents spec version, SpecVersion.
	HeaderSpecVersion = "ce_specversion"
	// HeaderID carries a fresh UUID per send: two sends of the same event
	// have different IDs (dedup uses the event's IdempotencyKey instead).
	HeaderID = "ce_id"
	// HeaderType carries Type.CEType.
	HeaderType = "ce_type"
	// HeaderSource carries Type.Source.
	HeaderSource = "ce_source"
	// HeaderTime carries the send time, RFC 3339 in UTC.
	HeaderTime = "ce_time"
	// HeaderContentType carries ContentTypeJSON (the binding maps the
	// CloudEvents datacontenttype attribute to this header).
	HeaderContentType = "content-type"
	// HeaderTraceparent carries the W3C traceparent of the sending context,
	// when it has one (see WithTraceparent).
	HeaderTraceparent = "traceparent"
)

const (
	// SpecVersion is the CloudEvents version eventgen writes.
	SpecVersion = "1.0"
	// ContentTypeJSON is the content type of every eventgen record value.
	ContentTypeJSON = "application/json"
)

// Header is one record header as handlers see it, independent of the Kafka
// client underneath.
type Header struct {
	Key   string
	Value []byte
}

type traceparentKey struct{}

// WithTraceparent returns a context carrying a W3C traceparent
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"). Producers copy it
// into the traceparent header of records sent with the context. A malformed
// value is ignored: ctx is returned unchanged. A later version's value is
// kept as version 00 of its first four fields, as the W3C recommendation
// asks of a vendor that propagates a version it does not know: its extra
// fields (of any length, from any producer) are not copied into every
// record sent.
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	if !validTraceparent(traceparent) {
		return ctx
	}
	if traceparent[:2] != "00" {
		traceparent = "00" + traceparent[2:55]
	}
	return context.WithValue(ctx, traceparentKey{}, traceparent)
}

// Traceparent returns the traceparent stored by WithTraceparent, or "".
func Traceparent(ctx context.Context) string {
	s, _ := ctx.Value(traceparentKey{}).(string)
	return s
}

// validTraceparent checks the W3C trace-context header format: lower-case
// hex fields of 2, 32, 16 and 2 digits; version ff and all-zero IDs are
// invalid. Later versions may append fields after a dash.
func validTraceparent(s string) bool {
	if len(s) < 55 || (len(s) > 55 && s[55] != '-') {
		return false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	hex := func(f string) (zero, ok bool) {
		zero = true
		for i := 0; i < len(f); i++ {
			c := f[i]
			switch {
			case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
			default:
				return false, false
			}
			if c != '0' {
				zero = false
			}
		}
		return zero, true
	}
	if _, ok := hex(s[0:2]); !ok || s[0:2] == "ff" {
		return false
	}
	if s[0:2] == "00" && len(s) != 55 {
		return false
	}
	if zero, ok := hex(s[3:35]); !ok || zero {
		return false
	}
	if zero, ok := hex(s[36:52]); !ok || zero {
		return false
	}
	_, ok := hex(s[53:55])
	return ok
}
