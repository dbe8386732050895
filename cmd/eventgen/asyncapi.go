package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/eventgen/eventgen/generator"
)

// runAsyncAPI is `eventgen asyncapi [-out FILE] schema.yaml`: the schema's
// AsyncAPI 3.0.0 document, as YAML, on stdout or in FILE (written only when
// its bytes changed, like generate).
func runAsyncAPI(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("eventgen asyncapi", flag.ContinueOnError)
	fl.SetOutput(stderr)
	out := fl.String("out", "", "file to write the document to (default: stdout)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fl.NArg() != 1 {
		fmt.Fprintf(stderr, "eventgen asyncapi: want one schema file, got %d\n%s", fl.NArg(), usage)
		return exitUsage
	}
	p := filepath.Clean(fl.Arg(0))
	data, err := os.ReadFile(p)
	if err != nil {
		fmt.Fprintf(stderr, "eventgen: %v\n", err)
		return exitFail
	}
	schemas, diags := generator.Check([]generator.Input{{Path: p, Data: data}})
	fmt.Fprint(stderr, diags.String())
	if diags.HasErrors() || len(schemas) != 1 {
		return exitFail
	}
	doc, err := generator.AsyncAPI(schemas[0], generator.AsyncAPISource(*out, p))
	if err != nil {
		fmt.Fprintf(stderr, "eventgen: %s: %v\n", p, err)
		return exitFail
	}
	if *out == "" {
		if _, err := stdout.Write(doc); err != nil {
			fmt.Fprintf(stderr, "eventgen: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	old, err := os.ReadFile(*out)
	if err == nil && string(old) == string(doc) {
		return exitOK
	}
	if err := (change{path: *out, old: old, new: doc}).apply(); err != nil {
		fmt.Fprintf(stderr, "eventgen: %v\n", err)
		return exitFail
	}
	return exitOK
}
