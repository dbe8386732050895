package generator

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const ignoreSchema = `version: 1
package: orders
defaults:
  guarantee: at-least-once
  idempotency_key: [order_id]
  dedup: {store: postgres, ttl: 24h}
  retention: 168h
events:
  OrderPlaced:
    topic: shop.orders.placed
%s    fields:
      order_id: uuid
  OrderPaid:
    topic: shop.orders.paid
    fields:
      order_id: uuid
`

const ignoreEntries = `    ignore:
      EG024: "  compacted topic;
        a day is enough  "
      EB002: consumers were all redeployed first
`

func generateSchema(t *testing.T, src string) ([]File, Diagnostics) {
	t.Helper()
	files, diags := Generate([]Input{{Path: "orders.yaml", Data: []byte(src)}}, Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return files, diags
}

// TestIgnoreKeepsGoIdentical: ignore changes what is reported and the docs,
// never the generated Go.
func TestIgnoreKeepsGoIdentical(t *testing.T) {
	plain, plainDiags := generateSchema(t, fmt.Sprintf(ignoreSchema, ""))
	silenced, silencedDiags := generateSchema(t, fmt.Sprintf(ignoreSchema, ignoreEntries))
	if len(plain) != len(silenced) {
		t.Fatalf("%d files without ignore, %d with", len(plain), len(silenced))
	}
	for i := range plain {
		same := bytes.Equal(plain[i].Data, silenced[i].Data)
		switch {
		case strings.HasSuffix(plain[i].Path, ".go") && !same:
			t.Errorf("%s changed with ignore (-without +with):\n%s", plain[i].Path, silenced[i].Data)
		case strings.HasSuffix(plain[i].Path, ".md") && same:
			t.Errorf("%s does not show the silenced checks", plain[i].Path)
		}
	}
	// OrderPaid still triggers the default's EG024, at the same position:
	// one warning either way.
	if plainDiags.String() != silencedDiags.String() || len(silencedDiags) != 1 {
		t.Errorf("diagnostics without ignore:\n%swith:\n%s", plainDiags, silencedDiags)
	}
}

func TestIgnoreIR(t *testing.T) {
	src := fmt.Sprintf(ignoreSchema, ignoreEntries)
	schemas, diags := Check([]Input{{Path: "orders.yaml", Data: []byte(src)}})
	if diags.HasErrors() || len(schemas) != 1 {
		t.Fatal(diags)
	}
	placed, paid := schemas[0].Events[0], schemas[0].Events[1]
	want := map[Code]string{
		"EG024": "compacted topic; a day is enough",
		"EB002": "consumers were all redeployed first",
	}
	if fmt.Sprint(placed.Ignore) != fmt.Sprint(want) {
		t.Errorf("OrderPlaced.Ignore = %v, want %v", placed.Ignore, want)
	}
	if paid.Ignore != nil {
		t.Errorf("OrderPaid.Ignore = %v, want nil", paid.Ignore)
	}
	wantDoc := []string{
		// A breaking-change code is titled by its rule in breakingRules.
		"EB002 (A required field was removed): consumers were all redeployed first",
		"EG024 (`dedup.ttl` is shorter than `retention`): compacted topic; a day is enough",
	}
	if fmt.Sprintf("%q", placed.IgnoreDoc) != fmt.Sprintf("%q", wantDoc) {
		t.Errorf("IgnoreDoc = %q, want %q", placed.IgnoreDoc, wantDoc)
	}
	// With every event silencing it, the warning is gone.
	src = strings.Replace(src, "    topic: shop.orders.paid\n", "    topic: shop.orders.paid\n    ignore: {EG024: same here}\n", 1)
	if _, diags := Check([]Input{{Path: "orders.yaml", Data: []byte(src)}}); len(diags) != 0 {
		t.Errorf("silenced everywhere, still reported:\n%s", diags)
	}
}

func TestSilenceable(t *testing.T) {
	for code, want := range map[Code]bool{
		"EG018": true, "EG024": true, "EB001": true, "EB016": true, "EB018": true, "EB019": true,
		// Of the form EBnnn but no rule's code: unknown.
		"EB020": false, "EB999": false, "EB000": false,
		"EG019": false, "EG033": false, "EB01": false, "EB0001": false, "EBabc": false, "eb001": false, "": false,
	} {
		if got := silenceable(code); got != want {
			t.Errorf("silenceable(%q) = %v, want %v", code, got, want)
		}
	}
}

var goldenWarning = regexp.MustCompile(`: warning: .*\[(E[A-Z][0-9]+)\]`)

// TestWarningCodes keeps warningCodes, which decides what ignore can
// silence, in step with the summaries, docs/schema.md's severity column
// and the warnings the golden cases print.
func TestWarningCodes(t *testing.T) {
	doc, err := os.ReadFile("../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	for code, summary := range codeSummaries {
		warning := strings.HasPrefix(summary, "(warning)")
		if warning != warningCodes[code] {
			t.Errorf("%s: summary says warning=%v, warningCodes says %v", code, warning, warningCodes[code])
		}
		severity := "error"
		if warning {
			severity = "warning"
		}
		if row := fmt.Sprintf("| %s | %s |", code, severity); !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/schema.md has no row starting %q", row)
		}
		if warning && (codeTitle(code) == "" || len(codeTitle(code)) >= len(summary)-len("(warning) ")) {
			t.Errorf("%s: title %q is not a short form of the summary", code, codeTitle(code))
		}
	}
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*", "stderr.txt"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goldenWarning.FindAllSubmatch(b, -1) {
			if code := Code(m[1]); !silenceable(code) {
				t.Errorf("%s: %s is printed as a warning but is neither in warningCodes nor a breaking-change code, so ignore cannot silence it", f, code)
			}
		}
	}
}

func TestSuggestCode(t *testing.T) {
	for in, want := range map[string]string{
		"eg024":  `; did you mean "EG024"?`,
		"EG24":   `; did you mean "EG024"?`,
		"EG0018": `; did you mean "EG018"?`,
		"eb001":  `; did you mean "EB001"?`,
		"EB18":   `; did you mean "EB018"?`,
		"EB0009": `; did you mean "EB009"?`,
		"eb09":   `; did you mean "EB009"?`,
		// Well-formed, but no rule has it: the message lists the codes.
		"EB020": "",
		"EB099": "",
		// Another number is another rule, not a typo.
		"EG099": "",
		"EG042": "",
		"ttl":   "",
	} {
		if got := suggestCode(in); got != want {
			t.Errorf("suggestCode(%q) = %q, want %q", in, got, want)
		}
	}
}
