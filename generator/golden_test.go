package generator

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenDir holds the golden cases; cmd/eventgen's TestGolden runs them
// through the CLI.
const goldenDir = "../testdata/golden"

// TestEveryCodeHasAnInvalidCase keeps the rule list and the goldens in step:
// each diagnostic code must appear in some case's stderr.txt.
func TestEveryCodeHasAnInvalidCase(t *testing.T) {
	seen := map[Code]bool{}
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*", "stderr.txt"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for code := range codeSummaries {
			if bytes.Contains(b, []byte("["+string(code)+"]")) {
				seen[code] = true
			}
		}
	}
	for code, summary := range codeSummaries {
		if !seen[code] {
			t.Errorf("%s (%s) has no golden case", code, summary)
		}
	}
}

// TestCodesDocumented checks that docs/schema.md lists every code.
func TestCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	for code := range codeSummaries {
		if !bytes.Contains(doc, []byte(string(code))) {
			t.Errorf("docs/schema.md does not mention %s", code)
		}
	}
}

func exampleInputs(t testing.TB) []Input {
	paths, err := filepath.Glob("../schemas/examples/*/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no example schemas: %v", err)
	}
	var inputs []Input
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, Input{Path: p, Data: b})
	}
	return inputs
}

func TestHeaderLine(t *testing.T) {
	for name, want := range map[string]string{
		"a_events.gen.go": "// " + Header,
		"a_events.gen.md": "<!-- " + Header + " -->",
		"a_dedup.gen.sql": "-- " + Header,
	} {
		if got, ok := HeaderLine(name); !ok || got != want {
			t.Errorf("HeaderLine(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	if _, ok := HeaderLine("a.gen.txt"); ok {
		t.Error("HeaderLine knows a comment syntax for .txt")
	}
}

// TestDeterministic generates the examples twice and compares bytes.
func TestDeterministic(t *testing.T) {
	inputs := exampleInputs(t)
	first, diags := Generate(inputs, Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for range 5 {
		again, _ := Generate(inputs, Options{})
		if len(again) != len(first) {
			t.Fatalf("run produced %d files, first run %d", len(again), len(first))
		}
		for i := range first {
			if first[i].Path != again[i].Path || !bytes.Equal(first[i].Data, again[i].Data) {
				t.Fatalf("%s differs between runs", first[i].Path)
			}
		}
	}
}

// TestHeader checks that every generated Go file is recognised as generated
// by go/ast and starts with the header line.
func TestHeader(t *testing.T) {
	files, diags := Generate(exampleInputs(t), Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, f := range files {
		if !IsGenerated(f.Path, f.Data) {
			first, _, _ := strings.Cut(string(f.Data), "\n")
			t.Errorf("%s: first line %q", f.Path, first)
		}
		if !strings.HasSuffix(f.Path, ".go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f.Path, f.Data, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if !ast.IsGenerated(file) {
			t.Errorf("%s: ast.IsGenerated is false", f.Path)
		}
	}
}
