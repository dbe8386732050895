package generator

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/dave/jennifer/jen"
)

// A goPart adds top-level declarations to a jennifer file. A Go file is
// made of parts that render in parallel, each in a jennifer file of its
// own, and are then joined into the source one jennifer file holding every
// part in order would print: its header and package clause, the imports
// of all parts, and the parts' declarations. Jennifer starts each of them
// with a newline, so the bodies join as they are.
type goPart func(*jen.File)

// renderParts prints the parts of a Go file, unformatted.
func renderParts(s *Schema, t target, parts []goPart) ([]byte, error) {
	rendered := make([][]byte, len(parts))
	errs := make([]error, len(parts))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, part := range parts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rendered[i], errs[i] = renderPart(s, t, part)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	src, err := joinParts(rendered)
	if err != nil {
		return nil, fmt.Errorf("joining the parts of %s: %w", t.name, err)
	}
	return src, nil
}

func renderPart(s *Schema, t target, part goPart) (out []byte, err error) {
	defer func() {
		// renderParts runs parts on their own goroutines, where runEmitter's
		// recover cannot see a panic.
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error while generating code (please report it with the schema): %v", p)
		}
	}()
	f, err := newGoFile(s, t)
	if err != nil {
		return nil, err
	}
	part(f)
	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return nil, fmt.Errorf("generated code does not parse: %w", err)
	}
	return buf.Bytes(), nil
}

// renderedPart is one part as jennifer printed it.
type renderedPart struct {
	head    []byte   // header comments and package clause
	imports []string // import lines, e.g. `"time"`
	body    []byte   // the declarations
}

// joinParts joins rendered parts into one file's source. The head is the
// same in every part; import lines are merged, must agree on each
// package's name, and are grouped as goimports does (see writeImports).
func joinParts(rendered [][]byte) ([]byte, error) {
	byPath := map[string]string{}
	var head []byte
	var body bytes.Buffer
	for i, r := range rendered {
		p, err := splitPart(r)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			head = p.head
		} else if !bytes.Equal(p.head, head) {
			return nil, errors.New("parts differ in their header")
		}
		for _, line := range p.imports {
			path := strings.Trim(importPath(line), `"`)
			if prev, ok := byPath[path]; ok && prev != line {
				return nil, fmt.Errorf("parts import %s as %s and %s", path, prev, line)
			}
			byPath[path] = line
		}
		body.Write(p.body)
	}
	out := bytes.NewBuffer(make([]byte, 0, len(head)+body.Len()+512))
	out.Write(head)
	writeImports(out, byPath)
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

// splitPart cuts jennifer's output into head, imports and body: the
// package clause and the import block each end with a blank line.
func splitPart(src []byte) (renderedPart, error) {
	i := 0
	if !bytes.HasPrefix(src, []byte("package ")) {
		i = bytes.Index(src, []byte("\n\npackage "))
		if i < 0 {
			return renderedPart{}, errors.New("no package clause")
		}
		i += 2
	}
	end := bytes.Index(src[i:], []byte("\n\n"))
	if end < 0 {
		return renderedPart{}, errors.New("no end of the package clause")
	}
	p := renderedPart{head: src[:i+end+2]}
	rest := src[i+end+2:]
	switch {
	case bytes.HasPrefix(rest, []byte("import (\n")):
		block, after, ok := bytes.Cut(rest[len("import (\n"):], []byte("\n)\n\n"))
		if !ok {
			return renderedPart{}, errors.New("no end of the import block")
		}
		p.imports = strings.Split(string(block), "\n")
		p.body = after
	case bytes.HasPrefix(rest, []byte("import ")):
		line, after, ok := bytes.Cut(rest[len("import "):], []byte("\n\n"))
		if !ok {
			return renderedPart{}, errors.New("no end of the import")
		}
		p.imports = []string{string(line)}
		p.body = after
	default:
		p.body = rest
	}
	return p, nil
}

// importPath is the quoted path of an import line: `"time"` or `x "a/b"`.
func importPath(line string) string {
	if i := strings.IndexByte(line, '"'); i >= 0 {
		return line[i:]
	}
	return line
}

// writeImports writes the import declaration as jennifer does, but with
// standard-library imports first and the others after a blank line, as
// goimports groups them (jennifer sorts them into one group).
func writeImports(w *bytes.Buffer, byPath map[string]string) {
	var std, other []string
	for p := range byPath {
		if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") {
			other = append(other, p)
		} else {
			std = append(std, p)
		}
	}
	slices.Sort(std)
	slices.Sort(other)
	switch {
	case len(byPath) == 0:
	case len(byPath) == 1:
		w.WriteString("import " + byPath[slices.Concat(std, other)[0]] + "\n\n")
	default:
		w.WriteString("import (\n")
		for i, paths := range [][]string{std, other} {
			if i == 1 && len(std) > 0 && len(other) > 0 {
				w.WriteString("\n")
			}
			for _, p := range paths {
				w.WriteString(byPath[p] + "\n")
			}
		}
		w.WriteString(")\n\n")
	}
}
