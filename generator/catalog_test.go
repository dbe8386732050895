package generator

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var mermaidBlock = regexp.MustCompile("(?ms)^```mermaid\n(.*?)^```$")

// TestMermaidParses runs mermaid's parser (tools/mermaid) over every
// Mermaid block of the committed generated Markdown: the goldens, which
// TestGolden keeps equal to what the generator writes, and the examples,
// which `eventgen diff` keeps current; and over those quoted in docs/.
func TestMermaidParses(t *testing.T) {
	t.Parallel() // node mostly waits on module loading: overlap it
	var files []string
	for _, pattern := range []string{
		filepath.Join(goldenDir, "*", "*.gen.md"),
		filepath.Join("..", "schemas", "examples", "*", "*.gen.md"),
		filepath.Join("..", "docs", "*.md"), // diagrams quoted in the manual
	} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	var docs []namedText
	for _, f := range files {
		if args, err := os.ReadFile(filepath.Join(filepath.Dir(f), "args.txt")); err == nil && strings.HasPrefix(string(args), "diff") {
			continue // a diff case's files are stale on purpose
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := mermaidBlock.FindAllStringSubmatch(string(b), -1)
		if len(blocks) == 0 && strings.HasSuffix(f, ".gen.md") {
			t.Errorf("%s has no mermaid block", f)
		}
		for i, m := range blocks {
			docs = append(docs, namedText{Name: filepath.ToSlash(f) + "#" + strconv.Itoa(i+1), Text: m[1]})
		}
	}
	// Labels that would break out of their quotes unescaped.
	hostile := &Catalog{
		Nodes: []CatalogNode{
			{ID: "a", Lines: []string{`x" --> b["y`, "#quot; <b>&amp;</b> `code`"}, Shape: ShapeTopic},
			{ID: "b", Lines: []string{"end", "|pipe|"}, Shape: ShapePipeline},
		},
		Edges: []CatalogEdge{{From: "a", To: "b", Lines: []string{`"|x`, "[a]{b}(c)"}, Dashed: true}},
	}
	docs = append(docs, namedText{Name: "hostile labels", Text: hostile.Mermaid()})
	runNodeCheck(t, "mermaid", "mermaid", docs)
}

// TestCatalogDocQuotesTheShop keeps the diagram docs/catalog.md explains
// equal to the one generated for the shop example.
func TestCatalogDocQuotesTheShop(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "catalog.md"))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := os.ReadFile(filepath.Join("..", "schemas", "examples", "shop", "shop_events.gen.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := mermaidBlock.FindStringSubmatch(string(gen))
	got := mermaidBlock.FindStringSubmatch(string(doc))
	if want == nil || got == nil || got[1] != want[1] {
		t.Errorf("docs/catalog.md's first mermaid block is not shop_events.gen.md's; copy it over:\n%v", want)
	}
}

func TestMermaidLabel(t *testing.T) {
	got := mermaidLabel([]string{`a"b#c<d>` + "`e`", "two\nlines"})
	want := "a#quot;b#35;c#lt;d#gt;#96;e#96;<br/>two lines"
	if got != want {
		t.Errorf("mermaidLabel = %q, want %q", got, want)
	}
}
