package generator

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestJSONKeyEscapes checks that the key literal AppendJSON writes is the
// JSON string of the key, for every key wireKeyProblem accepts.
func TestJSONKeyEscapes(t *testing.T) {
	for _, k := range []string{"paymentId", `say "hi"`, `back\slash`, `\"`, `\\u0041`, "Größe", "日本", "a b", "<&>", "labels,all", "'", "`", "😀", "\u2028x"} {
		if wireKeyProblem(k) != "" {
			continue // not a key eventgen writes (U+2028 is not printable)
		}
		var got string
		if err := json.Unmarshal([]byte(jsonKey(k)), &got); err != nil || got != k {
			t.Errorf("jsonKey(%q) = %s, which decodes to %q (%v)", k, jsonKey(k), got, err)
		}
	}
}

func FuzzJSONKey(f *testing.F) {
	for _, k := range []string{"paymentId", `a"b\c`, "Größe", "\x7f", "\t"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if wireKeyProblem(k) != "" {
			return
		}
		if !utf8.ValidString(k) {
			t.Fatalf("wireKeyProblem accepted invalid UTF-8 %q", k)
		}
		var got string
		if err := json.Unmarshal([]byte(jsonKey(k)), &got); err != nil || got != k {
			t.Fatalf("jsonKey(%q) = %s, which decodes to %q (%v)", k, jsonKey(k), got, err)
		}
	})
}

func TestIsJSONTagName(t *testing.T) {
	for k, want := range map[string]bool{
		"paymentId": true, "payment_id": true, "Größe": true, "a b": true, "$ref": true, "x-y.z": true,
		"": false, "a,b": false, `a"b`: false, `a\b`: false, "a'b": false, "a`b": false,
	} {
		if got := isJSONTagName(k); got != want {
			t.Errorf("isJSONTagName(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestMDCode(t *testing.T) {
	for in, want := range map[string]string{
		"paymentId": "`paymentId`",
		"a|b":       "`a\\|b`",
		"a`b":       "``a`b``",
		"`a":        "`` `a ``",
	} {
		if got := mdCode(in); got != want {
			t.Errorf("mdCode(%q) = %q, want %q", in, got, want)
		}
	}
}

const wireSchema = `version: 1
package: pay
events:
  PaymentMade:
    topic: payments
    guarantee: at-most-once
    key: payment_id
    fields:
      payment_id: {type: string, json: paymentId}
      amount: int64
`

// TestWireKeyInIR checks that Wire defaults to the name, that json sets it
// without touching the Go name, and that the fingerprint follows the key,
// not the name.
func TestWireKeyInIR(t *testing.T) {
	s := compileOne(t, "schema.yaml", wireSchema)
	fs := s.Events[0].Fields
	if fs[0].Name != "payment_id" || fs[0].Wire != "paymentId" || fs[0].GoName != "PaymentID" {
		t.Errorf("payment_id: Name %q Wire %q GoName %q", fs[0].Name, fs[0].Wire, fs[0].GoName)
	}
	if fs[1].Wire != "amount" {
		t.Errorf("amount: Wire %q, want the name", fs[1].Wire)
	}
	// Renamed, key kept: the same wire shape.
	renamed := compileOne(t, "schema.yaml", strings.NewReplacer("key: payment_id", "key: id", "payment_id:", "id:").Replace(wireSchema))
	if renamed.Events[0].Fingerprint != s.Events[0].Fingerprint {
		t.Errorf("a rename keeping the JSON key changed the fingerprint")
	}
	// The key spelt by json, with no json: the same wire shape too.
	plain := compileOne(t, "schema.yaml", strings.NewReplacer("key: payment_id", "key: payment_id", "{type: string, json: paymentId}", "{type: string, json: payment_id}").Replace(wireSchema))
	noJSON := compileOne(t, "schema.yaml", strings.Replace(wireSchema, "{type: string, json: paymentId}", "string", 1))
	if plain.Events[0].Fingerprint != noJSON.Events[0].Fingerprint {
		t.Errorf("json equal to the name changed the fingerprint")
	}
	if noJSON.Events[0].Fingerprint == s.Events[0].Fingerprint {
		t.Errorf("another JSON key left the fingerprint unchanged")
	}
	// Breaking: the rename is compatible in every mode; a new key is EB019.
	if ds := Breaking(s, renamed, Full); len(ds) != 0 {
		t.Errorf("rename keeping the key:\n%s", ds)
	}
	ds := Breaking(s, noJSON, Full)
	if len(ds) != 1 || ds[0].Code != CodeWireKeyChanged {
		t.Errorf("json removed: want one EB019, got\n%s", ds)
	}
}
