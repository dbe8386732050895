package generator

import (
	"bytes"
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

// TestBreakingIgnore checks that an event's ignore map silences exactly
// the codes it names, for that event. The loader's `ignore:` key comes
// from another branch; the IR field is what breaking reads.
func TestBreakingIgnore(t *testing.T) {
	cur := strings.ReplaceAll(breakingOld, "topic: shop.orders", "topic: shop.orders.v2")
	cur = strings.ReplaceAll(cur, "key: order_id", "key: customer_id")
	old := compileOne(t, "old.yaml", breakingOld)

	codes := func(ds Diagnostics) []Code {
		var out []Code
		for _, d := range ds {
			out = append(out, d.Code)
		}
		return out
	}
	s := compileOne(t, "schema.yaml", cur)
	if got := codes(Breaking(old, s, Backward)); len(got) != 2 || got[0] != CodeTopicChanged || got[1] != CodeKeyChanged {
		t.Fatalf("without ignore: codes %v, want [EB009 EB010]", got)
	}
	s.Events[0].Ignore = map[Code]string{CodeTopicChanged: "the old topic is mirrored to the new one"}
	if got := codes(Breaking(old, s, Backward)); len(got) != 1 || got[0] != CodeKeyChanged {
		t.Errorf("ignoring EB009: codes %v, want [EB010]", got)
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
