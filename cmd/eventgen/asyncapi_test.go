package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAsyncAPIOutWritesOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	schema := writeSchema(t, dir, "pings.yaml", validSchema)
	out := filepath.Join(dir, "api", "pings.asyncapi.yaml")
	if code, stdout, stderr := runCLI(t, "asyncapi", "-out", out, schema); code != exitOK || stdout != "" || stderr != "" {
		t.Fatalf("asyncapi -out: exit %d\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The header names the schema as seen from the document.
	if !strings.Contains(string(b), "# source: ../pings.yaml\nasyncapi: 3.0.0\n") {
		t.Errorf("document starts:\n%s", b[:min(len(b), 200)])
	}
	_, stdout, _ := runCLI(t, "asyncapi", schema)
	if body := strings.SplitN(stdout, "\n", 3)[2]; !strings.HasSuffix(string(b), body) {
		t.Errorf("stdout and -out differ beyond the source line")
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(out, old, old); err != nil {
		t.Fatal(err)
	}
	runCLI(t, "asyncapi", "-out", out, schema)
	if fi, err := os.Stat(out); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("an unchanged document was rewritten (%v)", err)
	}
}

func TestAsyncAPIErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeSchema(t, dir, "bad.yaml", "version: 1\npackage: pings\n")
	good := writeSchema(t, dir, "pings.yaml", validSchema)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"asyncapi"}, exitUsage, "want one schema file, got 0"},
		{[]string{"asyncapi", good, good}, exitUsage, "want one schema file, got 2"},
		{[]string{"asyncapi", bad}, exitFail, "bad.yaml:"},
		{[]string{"asyncapi", filepath.Join(dir, "missing.yaml")}, exitFail, "missing.yaml"},
	} {
		code, stdout, stderr := runCLI(t, tc.args...)
		if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, tc.code, tc.want)
		}
	}
}
