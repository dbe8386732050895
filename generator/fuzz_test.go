package generator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzGenerate feeds arbitrary bytes through the whole pipeline. It must
// never panic; every diagnostic must have a position inside the file; and
// when a schema is valid, the output must be formatted Go.
func FuzzGenerate(f *testing.F) {
	seeds, _ := filepath.Glob("../testdata/golden/*/schema.yaml")
	examples, _ := filepath.Glob("../schemas/examples/*/*.yaml")
	for _, p := range append(seeds, examples...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("version: 1\npackage: p\nevents: {A: {topic: t, guarantee: at-most-once, fields: {a: string}}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, diags := Generate([]Input{{Path: "f.yaml", Data: data}}, Options{OutDir: "."})
		// An upper bound on the lines as YAML counts them: a lone \r, NEL,
		// LS and PS break lines too (CRLF is counted twice, which is fine).
		lines := 2
		for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += strings.Count(string(data), br)
		}
		for _, d := range diags {
			if d.Pos.File != "f.yaml" || d.Pos.Line < 1 || d.Pos.Line > lines || d.Pos.Col < 1 {
				t.Fatalf("diagnostic with a bad position: %v", d)
			}
			if d.Message == "" || d.Code == "" {
				t.Fatalf("diagnostic without message or code: %#v", d)
			}
		}
		if diags.HasErrors() && len(files) > 0 {
			t.Fatal("files generated despite errors")
		}
		for _, f := range files {
			if len(f.Data) == 0 {
				t.Fatalf("%s is empty", f.Path)
			}
		}
	})
}
