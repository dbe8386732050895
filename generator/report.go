package generator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Formats are the output formats Format accepts, the default first:
//
//   - text: `path:line:col: error: message [EG012]`, one diagnostic a line
//     (Diagnostic.String), for people;
//   - json: one JSON document, for programs (see Report.Print);
//   - github: GitHub Actions workflow commands, so that findings become
//     annotations on the lines of a pull request.
var Formats = []string{"text", "json", "github"}

// ErrUnknownFormat is returned by Format for a name not in Formats.
var ErrUnknownFormat = errors.New("unknown format")

// Format writes the diagnostics in the named format (one of Formats) to w.
// A command prints with Report.Print instead, which also chooses stdout or
// stderr as every eventgen command does:
//
//	err := generator.Report{Diagnostics: diags}.Print(stdout, stderr, format)
func (ds Diagnostics) Format(w io.Writer, format string) error {
	return Report{Diagnostics: ds}.Format(w, format)
}

// Strict returns the diagnostics with every warning made an error, for
// `--strict`: the message says that it was a warning, so that the reader
// knows why a rule documented as a warning fails the run.
func (ds Diagnostics) Strict() Diagnostics {
	out := make(Diagnostics, len(ds))
	for i, d := range ds {
		if d.Severity == Warning {
			d.Severity = Error
			d.Message += " (a warning; --strict makes it an error)"
		}
		out[i] = d
	}
	return out
}

// Report is what a command found: the diagnostics and, for a command that
// compares generated files with the disk (diff), the files that are stale.
type Report struct {
	Diagnostics Diagnostics
	// Stale is nil when no comparison ran (check, or schema errors), and
	// non-nil, possibly empty, when it did.
	Stale []StaleFile
}

// StaleFile is a generated file whose bytes differ from the disk.
type StaleFile struct {
	Path string
	// Diff is a unified diff from the file on disk to what generate would
	// write.
	Diff string
}

// staleMessage is what every format says of a stale file.
const staleMessage = "generated file is stale; run eventgen generate"

// Format writes the report in the named format (one of Formats) to w; see
// Print for what each format holds.
func (r Report) Format(w io.Writer, format string) error { return r.Print(w, w, format) }

// Print writes the report in the named format (one of Formats), to the
// streams eventgen uses: a program reads stdout, people read stderr.
//
// text prints Diagnostics.String() to stderr, then each stale file's diff to
// stdout, then a line counting them to stderr: eventgen's output since it
// has existed.
//
// json prints one document to stdout, indented, ending in a newline:
//
//	{"diagnostics": [{"file": "orders.yaml", "line": 9, "col": 33,
//	  "severity": "error", "code": "EG012", "message": "...",
//	  "related": [{"file": ..., "line": ..., "col": ..., "message": ...}]}],
//	 "stale": [{"file": "orders_events.gen.go", "diff": "--- ..."}]}
//
// "diagnostics" and "related" are always arrays, possibly empty; line and
// col are 0 when a diagnostic names a whole file; "stale" is there only when
// Stale is non-nil.
//
// github prints to stdout, where the Actions runner reads workflow
// commands, one command a diagnostic,
// `::error file=F,line=L,col=C,title=EG012::message` (::warning for a
// warning), with each related position on a line of the message
// (`F:L:C: note: message`); then, for each stale file,
// `::error file=F,title=eventgen diff::generated file is stale; run
// eventgen generate`, and the diffs, each in a collapsed ::group::. Values
// are escaped as GitHub's toolkit (@actions/core) escapes them.
func (r Report) Print(stdout, stderr io.Writer, format string) error {
	var err error
	switch format {
	case "text":
		err = r.text(stdout, stderr)
	case "json":
		err = r.json(stdout)
	case "github":
		err = r.github(stdout)
	default:
		return fmt.Errorf("%w %q: want %s", ErrUnknownFormat, format, FormatNames())
	}
	if err != nil {
		return fmt.Errorf("writing %s output: %w", format, err)
	}
	return nil
}

// Failed reports whether the run failed: an error, or a stale file.
func (r Report) Failed() bool { return r.Diagnostics.HasErrors() || len(r.Stale) > 0 }

