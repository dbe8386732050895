package generator

import (
	"time"

	"github.com/eventgen/eventgen/runtime/event"
)

// The IR is a validated schema with every Go name resolved. Emitters read
// it and never compute names or check rules themselves.

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
}

// NamedType is a record (Fields) or an enum (Values) from `types`.
type NamedType struct {
	Name   string
	GoName string
	Doc    string
	Fields []*Field
	Values []*EnumValue
}

// IsEnum reports whether the type is an enum.
func (t *NamedType) IsEnum() bool { return t.Values != nil }

// EnumValue is one enum constant.
type EnumValue struct {
	Value  string // the wire value
	GoName string // the constant's name, e.g. OrderStatusPending
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
	// CEType is the CloudEvents type, e.g. orders.OrderPlaced.v1.
	CEType      string
	Fingerprint string
	// MetaVar is the unexported variable holding the runtime.EventType.
	MetaVar string
}

// Field is a field of an event or record.
type Field struct {
	Name     string // the wire name (JSON key)
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
}
