package generator

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const breakingOld = `version: 1
package: shop
events:
  OrderPlaced:
    topic: shop.orders
    guarantee: at-most-once
    key: order_id
    fields:
      order_id: uuid
      customer_id: string
`

func compileOne(t *testing.T, path, src string) *Schema {
	t.Helper()
	schemas, diags := Check([]Input{{Path: path, Data: []byte(src)}})
	if diags.HasErrors() || len(schemas) != 1 {
		t.Fatalf("%s does not compile:\n%s", path, diags)
	}
	return schemas[0]
}

// TestBreakingIgnore checks that an event's `ignore:`, read by the loader,
// silences exactly the codes it names, for that event only. (The golden
// case compatible_ignored does the same through the CLI.)
func TestBreakingIgnore(t *testing.T) {
	old := breakingOld + `  OrderPaid:
    topic: shop.payments
    guarantee: at-most-once
    fields:
      order_id: uuid
`
	cur := strings.ReplaceAll(old, "topic: shop.orders", "topic: shop.orders.v2")
	cur = strings.ReplaceAll(cur, "topic: shop.payments", "topic: shop.payments.v2")
	cur = strings.ReplaceAll(cur, "key: order_id", "key: customer_id")
	prev := compileOne(t, "old.yaml", old)

	codes := func(ds Diagnostics) []string {
		var out []string
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%d:%s", d.Pos.Line, d.Code))
		}
		return out
	}
	if got, want := codes(Breaking(prev, compileOne(t, "schema.yaml", cur), Backward)), "[5:EB009 7:EB010 12:EB009]"; fmt.Sprint(got) != want {
		t.Fatalf("without ignore: %v, want %s", got, want)
	}
	// OrderPlaced silences its topic change; its key change, and OrderPaid's
	// topic change, are still reported.
	ignored := strings.Replace(cur, "    topic: shop.orders.v2\n", "    topic: shop.orders.v2\n    ignore: {EB009: the old topic is mirrored to the new one}\n", 1)
	s := compileOne(t, "schema.yaml", ignored)
	if got := s.Events[0].Ignore[CodeTopicChanged]; got != "the old topic is mirrored to the new one" {
		t.Fatalf("OrderPlaced.Ignore[EB009] = %q", got)
	}
	if got, want := codes(Breaking(prev, s, Backward)), "[8:EB010 13:EB009]"; fmt.Sprint(got) != want {
		t.Errorf("ignoring EB009 on OrderPlaced: %v, want %s", got, want)
	}
}

func TestBreakingNewSchema(t *testing.T) {
	if ds := Breaking(nil, compileOne(t, "schema.yaml", breakingOld), Full); len(ds) != 0 {
		t.Errorf("a schema with no old version: %s", ds)
	}
}

func TestParseMode(t *testing.T) {
	for name, want := range map[string]Mode{"backward": Backward, "forward": Forward, "full": Full} {
		if m, err := ParseMode(name); err != nil || m != want || m.String() != name {
			t.Errorf("ParseMode(%q) = %v, %v", name, m, err)
		}
	}
	if _, err := ParseMode("BACKWARD_TRANSITIVE"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
}

// TestEveryBreakingRuleHasAGoldenCase keeps the rules and the goldens in
// step: each EB code must appear in some breaking_* or compatible_* case.
func TestEveryBreakingRuleHasAGoldenCase(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*", "stderr.txt"))
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	for code, r := range breakingRules {
		if !bytes.Contains(all, []byte("["+string(code)+"]")) {
			t.Errorf("%s (%s) has no golden case", code, r.summary)
		}
	}
}

// TestBreakingRulesDocumented checks that docs/breaking.md has a row for
// every rule naming the modes it is reported in.
func TestBreakingRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/breaking.md")
	if err != nil {
		t.Fatal(err)
	}
	for code, r := range breakingRules {
		row := "| " + string(code) + " | " + r.modes.modesDoc() + " |"
		if !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/breaking.md has no row starting %q", row)
		}
	}
}
