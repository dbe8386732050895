// Package testevent holds hand-written events implementing runtime.Event, in
// the shape generated code will have, for the runtime's own tests and
// benchmarks.
package testevent

import (
	"errors"

	"github.com/eventgen/eventgen/runtime"
)

// Order is a small event of about 200 bytes on the wire.
type Order struct {
	ID       string
	Customer string
	Amount   int64
	Note     string
	et       *runtime.EventType
}

// Type returns an EventType for topic with the given guarantee.
func Type(topic string, g runtime.Guarantee) *runtime.EventType {
	return &runtime.EventType{
		Name:      "Order",
		Topic:     topic,
		Guarantee: g,
		CEType:    "test.Order.v1",
		Source:    "eventgen/runtime/test",
	}
}

// New returns an Order of type et.
func New(et *runtime.EventType, id, customer string, amount int64) *Order {
	return &Order{ID: id, Customer: customer, Amount: amount,
		Note: "padding to make the record about two hundred bytes long, like a typical small business event payload.",
		et:   et}
}

// EventType implements runtime.Event.
func (o *Order) EventType() *runtime.EventType { return o.et }

// Key implements runtime.Event: orders of a customer keep their order.
func (o *Order) Key() string { return o.Customer }

// IdempotencyKey implements runtime.Event.
func (o *Order) IdempotencyKey() string { return o.ID }

// Validate implements runtime.Event.
func (o *Order) Validate() error {
	var v runtime.Validator
	v.NonEmpty("id", o.ID)
	v.NonEmpty("customer", o.Customer)
	return v.Err()
}

// AppendJSON implements runtime.Event.
func (o *Order) AppendJSON(b []byte) []byte {
	start := len(b)
	b = append(b, `,"id":`...)
	b = runtime.AppendString(b, o.ID)
	b = append(b, `,"customer":`...)
	b = runtime.AppendString(b, o.Customer)
	b = append(b, `,"amount":`...)
	b = runtime.AppendInt64(b, o.Amount)
	b = append(b, `,"note":`...)
	b = runtime.AppendString(b, o.Note)
	return runtime.CloseObject(b, start)
}

// UnmarshalJSON implements runtime.Event.
func (o *Order) UnmarshalJSON(data []byte) error {
	obj, err := runtime.DecodeObject(data)
	if err != nil {
		return err
	}
	o.ID = runtime.Field(obj, "id", runtime.DecodeString)
	o.Customer = runtime.Field(obj, "customer", runtime.DecodeString)
	o.Amount = runtime.Field(obj, "amount", runtime.DecodeInt64)
	if n := runtime.OptionalField(obj, "note", runtime.DecodeString); n != nil {
		o.Note = *n
	}
	return obj.Err()
}

// Decode decodes an Order of type et.
func Decode(et *runtime.EventType, data []byte) (*Order, error) {
	o := &Order{et: et}
	if err := o.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	if o.ID == "" {
		return nil, errors.New("empty id")
	}
	return o, nil
}
