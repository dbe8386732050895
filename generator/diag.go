package generator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Severity tells whether a diagnostic stops generation.
type Severity int

const (
	// Error diagnostics stop generation: nothing is written.
	Error Severity = iota
	// Warning diagnostics are printed; generation goes on.
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Pos is a position in a schema file; Line and Col start at 1.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Diagnostic is one problem found in a schema.
type Diagnostic struct {
	Pos      Pos
	Severity Severity
	Code     Code
	Message  string
	// Related are other places the problem involves, such as where a
	// breaking change's old definition was.
	Related []Related
}

// Related is a second position of a diagnostic, with what is there.
type Related struct {
	Pos     Pos
	Message string
}

// String formats the diagnostic as `path:line:col: error: message [EG012]`,
// then each related position on an indented line of its own:
// `\tpath:line:col: note: message`.
func (d Diagnostic) String() string {
	s := fmt.Sprintf("%s: %s: %s [%s]", d.Pos, d.Severity, d.Message, d.Code)
	for _, r := range d.Related {
		s += fmt.Sprintf("\n\t%s: note: %s", r.Pos, r.Message)
	}
	return s
}

// Diagnostics is every problem found in one run, in file and position order.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	return slices.ContainsFunc(ds, func(d Diagnostic) bool { return d.Severity == Error })
}

// Sort orders diagnostics by file, line, column, then code, so that output is
// stable whatever order the checks ran in.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
			cmp.Compare(a.Code, b.Code),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// String formats every diagnostic on its own line.
func (ds Diagnostics) String() string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Error lets Diagnostics be returned as an error; it lists every line.
func (ds Diagnostics) Error() string { return strings.TrimSuffix(ds.String(), "\n") }

// reporter collects diagnostics for one file.
type reporter struct {
	file  string
	diags *Diagnostics
}

func (r reporter) errorf(line, col int, code Code, format string, args ...any) {
	r.add(Error, line, col, code, format, args...)
}

// warnf reports a warning. A warning about an event goes through
// compiler.warnf instead, which honours the event's ignore.
func (r reporter) warnf(line, col int, code Code, format string, args ...any) {
	r.add(Warning, line, col, code, format, args...)
}

func (r reporter) add(sev Severity, line, col int, code Code, format string, args ...any) {
	*r.diags = append(*r.diags, Diagnostic{
		Pos:      Pos{File: r.file, Line: line, Col: col},
		Severity: sev,
		Code:     code,
		Message:  fmt.Sprintf(format, args...),
	})
}
