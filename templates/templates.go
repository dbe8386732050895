// Package templates holds the text templates eventgen renders besides Go
// code (Go code is built with jennifer): the Markdown documentation and
// the SQL of eventgen's PostgreSQL tables, the dedup and offsets tables
// (RenderSQL, which the generator and runtime/dedup/pgdedup's Migrate both
// call) and the outbox table (OutboxDDL: the generator and
// runtime/outbox's Migrate). Every SQL name from configuration is checked
// by CheckName and quoted by QuoteIdent, here and nowhere else. The
// templates are embedded so the binary is self-contained. The package
// imports the standard library only.
package templates

import (
	"embed"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// Parse parses the named template with funcs available to it.
func Parse(name string, funcs template.FuncMap) (*template.Template, error) {
	return template.New(name).Funcs(funcs).ParseFS(files, name)
}
