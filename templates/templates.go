// Package templates holds the text templates eventgen renders besides Go
// code (Go code is built with jennifer): Markdown documentation now, SQL
// for the outbox and dedup tables later. They are embedded so the binary
// is self-contained.
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
