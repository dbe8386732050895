// Package testevent holds hand-written events implementing event.Event, in
// the shape generated code will have, for the runtime's own tests and
// benchmarks.
package testevent

import (
	"errors"

	"github.com/eventgen/eventgen/runtime/event"
)

// Order is a small event of about 200 bytes on the wire.
type Order struct {
	ID       string
	Customer string
	Amount   int64
	Note     string
	et       *event.Type
}

// Type returns an EventType for topic with the given guarantee.
func Type(topic string, g event.Guarantee) *event.Type {
	return &event.Type{
		Name:      "Order",
		Topic:     topic,
		Guarantee: g,
		CEType:    "test.Order.v1",
		Source:    "eventgen/runtime/test",
	}
}

// New returns an Order of type et.
func New(et *event.Type, id, customer string, amount int64) *Order {
	return &Order{ID: id, Customer: customer, Amount: amount,
		Note: "padding to make the record about two hundred bytes long, like a typical small business event payload.",
		et:   et}
}

// EventType implements event.Event.
func (o *Order) EventType() *event.Type { return o.et }

// Key implements event.Event: orders of a customer keep their order.
func (o *Order) Key() string { return o.Customer }

// IdempotencyKey implements event.Event.
func (o *Order) IdempotencyKey() string { return o.ID }

// Validate implements event.Event.
func (o *Order) Validate() error {
	var v event.Validator
	v.NonEmpty("id", o.ID)
	v.NonEmpty("customer", o.Customer)
	return v.Err()
}

// AppendJSON implements event.Event.
func (o *Order) AppendJSON(b []byte) []byte {
	start := len(b)
	b = append(b, `,"id":`...)
	b = event.AppendString(b, o.ID)
	b = append(b, `,"customer":`...)
	b = event.AppendString(b, o.Customer)
	b = append(b, `,"amount":`...)
	b = event.AppendInt64(b, o.Amount)
	b = append(b, `,"note":`...)
	b = event.AppendString(b, o.Note)
	return event.CloseObject(b, start)
}

// UnmarshalJSON implements event.Event.
func (o *Order) UnmarshalJSON(data []byte) error {
	obj, err := event.DecodeObject(data)
	if err != nil {
		return err
	}
	o.ID = event.Field(obj, "id", event.DecodeString)
	o.Customer = event.Field(obj, "customer", event.DecodeString)
	o.Amount = event.Field(obj, "amount", event.DecodeInt64)
	if n := event.OptionalField(obj, "note", event.DecodeString); n != nil {
		o.Note = *n
	}
	return obj.Err()
}

// Decode decodes an Order of type et.
func Decode(et *event.Type, data []byte) (*Order, error) {
	o := &Order{et: et}
	if err := o.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	if o.ID == "" {
		return nil, errors.New("empty id")
	}
	return o, nil
}
