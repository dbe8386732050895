package generator

import (
	"time"

	"github.com/eventgen/eventgen/runtime/event"
)

// The IR is a validated schema with every Go name resolved and every
// per-event decision taken (names in naming.go). Emitters read it and never
// compute names or check rules themselves; identifiers.go lists every name
// the emitters print, for the one clash check.

// Schema is one validated schema file.
type Schema struct {
	// Path is the schema file as named on the command line (slash-separated).
	Path string
	// Package is the Go package name of the generated code.
	Package string
	// Source is the CloudEvents source attribute.
	Source    string
	Types     []*NamedType
	Events    []*Event
	Pipelines []*Pipeline
	// Fingerprint hashes the wire shape of every event in the schema.
	Fingerprint string
	// Names are the identifiers every generated package declares.
	Names PackageNames
	// Groups are the events by guarantee, weakest first, one for each
	// guarantee some event has; the Kafka file follows their order.
	Groups []*Group
	// Direct are the groups Producer sends itself and the generated
	// Consumer handles (at-most- and at-least-once); with none, no Consumer
	// is generated. Exactly-once events go through Tx and pipelines.
	Direct []*Group
	// Tx is the exactly-once group, or nil: with it come Tx, Begin and InTx.
	Tx *Group
	// Postgres are the events whose consumer handler receives the pgx
	// transaction of their dedup store (Consume is ConsumePostgres or
	// ConsumeExactlyOnce), in schema order. Their handler types and Handle
	// methods go in <schema>_postgres.gen.go, a file of its own that imports
	// pgx, with the tables' DDL in <schema>_postgres.gen.sql.
	Postgres []*Event
	// HasConsumer reports whether a Consumer is generated: some event is
	// consumed by it (Direct groups, or Postgres events).
	HasConsumer bool
	// Outbox are the events with `outbox: true`, in schema order: each gets
	// an Enqueue function in a file of its own (only with some, so that
	// other schemas never link pgx).
	Outbox []*Event
}

// Consume is how the generated Consumer registers an event's handler.
type Consume int

const (
	// ConsumeNone: the Consumer has no handler for the event (an
	// exactly-once event without a postgres store: pipelines consume it).
	ConsumeNone Consume = iota
	// ConsumePlain: kafka.HandleAtMostOnce, or kafka.HandleAtLeastOnce for
	// an event with dedup store none (the handler runs every delivery).
	ConsumePlain
	// ConsumeRedis: kafka.HandleDeduped with a dedup.Store[dedup.NoTx].
	ConsumeRedis
	// ConsumePostgres: kafka.HandleDeduped with a dedup.Store[pgx.Tx]; the
	// handler receives the transaction.
	ConsumePostgres
	// ConsumeExactlyOnce: kafka.HandleExactlyOnce with a
	// dedup.OffsetStore[pgx.Tx]: effects, keys and offsets in one
	// transaction.
	ConsumeExactlyOnce
)

// PackageNames are the identifiers the generated code declares whatever
// the schema says.
type PackageNames struct {
	Fingerprint string // the SchemaFingerprint constant
	Sender      string // the interface Producer implements
	Tx          string // the transaction interface
	TxImpl      string // the unexported type behind Tx
	Producer    string
	NewProducer string
	Consumer    string
	NewConsumer string
	// SchemaEvents is the unexported variable listing every event, which
	// the Consumer and the pipelines route records by (ce_type).
	SchemaEvents string
	// Methods of Producer besides the Send methods.
	Close, Begin, InTx string
}

// Group is the events of one guarantee and the runtime pieces that carry them.
type Group struct {
	Guarantee event.Guarantee
	Events    []*Event
	// ProducerField is Producer's field holding the runtime producer of
	// type ProducerType (in runtime/kafka), made by NewProducerFunc.
	ProducerField, ProducerType, NewProducerFunc string
	// Transactional events are sent through Tx, not by Producer itself.
	Transactional bool
	// RecordType and HandleFunc are the runtime/kafka names the Consumer
	// uses; empty for exactly-once events, which pipelines consume.
	RecordType, HandleFunc string
}

// NamedType is a record (Fields) or an enum (Values) from `types`.
type NamedType struct {
	Name   string
	GoName string
	Doc    string
	Fields []*Field
	Values []*EnumValue
	// ValuesFunc is the function listing an enum's values, e.g. OrderStatusValues.
	ValuesFunc string
	Pos        Pos
}

// IsEnum reports whether the type is an enum.
func (t *NamedType) IsEnum() bool { return t.Values != nil }

// EnumValue is one enum constant.
type EnumValue struct {
	Value  string // the wire value
	GoName string // the constant's name, e.g. OrderStatusPending
	Pos    Pos
}

