package generator

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// sampleDiagnostics has an error with a related position and characters
// every format must escape, a warning, and a file-level error.
var sampleDiagnostics = Diagnostics{
	{
		Pos: Pos{File: "a,b:c.yaml", Line: 3, Col: 7}, Severity: Error, Code: "EB001",
		Message: "field \"total\" changed type: 100% <different>\r\nsee below",
		Related: []Related{{Pos: Pos{File: "old.yaml", Line: 2, Col: 5}, Message: "it was int64, here"}},
	},
	{Pos: Pos{File: "orders.yaml", Line: 9, Col: 33}, Severity: Warning, Code: CodeTTLBelowRetention, Message: "dedup.ttl 24h is shorter than retention 168h"},
	{Pos: Pos{File: "orders.yaml"}, Severity: Error, Code: "EG000", Message: "internal error"},
}

func render(t *testing.T, r Report, name string) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.Format(&b, name); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFormatText(t *testing.T) {
	got := render(t, Report{Diagnostics: sampleDiagnostics}, "text")
	if want := sampleDiagnostics.String(); got != want {
		t.Errorf("text differs from Diagnostics.String (-want +got):\n-%s\n+%s", want, got)
	}
	// Print splits text as eventgen always has: diffs on stdout, the rest
	// on stderr.
	var stdout, stderr bytes.Buffer
	r := Report{Diagnostics: sampleDiagnostics[1:2], Stale: []StaleFile{{Path: "a.gen.go", Diff: "--- a.gen.go\n+++ a.gen.go\n"}}}
	if err := r.Print(&stdout, &stderr, "text"); err != nil {
		t.Fatal(err)
	}
	if got, want := stdout.String(), "--- a.gen.go\n+++ a.gen.go\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := stderr.String(), sampleDiagnostics[1].String()+"\neventgen: 1 generated file(s) are stale; run eventgen generate\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if !r.Failed() || (Report{Diagnostics: sampleDiagnostics[1:2]}).Failed() {
		t.Error("Failed: a stale file fails a run, a warning does not")
	}
}

func TestFormatJSON(t *testing.T) {
	got := render(t, Report{Diagnostics: sampleDiagnostics}, "json")
	want := `{
  "diagnostics": [
    {
      "file": "a,b:c.yaml",
      "line": 3,
      "col": 7,
      "severity": "error",
      "code": "EB001",
      "message": "field \"total\" changed type: 100% <different>\r\nsee below",
      "related": [
        {
          "file": "old.yaml",
          "line": 2,
          "col": 5,
          "message": "it was int64, here"
        }
      ]
    },
    {
      "file": "orders.yaml",
      "line": 9,
      "col": 33,
      "severity": "warning",
      "code": "EG024",
      "message": "dedup.ttl 24h is shorter than retention 168h",
      "related": []
    },
    {
      "file": "orders.yaml",
      "line": 0,
      "col": 0,
      "severity": "error",
      "code": "EG000",
      "message": "internal error",
      "related": []
    }
  ]
}
`
	if got != want {
		t.Errorf("json:\n%s\nwant:\n%s", got, want)
	}
	// A program reads back what the diagnostics say, exactly.
	var doc struct {
		Diagnostics []struct {
			File, Severity, Code, Message string
			Line, Col                     int
			Related                       []struct {
				File, Message string
				Line, Col     int
			}
		}
		Stale *[]struct{ File, Diff string }
	}
	if err := json.Unmarshal([]byte(got), &doc); err != nil {
		t.Fatal(err)
	}
	if m := doc.Diagnostics[0].Message; m != sampleDiagnostics[0].Message {
		t.Errorf("message read back as %q", m)
	}
	if doc.Stale != nil {
		t.Error(`"stale" is present though no comparison ran`)
	}
}

