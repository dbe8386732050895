package main

import (
	"bytes"
	"testing"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// TestRawReceiptSameBytes checks that the hand-written loop decodes the
// generated PaymentCaptured and writes the bytes, key and CloudEvents type
// the generated pipeline writes for it.
func TestRawReceiptSameBytes(t *testing.T) {
	in := &shop.PaymentCaptured{PaymentID: event.NewUUID(), OrderID: event.NewUUID(), Amount: shop.Money{Cents: 1234, Currency: "EUR"}, CapturedAt: placedAt}
	pm, err := rawReceipt(&sarama.ConsumerMessage{Topic: paymentsTopic, Value: in.AppendJSON(nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := &shop.ReceiptIssued{PaymentID: in.PaymentID, OrderID: in.OrderID, Amount: in.Amount, Lines: []string{"espresso machine"}}
	got, _ := pm.Value.Encode()
	if !bytes.Equal(got, want.AppendJSON(nil)) {
		t.Errorf("raw receipt\n%s\nwant the generated\n%s", got, want.AppendJSON(nil))
	}
	if key, _ := pm.Key.Encode(); string(key) != want.Key() {
		t.Errorf("key %q, want %q", key, want.Key())
	}
	if pm.Topic != want.EventType().Topic {
		t.Errorf("topic %q, want %q", pm.Topic, want.EventType().Topic)
	}
	for _, h := range pm.Headers {
		if string(h.Key) == "ce_type" && string(h.Value) != want.EventType().CEType {
			t.Errorf("ce_type %q, want %q", h.Value, want.EventType().CEType)
		}
		if string(h.Key) == "ce_source" && string(h.Value) != want.EventType().Source {
			t.Errorf("ce_source %q, want %q", h.Value, want.EventType().Source)
		}
	}
	if (&shop.PaymentCaptured{}).EventType().Topic != paymentsTopic {
		t.Errorf("payments topic %q", paymentsTopic)
	}
}