// Event is one event type.
type Event struct {
	Name       string
	GoName     string
	Doc        string
	Topic      string
	Guarantee  event.Guarantee
	Key        *Field   // nil: records carry no key
	IdemKey    []*Field // empty: no idempotency key
	Dedup      event.DedupStore
	DedupTTL   time.Duration
	DedupWhy   string // the reason given for dedup: none
	Outbox     bool
	Retention  time.Duration
	Deprecated bool
	Fields     []*Field
	// Version is the event's `version:` (default 1); a new version is a
	// new CloudEvents type, which `eventgen breaking` lets change the
	// wire shape.
	Version int
	// At is where each setting was written (on the event or in defaults),
	// for diagnostics that compare two schemas.
	At EventPositions
	// CEType is the CloudEvents type, e.g. orders.OrderPlaced.v1.
	CEType      string
	Fingerprint string
	Pos         Pos
	// MetaVar is the unexported variable holding the event.Type.
	MetaVar string
	// Send is the method that sends the event: on Producer and Sender, or
	// on Tx for exactly-once events. SendAsync is Producer's queueing
	// variant, for at-least-once events only ("" otherwise).
	Send, SendAsync string
	// Consume is how the Consumer registers the event's handler.
	Consume Consume
	// Handler is the Consumer's handler type for the event and Handle the
	// method registering one. The name is kept for every event, so that
	// changing a guarantee never makes a name clash appear.
	Handler, Handle string
	// BatchHandler is the batch handler type and HandleBatch the method
	// registering one, for events consumed into PostgreSQL (Consume is
	// ConsumePostgres or ConsumeExactlyOnce); "" for the others.
	BatchHandler, HandleBatch string
	// Emit is the method of a pipeline's emitter that emits the event.
	Emit string
	// Enqueue is the function that writes the event to the transactional
	// outbox (generated for outbox events only; the name is reserved for
	// every event, so that turning the outbox on never makes a clash).
	Enqueue string
	// Group is the event's guarantee group; nil if the guarantee is unknown.
	Group *Group
	// DedupDoc is how the docs describe the event's dedup, e.g. "postgres, ttl 336h".
	DedupDoc string
	// Ignore maps the codes of the rules silenced for this event (`ignore:`
	// in the schema) to the reason given; nil when none is. Warnings (EG018,
	// EG024) are silenced by compile; breaking-change codes (EBnnn) by the
	// breaking command.
	Ignore map[Code]string
	// IgnoreDoc is how the docs list the silenced rules, in code order, e.g.
	// "EG024 (`dedup.ttl` is shorter than `retention`): the topic is compacted".
	IgnoreDoc []string
	// Anchor is the event's heading anchor in the docs.
	Anchor string
}

// EventPositions locate an event's settings; a zero Pos is a setting not
// written anywhere (the default applies).
type EventPositions struct {
	Topic, Version, Guarantee, Key, IdemKey Pos
	Dedup, DedupStore, DedupTTL             Pos
	Outbox, Retention                       Pos
}

// Field is a field of an event or record.
type Field struct {
	// Pos is where the field's name is written.
	Pos  Pos
	Name string // the name in the schema
	// Wire is the JSON key that records carry: the field's `json`, or
	// its Name. Every emitter that reads or writes records uses it.
	Wire     string
	GoName   string
	Doc      string
	Type     *Type
	Optional bool
	// IsKey marks fields used as key or idempotency key: they must be non-empty.
	IsKey bool
}

// Kind is the shape of a field type.
type Kind int

const (
	KindBool Kind = iota + 1
	KindInt32
	KindInt64
	KindFloat64
	KindString
	KindBytes
	KindUUID
	KindTimestamp
	KindDuration
	KindDecimal
	KindList
	KindMap
	KindNamed
)

var scalarKinds = map[string]Kind{
	"bool": KindBool, "int32": KindInt32, "int64": KindInt64, "float64": KindFloat64,
	"string": KindString, "bytes": KindBytes, "uuid": KindUUID, "timestamp": KindTimestamp,
	"duration": KindDuration, "decimal": KindDecimal,
}

// Type is a field type: a scalar, a list or map of a type, or a named type.
type Type struct {
	Kind  Kind
	Elem  *Type      // KindList, KindMap
	Named *NamedType // KindNamed
}

// String returns the schema spelling of the type.
func (t *Type) String() string {
	switch t.Kind {
	case KindList:
		return "list<" + t.Elem.String() + ">"
	case KindMap:
		return "map<string," + t.Elem.String() + ">"
	case KindNamed:
		return t.Named.Name
	}
	for name, k := range scalarKinds {
		if k == t.Kind {
			return name
		}
	}
	return "?"
}

// Pipeline is a consume-transform-produce pipeline.
type Pipeline struct {
	Name      string
	GoName    string
	Doc       string
	Consumes  *Event
	Produces  []*Event
	Guarantee event.Guarantee
	Pos       Pos
	// Emitter is the type handed to the handler, Handler the handler's
	// func type and Run the function running the pipeline.
	Emitter, Handler, Run string
}
