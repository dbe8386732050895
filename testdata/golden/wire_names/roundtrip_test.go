package wirenames

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
)

// foreign is a record as a producer that is not eventgen writes it (here
// in the schema's field order, which is also the order AppendJSON writes):
// its keys are the json keys of the schema, not the field names.
const foreign = `{"paymentId":"pay-7","amountPaid":{"valueCents":1250,"currency code":"EUR"},` +
	`"createdAt":"2024-05-01T12:30:00Z","say \"hi\" \\ back":"hello","Größe":42,` +
	`"labels,all":["a","b"],"refundList":[{"valueCents":1,"currency code":"USD"}],"note":"n"}`

func ptr[T any](v T) *T { return &v }

func want() *PaymentMade {
	return &PaymentMade{
		PaymentID: "pay-7",
		Amount:    Money{Cents: 1250, Currency: "EUR"},
		CreatedAt: time.Date(2024, 5, 1, 12, 30, 0, 0, time.UTC),
		Remark:    ptr("hello"),
		Size:      ptr(int32(42)),
		Labels:    []string{"a", "b"},
		Refunds:   []Money{{Cents: 1, Currency: "USD"}},
		Note:      ptr("n"),
	}
}

func TestDecodesForeignKeys(t *testing.T) {
	var got PaymentMade
	if err := json.Unmarshal([]byte(foreign), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want()) {
		t.Errorf("decoded\n%#v\nwant\n%#v", got, *want())
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Key and idempotency key are the field's value, whatever its key.
	if got.Key() != "pay-7" || got.IdempotencyKey() != "pay-7" {
		t.Errorf("Key %q, IdempotencyKey %q; want pay-7", got.Key(), got.IdempotencyKey())
	}
}

func TestEncodesForeignKeys(t *testing.T) {
	b := want().AppendJSON(nil)
	if string(b) != foreign {
		t.Errorf("AppendJSON\n%s\nwant\n%s", b, foreign)
	}
	// The same keys, read by encoding/json: the escaping is right.
	keys := func(doc []byte) []string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		return slices.Sorted(maps.Keys(m))
	}
	wantKeys := []string{"Größe", "amountPaid", "createdAt", "labels,all", "note", "paymentId", "refundList", `say "hi" \ back`}
	if got := keys(b); !slices.Equal(got, wantKeys) {
		t.Errorf("keys %q, want %q", got, wantKeys)
	}
	// encoding/json writes the same bytes through MarshalJSON.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(want()); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSuffix(buf.String(), "\n"); got != foreign {
		t.Errorf("json.Encoder\n%s\nwant\n%s", got, foreign)
	}
}

// TestSchemaNamesAreNotKeys: a record with the schema's names, not its
// keys, lacks every required key, and the errors name the keys, which is
// what the producer of the record can look up.
func TestSchemaNamesAreNotKeys(t *testing.T) {
	doc := `{"payment_id":"pay-7","amount":{"cents":1,"currency":"EUR"},"created_at":"2024-05-01T12:30:00Z"}`
	var got PaymentMade
	err := json.Unmarshal([]byte(doc), &got)
	if !errors.Is(err, event.ErrMissingField) {
		t.Fatalf("err = %v, want ErrMissingField", err)
	}
	for _, path := range []string{"paymentId", "amountPaid", "createdAt"} {
		if !strings.Contains(err.Error(), path+": "+event.ErrMissingField.Error()) {
			t.Errorf("error does not name key %s:\n%v", path, err)
		}
	}
}

// TestValidatePathsAreKeys: Validate names nested fields by key too.
func TestValidatePathsAreKeys(t *testing.T) {
	e := want()
	e.PaymentID = ""
	e.CreatedAt = time.Time{}
	err := e.Validate()
	if err == nil {
		t.Fatal("Validate accepted an empty key and a zero timestamp")
	}
	for _, path := range []string{"paymentId", "createdAt"} {
		if !strings.Contains(err.Error(), path+": ") {
			t.Errorf("Validate error does not name key %s:\n%v", path, err)
		}
	}
	var fe *event.FieldError
	if !errors.As(err, &fe) || fe.Path != "paymentId" {
		t.Errorf("first FieldError %+v, want path paymentId", fe)
	}
}

// TestNestedDecodePathsAreKeys: a bad value in the record type is reported
// under both keys, the event's and the record's.
func TestNestedDecodePathsAreKeys(t *testing.T) {
	doc := strings.Replace(foreign, `"valueCents":1250`, `"valueCents":"x"`, 1)
	var got PaymentMade
	err := json.Unmarshal([]byte(doc), &got)
	var fe *event.FieldError
	if !errors.As(err, &fe) || fe.Path != "amountPaid.valueCents" {
		t.Errorf("err %v (path %+v), want path amountPaid.valueCents", err, fe)
	}
}
