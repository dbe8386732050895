package generator

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nodeTool finds node and the npm tool pinned in tools/<name> (its
// package.json and package-lock.json), installed by `npm ci --prefix
// tools/<name>`. Outside CI a missing tool skips the test, saying how to
// install it; in CI (env CI set, as .ci/run does) it fails the test.
func nodeTool(t *testing.T, name, module string) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "tools", name))
	if err != nil {
		t.Fatal(err)
	}
	missing := func(why string) {
		t.Helper()
		msg := why + "; install with: npm ci --prefix tools/" + name
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		missing("node (Node.js 20 or later) is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(module), "package.json")); err != nil {
		missing("tools/" + name + " is not installed")
	}
	return node, dir
}

// namedText is one document handed to a tools/*/check.mjs script.
type namedText struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// runNodeCheck runs tools/<name>/check.mjs once over all docs (one node
// start: loading the parsers takes most of the time) and fails the test
// with the script's output if any document is rejected.
func runNodeCheck(t *testing.T, name, module string, docs []namedText) {
	t.Helper()
	node, dir := nodeTool(t, name, module)
	if len(docs) == 0 {
		t.Fatal("nothing to check")
	}
	in, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, filepath.Join(dir, "check.mjs"))
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tools/%s/check.mjs: %v\n%s", name, err, out)
	}
	t.Log(strings.TrimSpace(string(out)))
}
