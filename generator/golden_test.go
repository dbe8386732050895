package generator

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const goldenDir = "../testdata/golden"

// TestGolden runs every case in testdata/golden/<case>/: schema.yaml is the
// input; a valid case's expected output is the generated files next to it,
// an invalid case's is stderr.txt with every diagnostic.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join(goldenDir, "*", "schema.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases found")
	}
	for _, schemaPath := range cases {
		dir := filepath.Dir(schemaPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			runGolden(t, dir)
		})
	}
}

func runGolden(t *testing.T, dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "schema.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Diagnostics name the schema relative to the case folder, as a user
	// running eventgen inside it would see them.
	files, diags := Generate([]Input{{Path: "schema.yaml", Data: data}}, Options{OutDir: "."})
	got := map[string][]byte{}
	if diags.HasErrors() || len(diags) > 0 {
		got["stderr.txt"] = []byte(diags.String())
	}
	for _, f := range files {
		got[filepath.Base(f.Path)] = f.Data
	}
	want := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		// Hand-written tests of the generated code live beside it.
		if e.Name() == "schema.yaml" || e.IsDir() || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		want[e.Name()] = b
	}
	if *update {
		for name := range want {
			if _, ok := got[name]; !ok {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, b := range got {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	names := map[string]bool{}
	for n := range want {
		names[n] = true
	}
	for n := range got {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, name := range sorted {
		w, inWant := want[name]
		g, inGot := got[name]
		switch {
		case !inGot:
			t.Errorf("%s: expected file not generated (run go test ./generator -update)", name)
		case !inWant:
			t.Errorf("%s: generated but not in the golden folder (run go test ./generator -update):\n%s", name, g)
		case !bytes.Equal(w, g):
			t.Errorf("%s differs from the golden file (-want +got):\n%s", name, lineDiff(string(w), string(g)))
		}
	}
}

// lineDiff is a small -want +got listing of differing lines.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("-" + wl + "\n+" + gl + "\n")
		}
	}
	return b.String()
}

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