// FormatNames lists Formats for messages: "text, json or github".
func FormatNames() string {
	return strings.Join(Formats[:len(Formats)-1], ", ") + " or " + Formats[len(Formats)-1]
}

func (r Report) text(stdout, stderr io.Writer) error {
	if _, err := io.WriteString(stderr, r.Diagnostics.String()); err != nil {
		return err
	}
	for _, s := range r.Stale {
		if _, err := io.WriteString(stdout, s.Diff); err != nil {
			return err
		}
	}
	if len(r.Stale) > 0 {
		if _, err := fmt.Fprintf(stderr, "eventgen: %d generated file(s) are stale; run eventgen generate\n", len(r.Stale)); err != nil {
			return err
		}
	}
	return nil
}

type jsonReport struct {
	Diagnostics []jsonDiagnostic `json:"diagnostics"`
	// A pointer, so that "no comparison" (nil) and "nothing stale" ([])
	// differ.
	Stale *[]jsonStale `json:"stale,omitempty"`
}

type jsonDiagnostic struct {
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Col      int           `json:"col"`
	Severity string        `json:"severity"`
	Code     Code          `json:"code"`
	Message  string        `json:"message"`
	Related  []jsonRelated `json:"related"`
}

type jsonRelated struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
}

type jsonStale struct {
	File string `json:"file"`
	Diff string `json:"diff"`
}

func (r Report) json(w io.Writer) error {
	doc := jsonReport{Diagnostics: []jsonDiagnostic{}}
	for _, d := range r.Diagnostics {
		jd := jsonDiagnostic{
			File: d.Pos.File, Line: d.Pos.Line, Col: d.Pos.Col,
			Severity: d.Severity.String(), Code: d.Code, Message: d.Message,
			Related: []jsonRelated{},
		}
		for _, rel := range d.Related {
			jd.Related = append(jd.Related, jsonRelated{File: rel.Pos.File, Line: rel.Pos.Line, Col: rel.Pos.Col, Message: rel.Message})
		}
		doc.Diagnostics = append(doc.Diagnostics, jd)
	}
	if r.Stale != nil {
		stale := []jsonStale{}
		for _, s := range r.Stale {
			stale = append(stale, jsonStale{File: s.Path, Diff: s.Diff})
		}
		doc.Stale = &stale
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Messages quote types such as map<string,T>: keep them readable.
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

func (r Report) github(w io.Writer) error {
	var b strings.Builder
	for _, d := range r.Diagnostics {
		cmd := "error"
		if d.Severity == Warning {
			cmd = "warning"
		}
		props := [][2]string{{"file", d.Pos.File}}
		if d.Pos.Line > 0 {
			props = append(props, [2]string{"line", strconv.Itoa(d.Pos.Line)}, [2]string{"col", strconv.Itoa(d.Pos.Col)})
		}
		props = append(props, [2]string{"title", string(d.Code)})
		msg := d.Message
		for _, rel := range d.Related {
			msg += fmt.Sprintf("\n%s: note: %s", rel.Pos, rel.Message)
		}
		b.WriteString(workflowCommand(cmd, props, msg))
	}
	for _, s := range r.Stale {
		b.WriteString(workflowCommand("error", [][2]string{{"file", s.Path}, {"title", "eventgen diff"}}, staleMessage))
	}
	for _, s := range r.Stale {
		// Diff lines start with ' ', '+', '-' or '@', never with "::", so
		// the runner cannot read them as commands.
		b.WriteString(workflowCommand("group", nil, "diff "+s.Path))
		b.WriteString(s.Diff)
		b.WriteString(workflowCommand("endgroup", nil, ""))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// workflowCommand formats a GitHub Actions workflow command line, as
// @actions/core's issueCommand does: `::name key=value,key=value::message`.
func workflowCommand(name string, props [][2]string, msg string) string {
	var b strings.Builder
	b.WriteString("::" + name)
	for i, p := range props {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(p[0] + "=" + escapeProperty(p[1]))
	}
	b.WriteString("::" + escapeData(msg) + "\n")
	return b.String()
}

// escapeData escapes a workflow command's message: the runner reads a
// command up to the end of the line and decodes %25, %0D and %0A.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty escapes a property value, where ':' would end the
// properties and ',' the value.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