func TestFormatJSONEmptyAndStale(t *testing.T) {
	if got, want := render(t, Report{}, "json"), "{\n  \"diagnostics\": []\n}\n"; got != want {
		t.Errorf("no diagnostics: got %q, want %q", got, want)
	}
	if got, want := render(t, Report{Stale: []StaleFile{}}, "json"), "{\n  \"diagnostics\": [],\n  \"stale\": []\n}\n"; got != want {
		t.Errorf("nothing stale: got %q, want %q", got, want)
	}
	got := render(t, Report{Stale: []StaleFile{{Path: "a_events.gen.go", Diff: "--- a\n+++ b\n"}}}, "json")
	if !strings.Contains(got, `"stale": [
    {
      "file": "a_events.gen.go",
      "diff": "--- a\n+++ b\n"
    }
  ]`) {
		t.Errorf("stale file missing:\n%s", got)
	}
}

func TestFormatGitHub(t *testing.T) {
	got := render(t, Report{Diagnostics: sampleDiagnostics}, "github")
	want := "" +
		// Properties escape ',' and ':' too; the message only %, \r and \n.
		"::error file=a%2Cb%3Ac.yaml,line=3,col=7,title=EB001::field \"total\" changed type: 100%25 <different>%0D%0Asee below%0Aold.yaml:2:5: note: it was int64, here\n" +
		"::warning file=orders.yaml,line=9,col=33,title=EG024::dedup.ttl 24h is shorter than retention 168h\n" +
		"::error file=orders.yaml,title=EG000::internal error\n"
	if got != want {
		t.Errorf("github:\n got %q\nwant %q", got, want)
	}
	got = render(t, Report{Stale: []StaleFile{{Path: "x/a_events.gen.md", Diff: "--- x/a_events.gen.md\n+++ x/a_events.gen.md\n"}}}, "github")
	want = "::error file=x/a_events.gen.md,title=eventgen diff::generated file is stale; run eventgen generate\n" +
		"::group::diff x/a_events.gen.md\n--- x/a_events.gen.md\n+++ x/a_events.gen.md\n::endgroup::\n"
	if got != want {
		t.Errorf("github, stale:\n got %q\nwant %q", got, want)
	}
}

func TestEscapeLikeActionsToolkit(t *testing.T) {
	// The cases of @actions/core's command tests (command.test.ts).
	if got, want := escapeData("percent % percent % cr \r cr \r lf \n lf \n"), "percent %25 percent %25 cr %0D cr %0D lf %0A lf %0A"; got != want {
		t.Errorf("escapeData = %q, want %q", got, want)
	}
	if got, want := escapeProperty("percent % percent % cr \r cr \r lf \n lf \n colon : colon : comma , comma ,"),
		"percent %25 percent %25 cr %0D cr %0D lf %0A lf %0A colon %3A colon %3A comma %2C comma %2C"; got != want {
		t.Errorf("escapeProperty = %q, want %q", got, want)
	}
	// %0A written by the user must not decode to a newline.
	if got, want := escapeData("100%0A"), "100%250A"; got != want {
		t.Errorf("escapeData = %q, want %q", got, want)
	}
}

func TestFormatUnknown(t *testing.T) {
	err := sampleDiagnostics.Format(&bytes.Buffer{}, "xml")
	if !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("err = %v, want ErrUnknownFormat", err)
	}
	if want := `unknown format "xml": want text, json or github`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestStrict(t *testing.T) {
	ds := Diagnostics{
		{Pos: Pos{File: "a.yaml", Line: 1, Col: 1}, Severity: Warning, Code: CodeTTLBelowRetention, Message: "short ttl"},
		{Pos: Pos{File: "a.yaml", Line: 2, Col: 1}, Severity: Error, Code: CodeTopic, Message: "bad topic"},
	}
	strict := ds.Strict()
	if !strict.HasErrors() || strict[0].Severity != Error {
		t.Fatalf("Strict kept a warning: %v", strict)
	}
	if got, want := strict[0].String(), "a.yaml:1:1: error: short ttl (a warning; --strict makes it an error) [EG024]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if strict[1].Message != "bad topic" {
		t.Errorf("Strict changed an error: %q", strict[1].Message)
	}
	if ds[0].Severity != Warning {
		t.Error("Strict changed its receiver")
	}
}
