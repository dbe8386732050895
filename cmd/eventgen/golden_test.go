package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected files in testdata/golden")

const goldenDir = "../../testdata/golden"

// Files of a golden case that are neither input nor generated output.
const (
	argsFile   = "args.txt"   // the command line, when not the default one
	stdoutFile = "stdout.txt" // what eventgen printed on stdout
	stderrFile = "stderr.txt" // what eventgen printed on stderr
)

// TestGolden runs eventgen, through the CLI's entry point, in a copy of
// every case folder testdata/golden/<case>/, with schema.yaml as input:
//
//   - valid cases run `generate schema.yaml`; the generated files are the
//     expected output, and a `diff` afterwards must find nothing stale;
//   - invalid_* cases run `check schema.yaml`; stderr.txt is the expected
//     output, and `generate` must write nothing;
//   - a case with args.txt runs the command line it holds; for `diff`,
//     every other file of the case is the committed state it compares;
//     for `breaking` (breaking_* and compatible_* cases), old.yaml is
//     the schema before the change, named by `--against old.yaml`.
//     The exit status expected follows from the output in the case's
//     -format: errors or stale files mean 1.
//
// stdout.txt and stderr.txt hold what eventgen printed, when it printed
// anything. `go test ./cmd/eventgen -update` rewrites the expected files.
func TestGolden(t *testing.T) {
	root, err := filepath.Abs(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := filepath.Glob(filepath.Join(root, "*", "schema.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases found")
	}
	for _, schemaPath := range cases {
		dir := filepath.Dir(schemaPath)
		// Not parallel: each case runs eventgen inside its own folder, so
		// that diagnostics name schema.yaml as a user there would see it.
		t.Run(filepath.Base(dir), func(t *testing.T) { runGoldenCase(t, dir) })
	}
}

type goldenCase struct {
	dir  string
	args []string
}

func (c goldenCase) command() string { return c.args[0] }

// readGoldenCase reads the case's command: args.txt's first line, or the
// default for the case's kind.
func readGoldenCase(t *testing.T, dir string) goldenCase {
	c := goldenCase{dir: dir, args: []string{"generate", "schema.yaml"}}
	if strings.HasPrefix(filepath.Base(dir), "invalid_") {
		c.args = []string{"check", "schema.yaml"}
	}
	b, err := os.ReadFile(filepath.Join(dir, argsFile))
	switch {
	case err == nil:
		line, _, _ := strings.Cut(string(b), "\n")
		if c.args = strings.Fields(line); len(c.args) == 0 {
			t.Fatalf("%s is empty", argsFile)
		}
	case !os.IsNotExist(err):
		t.Fatal(err)
	}
	return c
}

// isOutput reports whether a file of the case folder is expected output
// rather than input.
func (c goldenCase) isOutput(name string) bool {
	switch {
	case name == "schema.yaml" || name == argsFile:
		return false
	case name == stdoutFile || name == stderrFile:
		return true
	}
	// diff compares the committed files and breaking the old schema with
	// the new; generate and check produce them.
	return c.command() != "diff" && c.command() != "breaking"
}

func runGoldenCase(t *testing.T, dir string) {
	c := readGoldenCase(t, dir)
	inputs, want := map[string][]byte{}, map[string][]byte{}
	for name, data := range readCaseFiles(t, dir) {
		if c.isOutput(name) {
			want[name] = data
		} else if name != argsFile {
			inputs[name] = data
		}
	}
	work := t.TempDir()
	writeFiles(t, work, inputs)
	t.Chdir(work)

	code, stdout, stderr := runCLI(t, c.args...)
	got := readCaseFiles(t, work)
	for name, data := range inputs {
		if bytes.Equal(got[name], data) {
			delete(got, name) // an input left as it was is no output
		}
	}
	if stdout != "" {
		got[stdoutFile] = []byte(stdout)
	}
	if stderr != "" {
		got[stderrFile] = []byte(stderr)
	}
	if *update {
		updateCase(t, dir, want, got)
		return
	}
	if wantCode := expectedExit(t, c, want); code != wantCode {
		t.Errorf("eventgen %s: exit %d, want %d", strings.Join(c.args, " "), code, wantCode)
	}
	compareFiles(t, want, got)
	checkFollowUp(t, c, code, stdout, stderr, inputs)
}

// expectedExit is the exit status the expected output implies: 1 for
// schema errors and for stale files reported by diff, in the case's format.
func expectedExit(t *testing.T, c goldenCase, want map[string][]byte) int {
	failed := false
	switch c.flag("format") {
	case "", "text":
		// Other commands than diff, such as asyncapi, print their result on stdout.
		failed = bytes.Contains(want[stderrFile], []byte(": error: ")) || (c.command() == "diff" && len(want[stdoutFile]) > 0)
	case "json":
		var doc struct {
			Diagnostics []struct{ Severity string }
			Stale       []json.RawMessage
		}
		if err := json.Unmarshal(want[stdoutFile], &doc); err != nil {
			t.Fatalf("%s is not JSON: %v", stdoutFile, err)
		}
		failed = len(doc.Stale) > 0 || slices.ContainsFunc(doc.Diagnostics, func(d struct{ Severity string }) bool { return d.Severity == "error" })
	case "github":
		failed = bytes.HasPrefix(want[stdoutFile], []byte("::error ")) || bytes.Contains(want[stdoutFile], []byte("\n::error "))
	default:
		t.Fatalf("%s: unknown format %q", argsFile, c.flag("format"))
	}
	if failed {
		return exitFail
	}
	return exitOK
}

// flag returns the value of the flag -name (or --name, -name=value) in the
// case's command line, "" if it is not there.
func (c goldenCase) flag(name string) string {
	for i, a := range c.args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(c.args) {
			return c.args[i+1]
		}
	}
	return ""
}

