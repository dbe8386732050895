package generator

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"

	"text/template"

	"github.com/eventgen/eventgen/templates"
)

var docFuncs = template.FuncMap{
	"dur": formatDuration,
	"fieldNames": func(fs []*Field) string {
		if len(fs) == 0 {
			return "none"
		}
		names := make([]string, len(fs))
		for i, f := range fs {
			names[i] = "`" + f.Name + "`"
		}
		return strings.Join(names, ", ")
	},
	// cell makes free text safe inside a Markdown table cell.
	"cell": func(s string) string {
		s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
		return strings.ReplaceAll(s, "|", `\|`)
	},
}

var docsTemplate = template.Must(templates.Parse("events.md.tmpl", docFuncs))

func renderDocs(s *Schema, t target) ([]byte, error) {
	header, source, err := t.headerLines()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = docsTemplate.Execute(&buf, struct {
		Schema             *Schema
		Header, SourceLine string
		// Diagram is the catalog as Mermaid, for a ```mermaid block.
		Diagram string
	}{s, header, source, catalog(s).Mermaid()})
	if err != nil {
		return nil, fmt.Errorf("docs template: %w", err)
	}
	// Blank lines vary with the template's branches: keep at most one in a
	// row, and end with a single newline.
	out := blankLines.ReplaceAll(bytes.TrimRight(buf.Bytes(), "\n"), []byte("\n\n"))
	return append(out, '\n'), nil
}

var blankLines = regexp.MustCompile(`\n{3,}`)

// formatDuration prints a duration the way schemas write it: 336h, not 336h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	for _, zero := range []string{"0s", "0m"} {
		if len(s) > len(zero) && strings.HasSuffix(s, zero) && !strings.HasSuffix(s, "."+zero) {
			trimmed := strings.TrimSuffix(s, zero)
			if last := trimmed[len(trimmed)-1]; last >= 'a' && last <= 'z' {
				s = trimmed
			}
		}
	}
	return s
}
