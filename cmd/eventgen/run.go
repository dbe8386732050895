package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/eventgen/eventgen/generator"
	"github.com/eventgen/eventgen/runtime/event"
)

const (
	exitOK    = 0
	exitFail  = 1 // schema errors, stale output, I/O errors
	exitUsage = 2
)

const usage = `usage:
  eventgen generate [-out DIR] schema.yaml...   write generated files (only those whose bytes changed)
  eventgen check schema.yaml...                 validate and lint without writing
  eventgen diff [-out DIR] schema.yaml...       exit 1 and print a unified diff when generated code is stale
  eventgen breaking --against REF [--mode backward|forward|full] schema.yaml...
                                                exit 1 on changes that break consumers; REF is a file, a directory or a git revision
  eventgen jsonschema                           print the JSON Schema of the schema language (for editors)
  eventgen asyncapi [-out FILE] schema.yaml     print (or write to FILE) the schema's AsyncAPI 3.0.0 document, as YAML
  eventgen relay --postgres URL --brokers HOST:PORT[,...]
                                                publish the transactional outbox to Kafka (see eventgen relay -h)
  eventgen relay retry|quarantined --postgres URL ...
                                                release or list quarantined outbox rows
  eventgen version                              print the version

flags of generate, check, diff and breaking:
  -format text|json|github   diagnostics as text on stderr (default), one JSON
                             document on stdout, or GitHub Actions annotations on stdout
  -strict                    treat warnings as errors (exit 1, nothing written)
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "generate", "diff", "check":
		return runSchemas(cmd, args, stdout, stderr)
	case "breaking":
		return runBreaking(args, stdout, stderr)
	case "jsonschema":
		return runJSONSchema(args, stdout, stderr)
	case "asyncapi":
		return runAsyncAPI(args, stdout, stderr)
	case "relay":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runRelay(ctx, args, stdout, stderr, isTerminal(stderr))
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "eventgen %s (generated code version %d)\n", version(), event.GenVersion)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "eventgen: unknown command %q\n%s", cmd, usage)
	return exitUsage
}

// runJSONSchema prints the JSON Schema that editors validate schemas with
// (docs/schema.md, Editor support).
func runJSONSchema(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "eventgen jsonschema: takes no arguments\n%s", usage)
		return exitUsage
	}
	if _, err := stdout.Write(generator.JSONSchema()); err != nil {
		fmt.Fprintf(stderr, "eventgen: %v\n", err)
		return exitFail
	}
	return exitOK
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func runSchemas(cmd string, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("eventgen "+cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	out := ""
	if cmd != "check" {
		fl.StringVar(&out, "out", "", "directory for generated files (default: next to each schema)")
	}
	format, strict := reportFlags(fl, "treat warnings as errors")
	if code, ok := parseFlags(fl, args, format, stderr); !ok {
		return code
	}
	if fl.NArg() == 0 {
		fmt.Fprintf(stderr, "eventgen %s: no schema files given\n%s", cmd, usage)
		return exitUsage
	}
	var inputs []generator.Input
	for _, p := range fl.Args() {
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(stderr, "eventgen: %v\n", err)
			return exitFail
		}
		inputs = append(inputs, generator.Input{Path: filepath.Clean(p), Data: data})
	}
	lint := func(ds generator.Diagnostics) generator.Diagnostics {
		if *strict {
			return ds.Strict()
		}
		return ds
	}
	report := func(r generator.Report) int {
		if err := r.Print(stdout, stderr, *format); err != nil {
			fmt.Fprintf(stderr, "eventgen: %v\n", err)
			return exitFail
		}
		if r.Failed() {
			return exitFail
		}
		return exitOK
	}
	if cmd == "check" {
		_, diags := generator.Check(inputs)
		diags = lint(diags)
		return report(generator.Report{Diagnostics: diags})
	}
	files, diags := generator.Generate(inputs, generator.Options{OutDir: out})
	// With --strict a warning stops generate too: nothing is written.
	if diags = lint(diags); diags.HasErrors() {
		return report(generator.Report{Diagnostics: diags})
	}
	plan, err := planWrites(inputs, files, out)
	if err != nil {
		report(generator.Report{Diagnostics: diags})
		fmt.Fprintf(stderr, "eventgen: %v\n", err)
		return exitFail
	}
	if cmd == "diff" {
		// Non-nil: the comparison ran, and the json format says so.
		stale := []generator.StaleFile{}
		for _, c := range plan {
			stale = append(stale, generator.StaleFile{Path: c.path, Diff: unifiedDiff(c.path, c.old, c.new)})
		}
		return report(generator.Report{Diagnostics: diags, Stale: stale})
	}
	if code := report(generator.Report{Diagnostics: diags}); code != exitOK {
		return code
	}
	for _, c := range plan {
		if err := c.apply(); err != nil {
			fmt.Fprintf(stderr, "eventgen: %v\n", err)
			return exitFail
		}
	}
	return exitOK
}

// reportFlags adds the flags of every command that reports diagnostics:
// -format and -strict (strictDoc says what -strict does for the command).
func reportFlags(fl *flag.FlagSet, strictDoc string) (format *string, strict *bool) {
	format = fl.String("format", generator.Formats[0], "output format: "+generator.FormatNames())
	strict = fl.Bool("strict", false, strictDoc)
	return format, strict
}

// parseFlags parses args into fl and checks the -format value (read after
// parsing, hence the pointer). It returns false, with the exit status, when
// the command must stop: -help, or a usage error already printed.
func parseFlags(fl *flag.FlagSet, args []string, format *string, stderr io.Writer) (int, bool) {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if !slices.Contains(generator.Formats, *format) {
		fmt.Fprintf(stderr, "%s: unknown format %q: want %s\n%s", fl.Name(), *format, generator.FormatNames(), usage)
		return exitUsage, false
	}
	return exitOK, true
}

// change is one file to write or delete; new is nil for a deletion.
type change struct {
	path     string
	old, new []byte
}

func (c change) apply() error {
	if c.new == nil {
		return os.Remove(c.path)
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return err
	}
	// Write to a temporary file and rename, so an interrupted run never
	// leaves a half-written file behind.
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".eventgen-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(c.new); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), c.path)
}

// planWrites compares generated files with the disk: files whose bytes
// differ are written, and earlier output of the same schemas that is no
// longer generated is deleted (only files that carry eventgen's header and
// name the same source).
func planWrites(inputs []generator.Input, files []generator.File, out string) ([]change, error) {
	var plan []change
	produced := map[string]bool{}
	for _, f := range files {
		produced[filepath.Clean(f.Path)] = true
		old, err := os.ReadFile(f.Path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err == nil && bytes.Equal(old, f.Data) {
			continue
		}
		plan = append(plan, change{path: f.Path, old: old, new: f.Data})
	}
	for _, in := range inputs {
		dir := out
		if dir == "" {
			dir = filepath.Dir(in.Path)
		}
		candidates, err := filepath.Glob(filepath.Join(dir, generator.OutputPrefix(in.Path)+"*.gen.*"))
		if err != nil {
			return nil, err
		}
		slices.Sort(candidates)
		for _, p := range candidates {
			if produced[filepath.Clean(p)] {
				continue
			}
			old, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if generator.IsGenerated(filepath.Base(p), old) {
				plan = append(plan, change{path: p, old: old})
			}
		}
	}
	return plan, nil
}
