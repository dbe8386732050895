package generator

import (
	"bytes"
	"errors"
	"go/format"
	"runtime"
	"sync"
)

// go/format is most of the generator's time on a large schema (a
// 1,000-event schema makes 100,000 lines of Go), and top-level
// declarations format independently of each other. So formatGo cuts a
// file between top-level declarations and formats the pieces in parallel.
//
// Jennifer separates top-level declarations with two blank lines, and
// gofmt prints any run of blank lines between them as one: joining the
// formatted pieces with one blank line gives the bytes formatting the whole
// file would. A blank-line run inside a declaration would cut it in two
// pieces that do not parse; the whole file is then formatted in one go.

// minPiece is the smallest piece worth a goroutine, in bytes of source.
const minPiece = 256 << 10

// topLevelGap separates jennifer's top-level declarations.
var topLevelGap = []byte("\n\n\n")

// formatGo formats a Go file, like go/format.Source.
func formatGo(src []byte) ([]byte, error) {
	pieces := cutTopLevel(src, max(len(src)/minPiece, 1))
	if len(pieces) == 1 {
		return format.Source(src)
	}
	out, err := formatPieces(pieces)
	if err != nil {
		return format.Source(src)
	}
	return out, nil
}

// cutTopLevel cuts src into about n pieces, each ending with a newline,
// at gaps before top-level declarations; the first piece holds the
// package clause and imports.
func cutTopLevel(src []byte, n int) [][]byte {
	size := max(len(src)/n, 1)
	var pieces [][]byte
	for from := size; from < len(src); {
		i := bytes.Index(src[from:], topLevelGap)
		if i < 0 {
			break
		}
		end := from + i + 1 // keep the declaration's newline
		next := bytes.TrimLeft(src[end:], "\n")
		if !startsDecl(next) {
			from = end + 1 // a gap inside a declaration, e.g. between interface methods
			continue
		}
		pieces = append(pieces, src[:end])
		src = next
		from = size
	}
	return append(pieces, src)
}

// startsDecl reports whether src starts with a top-level declaration,
// after its doc comment. Jennifer does not indent, so a method inside an
// interface also follows a gap, but no keyword starts it.
func startsDecl(src []byte) bool {
	for bytes.HasPrefix(src, []byte("//")) {
		_, rest, ok := bytes.Cut(src, []byte("\n"))
		if !ok {
			return false
		}
		src = rest
	}
	for _, kw := range []string{"func ", "type ", "var ", "const "} {
		if bytes.HasPrefix(src, []byte(kw)) {
			return true
		}
	}
	return false
}

// formatPieces formats the pieces in parallel and joins them with a blank line.
func formatPieces(pieces [][]byte) ([]byte, error) {
	outs := make([][]byte, len(pieces))
	errs := make([]error, len(pieces))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, p := range pieces {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if i == 0 {
				outs[i], errs[i] = format.Source(p)
			} else {
				outs[i], errs[i] = formatDecls(p)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return bytes.Join(outs, []byte("\n")), nil
}

// pieceClause makes a piece of declarations a file of its own, so that it
// formats exactly as it would inside the whole file.
const pieceClause = "package p\n\n"

func formatDecls(src []byte) ([]byte, error) {
	out, err := format.Source(append([]byte(pieceClause), src...))
	if err != nil {
		return nil, err
	}
	decls, ok := bytes.CutPrefix(out, []byte(pieceClause))
	if !ok {
		return nil, errors.New("a piece did not format as declarations")
	}
	return decls, nil
}
