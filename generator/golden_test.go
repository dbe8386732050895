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

	"github.com/eventgen/eventgen/templates"
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

// TestGeneratedSQLIsTheMigration: the SQL file generated next to the Go
// code is, after its header comments, exactly the DDL the runtime's
// Migrate functions run with the default names: templates.RenderSQL
// (pgdedup.Migrate) for events consumed into PostgreSQL, then
// templates.OutboxDDL (outbox.Migrate) for outbox events; a schema with
// neither gets no SQL file. (runtime/outbox's TestGeneratedSQLIsWhatMigrateRuns
// applies the generated file to PostgreSQL.)
func TestGeneratedSQLIsTheMigration(t *testing.T) {
	dedupDDL, err := templates.RenderSQL(templates.SQLTables{})
	if err != nil {
		t.Fatal(err)
	}
	outboxDDL, err := templates.OutboxDDL(templates.OutboxTable{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		schema string
		want   []string // the DDL parts, in order; none: no SQL file
	}{
		{"../schemas/examples/shop/shop.yaml", []string{dedupDDL, outboxDDL}},
		{filepath.Join(goldenDir, "dedup_stores", "schema.yaml"), []string{dedupDDL}},
		{filepath.Join(goldenDir, "outbox_only", "schema.yaml"), []string{outboxDDL}},
		{filepath.Join(goldenDir, "minimal", "schema.yaml"), nil},
	} {
		data, err := os.ReadFile(c.schema)
		if err != nil {
			t.Fatal(err)
		}
		files, diags := Generate([]Input{{Path: "schema.yaml", Data: data}}, Options{})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		var sql []byte
		for _, f := range files {
			if strings.HasSuffix(f.Path, ".sql") {
				if sql != nil {
					t.Fatalf("%s: more than one SQL file", c.schema)
				}
				sql = f.Data
			}
		}
		if c.want == nil {
			if sql != nil {
				t.Errorf("%s: a SQL file for a schema that needs no table:\n%s", c.schema, sql)
			}
			continue
		}
		header, ddl, ok := bytes.Cut(sql, []byte("\n\n"))
		if !ok || !bytes.HasPrefix(header, []byte("-- Code generated by eventgen. DO NOT EDIT.\n-- source: schema.yaml\n")) {
			t.Fatalf("%s: the SQL file does not start with the header and its comments:\n%s", c.schema, sql)
		}
		for _, line := range strings.Split(string(header), "\n") {
			if !strings.HasPrefix(line, "--") {
				t.Fatalf("%s: header line %q is not a comment", c.schema, line)
			}
		}
		if want := strings.Join(c.want, "\n"); string(ddl) != want {
			t.Errorf("%s: after its header, the SQL file is not the runtime's DDL:\n%s", c.schema, ddl)
		}
	}
}
