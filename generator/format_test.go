package generator

import (
	"bytes"
	"go/format"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSchemas are the examples, the valid golden cases and a schema large
// enough to have several parts.
func testSchemas(t *testing.T) []*Schema {
	inputs := exampleInputs(t)
	golden, _ := filepath.Glob("../testdata/golden/*/schema.yaml")
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, Input{Path: p, Data: b})
	}
	inputs = append(inputs, Input{Path: "big.yaml", Data: bigSchema(eventsPerPart*2 + 10)})
	schemas, _ := Check(inputs) // invalid cases give no schema
	return schemas
}

var goFiles = map[string]func(*Schema) []goPart{"types.go": emitTypes, "kafka.go": emitKafka}

// TestPartsRenderLikeOneFile checks the premise of renderParts: parts
// rendered apart and joined print what one jennifer file would.
func TestPartsRenderLikeOneFile(t *testing.T) {
	for _, s := range testSchemas(t) {
		for name, parts := range goFiles {
			tg := target{name: name, source: s.Path}
			f, err := newGoFile(s, tg)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range parts(s) {
				part(f)
			}
			var buf bytes.Buffer
			if err := f.Render(&buf); err != nil {
				t.Fatal(err)
			}
			want := groupImports(buf.Bytes())
			got, err := renderParts(s, tg, parts(s))
			if err != nil {
				t.Fatalf("%s %s: %v", s.Path, name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s: parts render differently from one file", s.Path, name)
			}
		}
	}
}

// TestFormatPiecesMatchWholeFile checks the premise of formatGo: formatting
// a generated file piece by piece, cut at every top-level gap, gives the
// bytes formatting it whole does.
func TestFormatPiecesMatchWholeFile(t *testing.T) {
	for _, s := range testSchemas(t) {
		for name, parts := range goFiles {
			src, err := renderParts(s, target{name: name, source: s.Path}, parts(s))
			if err != nil {
				t.Fatal(err)
			}
			want, err := format.Source(src)
			if err != nil {
				t.Fatal(err)
			}
			pieces := cutTopLevel(src, len(src)) // as many pieces as there are gaps
			if len(pieces) < 3 {
				t.Fatalf("%s %s: only %d pieces", s.Path, name, len(pieces))
			}
			got, err := formatPieces(pieces)
			if err != nil {
				t.Fatalf("%s %s: %v", s.Path, name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s: formatting in pieces differs from formatting the whole file", s.Path, name)
			}
		}
	}
}

func TestCutTopLevelKeepsEveryByte(t *testing.T) {
	src := []byte("package p\n\n\nvar a = 1\n\n\n\nvar b = 2\n\n\n// F is.\nfunc f() {\n}\n\n\ntype I interface {\n// M is.\nM()\n\n\nN()\n}\n")
	pieces := cutTopLevel(src, len(src))
	if len(pieces) != 5 {
		t.Fatalf("%d pieces: %q", len(pieces), pieces)
	}
	if got := string(bytes.Join(pieces, []byte("\n\n"))); got != strings.Replace(string(src), "\n\n\n\n", "\n\n\n", 1) {
		t.Errorf("rejoined: %q", got)
	}
}

// groupImports is how the generator grouped imports before parts: it
// puts standard-library imports before the others, separated by a blank
// line, as goimports does, in the output of one jennifer file.
func groupImports(src []byte) []byte {
	start := bytes.Index(src, []byte("\nimport (\n"))
	if start < 0 {
		return src
	}
	body := start + len("\nimport (\n")
	end := bytes.Index(src[body:], []byte("\n)\n"))
	if end < 0 {
		return src
	}
	var std, other []string
	for _, line := range strings.Split(string(src[body:body+end]), "\n") {
		path := strings.Trim(strings.TrimSpace(line), `"`)
		if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
			other = append(other, line)
		} else {
			std = append(std, line)
		}
	}
	if len(std) == 0 || len(other) == 0 {
		return src
	}
	grouped := strings.Join(std, "\n") + "\n\n" + strings.Join(other, "\n")
	out := append([]byte(nil), src[:body]...)
	out = append(out, grouped...)
	return append(out, src[body+end:]...)
}
