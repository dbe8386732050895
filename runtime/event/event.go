package event

import "time"

// Guarantee is the delivery guarantee an event type requires.
type Guarantee int

const (
	// AtMostOnce: fire-and-forget producer (acks=0), consumer commits before
	// handling. Fast; records may be lost, never duplicated by the consumer.
	AtMostOnce Guarantee = iota + 1
	// AtLeastOnce: idempotent producer (acks=all), consumer handles then
	// commits; redeliveries are absorbed by a dedup store.
	AtLeastOnce
	// ExactlyOnce: transactional producer, read_committed consumers, offsets
	// committed in the same transaction as the effects.
	ExactlyOnce
)

// String returns the schema spelling: "at-most-once", "at-least-once" or
// "exactly-once".
func (g Guarantee) String() string {
	switch g {
	case AtMostOnce:
		return "at-most-once"
	case AtLeastOnce:
		return "at-least-once"
	case ExactlyOnce:
		return "exactly-once"
	}
	return "unknown-guarantee"
}

// DedupStore names where a consumer records processed events.
type DedupStore int

const (
	// DedupNone: the handler is naturally idempotent (the schema gives a reason).
	DedupNone DedupStore = iota
	// DedupPostgres: a processed-events table written in the handler's transaction.
	DedupPostgres
	// DedupRedis: a Redis lease with a TTL.
	DedupRedis
)

// String returns the schema spelling of the store.
func (s DedupStore) String() string {
	switch s {
	case DedupNone:
		return "none"
	case DedupPostgres:
		return "postgres"
	case DedupRedis:
		return "redis"
	}
	return "unknown-store"
}

// Type is the metadata the generator records for each event type. Producers
// and consumers read it; it is never modified after package initialisation.
type Type struct {
	// Name is the schema name of the event, e.g. "OrderPlaced".
	Name string
	// Topic is the Kafka topic the event is published to.
	Topic string
	// Guarantee is the delivery guarantee the schema requires.
	Guarantee Guarantee
	// CEType is the CloudEvents "type" attribute, e.g. "orders.OrderPlaced.v1".
	CEType string
	// Source is the CloudEvents "source" attribute.
	Source string
	// Fingerprint identifies the event's wire shape: a hash over its field
	// names, types and optionality. It changes when the wire format does.
	Fingerprint string
	// Dedup is the store consumers use to absorb redeliveries.
	Dedup DedupStore
	// DedupTTL is how long a processed marker is kept (zero for DedupNone).
	DedupTTL time.Duration
	// Retention is the topic's retention, the redelivery window (zero: unset).
	Retention time.Duration
	// Outbox reports whether the event is published through the transactional outbox.
	Outbox bool
}

// Event is implemented by every generated event type (by pointer).
type Event interface {
	// EventType returns the event's metadata.
	EventType() *Type
	// Key returns the partition key: records with equal keys keep their order.
	Key() string
	// IdempotencyKey identifies one logical event; redeliveries share it.
	IdempotencyKey() string
	// Validate reports missing required fields and invalid enum values.
	Validate() error
	// AppendJSON appends the event's wire form (JSON) to b.
	AppendJSON(b []byte) []byte
	// UnmarshalJSON decodes the wire form, rejecting missing required fields.
	UnmarshalJSON(data []byte) error
}
