package event_test

import (
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
)

// benchMoney and benchPayment decode as generated UnmarshalJSON methods do
// (the shop example's Money and PaymentCaptured).
type benchMoney struct {
	Cents    int64
	Currency string
}

func (m *benchMoney) UnmarshalJSON(data []byte) error {
	obj, err := event.DecodeObject(data)
	if err != nil {
		return err
	}
	m.Cents = event.Field(obj, "cents", event.DecodeInt64)
	m.Currency = event.Field(obj, "currency", event.DecodeString)
	return obj.Err()
}

type benchPayment struct {
	PaymentID, OrderID event.UUID
	Amount             benchMoney
	CapturedAt         time.Time
	Lines              []string
}

func (e *benchPayment) UnmarshalJSON(data []byte) error {
	obj, err := event.DecodeObject(data)
	if err != nil {
		return err
	}
	e.PaymentID = event.Field(obj, "payment_id", event.DecodeUUID)
	e.OrderID = event.Field(obj, "order_id", event.DecodeUUID)
	e.Amount = event.Field(obj, "amount", event.DecodeRecord[benchMoney])
	e.CapturedAt = event.Field(obj, "captured_at", event.DecodeTime)
	e.Lines = event.Field(obj, "lines", func(raw []byte) ([]string, error) { return event.DecodeList(raw, event.DecodeString) })
	return obj.Err()
}

var benchPaymentJSON = []byte(`{"payment_id":"0b7e3f4a-58c4-4f3e-9d5e-1c2b3a4d5e6f","order_id":"9c1f086a-36b6-4861-9a8d-9da97850982c","amount":{"cents":1999,"currency":"EUR"},"captured_at":"2026-11-26T18:00:00.123456789Z","lines":["espresso machine","grinder"]}`)

// BenchmarkDecodeEvent decodes a ~230-byte event with a nested record and
// a list: the per-record decoding cost of every consumer and pipeline.
func BenchmarkDecodeEvent(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPaymentJSON)))
	for b.Loop() {
		var p benchPayment
		if err := p.UnmarshalJSON(benchPaymentJSON); err != nil {
			b.Fatal(err)
		}
	}
}
