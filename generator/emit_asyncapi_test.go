package generator

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// asyncAPIInputs are the schemas whose export must be valid: every example
// and every golden case's schema that checks without errors.
func asyncAPIInputs(t *testing.T) []Input {
	inputs := exampleInputs(t)
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*", "schema.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, diags := Check([]Input{{Path: p, Data: b}}); !diags.HasErrors() {
			inputs = append(inputs, Input{Path: p, Data: b})
		}
	}
	return inputs
}

// TestAsyncAPIValid runs @asyncapi/parser (tools/asyncapi) over the export
// of every example and valid golden schema: any diagnostic of severity
// error fails the test.
func TestAsyncAPIValid(t *testing.T) {
	t.Parallel() // node mostly waits on module loading: overlap it
	var docs []namedText
	for _, in := range asyncAPIInputs(t) {
		schemas, diags := Check([]Input{in})
		if diags.HasErrors() || len(schemas) != 1 {
			t.Fatalf("%s: %s", in.Path, diags)
		}
		doc, err := AsyncAPI(schemas[0], in.Path)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := AsyncAPI(schemas[0], in.Path)
		if !bytes.Equal(doc, again) {
			t.Errorf("%s: two exports differ", in.Path)
		}
		docs = append(docs, namedText{Name: filepath.ToSlash(in.Path), Text: string(doc)})
	}
	runNodeCheck(t, "asyncapi", "@asyncapi/parser", docs)
}

// TestAsyncAPIGoldenPerExample keeps an asyncapi_<example> golden case for
// every example schema, holding the example unchanged.
func TestAsyncAPIGoldenPerExample(t *testing.T) {
	for _, in := range exampleInputs(t) {
		name := strings.TrimSuffix(filepath.Base(in.Path), filepath.Ext(in.Path))
		p := filepath.Join(goldenDir, "asyncapi_"+name, "schema.yaml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("example %s has no AsyncAPI golden case: %v", in.Path, err)
			continue
		}
		if !bytes.Equal(b, in.Data) {
			t.Errorf("%s differs from %s: copy the example (cp %s %s) and rerun go test ./cmd/eventgen -update", p, in.Path, in.Path, p)
		}
	}
}

func TestAsyncAPIHelpers(t *testing.T) {
	for in, want := range map[string]string{"a.b-c_d": "a.b-c_d", "a/b~c": "a~1b~0c"} {
		if got := jsonPointerToken(in); got != want {
			t.Errorf("jsonPointerToken(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct{ out, schema, want string }{
		{"", "schemas/shop.yaml", "schemas/shop.yaml"},
		{"api/shop.asyncapi.yaml", "schemas/shop.yaml", "../schemas/shop.yaml"},
		{"shop.asyncapi.yaml", "shop.yaml", "shop.yaml"},
	} {
		if got := AsyncAPISource(tc.out, tc.schema); got != tc.want {
			t.Errorf("AsyncAPISource(%q, %q) = %q, want %q", tc.out, tc.schema, got, tc.want)
		}
	}
}