// checkFollowUp runs the command that must agree with the case's: after
// generate, diff finds nothing stale; after a failed check, generate with
// the same flags fails the same way and writes nothing.
func checkFollowUp(t *testing.T, c goldenCase, code int, stdout, stderr string, inputs map[string][]byte) {
	switch {
	case c.command() == "generate" && code == exitOK:
		if code, stdout, stderr := runCLI(t, "diff", "schema.yaml"); code != exitOK || stdout != "" {
			t.Errorf("diff after generate: exit %d\n%s%s", code, stdout, stderr)
		}
	case c.command() == "check" && code != exitOK:
		args := append([]string{"generate"}, c.args[1:]...)
		gcode, gstdout, gstderr := runCLI(t, args...)
		if gcode != code || gstderr != stderr || gstdout != stdout {
			t.Errorf("generate after check: exit %d, want %d; stderr (-check +generate):\n%sstdout (-check +generate):\n%s", gcode, code,
				unifiedDiff(stderrFile, []byte(stderr), []byte(gstderr)), unifiedDiff(stdoutFile, []byte(stdout), []byte(gstdout)))
		}
		if files := readCaseFiles(t, "."); len(files) != len(inputs) {
			t.Errorf("generate wrote files despite errors: %d files, want %d", len(files), len(inputs))
		}
	}
}

func compareFiles(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	var names []string
	for name := range want {
		names = append(names, name)
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		w, inWant := want[name]
		g, inGot := got[name]
		switch {
		case !inGot:
			t.Errorf("%s: expected but not produced (go test ./cmd/eventgen -update rewrites the goldens)", name)
		case !inWant:
			t.Errorf("%s: produced but not in the golden folder (go test ./cmd/eventgen -update rewrites the goldens):\n%s", name, g)
		case !bytes.Equal(w, g):
			t.Errorf("%s differs from the golden file (-want +got):\n%s", name, unifiedDiff(name, w, g))
		}
	}
}

// updateCase makes the case folder's expected files what eventgen produced.
func updateCase(t *testing.T, dir string, want, got map[string][]byte) {
	for name := range want {
		if _, ok := got[name]; !ok {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFiles(t, dir, got)
}

// readCaseFiles reads the files of a case folder, leaving out hand-written
// tests of the generated code, which live beside it.
func readCaseFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
