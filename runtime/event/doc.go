// Package event is the part of the eventgen runtime that every generated
// file needs and that needs nothing but the standard library: the Event and
// Record interfaces generated types implement, the Type metadata of each
// event (topic, guarantee, CloudEvents type, dedup store), the JSON wire
// codecs (Append*, Decode*, Object), validation helpers (Validator),
// UUID and Decimal, the CloudEvents header names, and the compile-time
// version handshake (EnforceVersion).
//
// A generated <schema>_events.gen.go imports only this package, so code that
// only builds or reads events links no Kafka, PostgreSQL or Redis client.
// Clients live in packages of their own, each carrying its dependency:
// runtime/kafka (sarama) today; see docs/architecture.md for the rest.
//
// The wire format is documented in docs/wire-format.md. Generated code calls
// the codecs the way a careful hand-written encoder would:
//
//	func (e *OrderPlaced) AppendJSON(b []byte) []byte {
//		start := len(b)
//		b = append(b, ",\"order_id\":"...)
//		b = event.AppendUUID(b, e.OrderID)
//		...
//		return event.CloseObject(b, start)
//	}
//
// Nothing in this package is mutable after initialisation.
package event
