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
	// fieldCell names a field in a table: its schema name, and its JSON
	// key when `json` gives another, since that is what records carry.
	"fieldCell": func(f *Field) string {
		s := mdCode(f.Name)
		if f.Wire != f.Name {
			s += " (JSON key " + mdCode(f.Wire) + ")"
		}
		return s
	},
	// cell makes free text safe inside a Markdown table cell.
	"cell": func(s string) string {
		s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
		return strings.ReplaceAll(s, "|", `\|`)
	},
}

// mdCode is s as a Markdown code span inside a table cell: fenced with
// more backticks than s has in a row (padded with a space if s starts or
// ends with one), and | escaped, which tables split cells on even in code.
func mdCode(s string) string {
	run, longest := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + strings.ReplaceAll(s, "|", `\|`) + fence
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
