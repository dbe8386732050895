package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const gitSchemaV1 = `version: 1
package: shop
events:
  OrderPlaced:
    topic: shop.orders
    guarantee: at-most-once
    fields:
      order_id: uuid
`

// gitSchemaV2 adds a required field: breaking in backward mode.
const gitSchemaV2 = gitSchemaV1 + "      coupon: string\n"

// needGit skips the test when git is missing, except in CI, where the git
// tests must run.
func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("git is required in CI: %v", err)
		}
		t.Skipf("git is not installed (%v): install git to run the --against REV tests", err)
	}
}

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", append([]string{"-C", dir}, args...)...)
	// The test's repositories must not depend on the user's git config.
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newGitRepo makes a repository with two commits on main: schemas/shop.yaml
// at v1, then at v2 with schemas/new.yaml added; branch base stays at the
// first commit.
func newGitRepo(t *testing.T) string {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "init", "-q")
	gitRun(t, repo, "symbolic-ref", "HEAD", "refs/heads/main")
	gitRun(t, repo, "config", "user.name", "eventgen test")
	gitRun(t, repo, "config", "user.email", "test@eventgen.invalid")
	gitRun(t, repo, "config", "commit.gpgsign", "false")
	writeFile(t, filepath.Join(repo, "schemas", "shop.yaml"), gitSchemaV1)
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "shop at v1")
	gitRun(t, repo, "branch", "base")
	writeFile(t, filepath.Join(repo, "schemas", "shop.yaml"), gitSchemaV2)
	writeFile(t, filepath.Join(repo, "schemas", "new.yaml"), gitSchemaV1)
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "shop gains a coupon")
	return repo
}

const wantGitFinding = `schemas/shop.yaml:9:7: error: required field coupon was added to event OrderPlaced: records written before the change lack it, and consumers built after it reject them; add it as optional: true [EB001]
	HEAD~1:schemas/shop.yaml:4:3: note: event OrderPlaced had no field coupon
`

func TestBreakingAgainstGitRevision(t *testing.T) {
	needGit(t)
	repo := newGitRepo(t)
	t.Chdir(repo)

	code, stdout, stderr := runCLI(t, "breaking", "--against", "HEAD~1", "schemas/shop.yaml")
	if code != exitFail || stdout != "" || stderr != wantGitFinding {
		t.Errorf("breaking --against HEAD~1: exit %d, want 1; stdout %q; stderr (-want +got):\n%s", code, stdout, unifiedDiff("stderr", []byte(wantGitFinding), []byte(stderr)))
	}
	// From the schema's directory, the old schema is the same file: git
	// runs where the schema is, and REV:path names it from the root.
	t.Chdir(filepath.Join(repo, "schemas"))
	code, _, stderr = runCLI(t, "breaking", "--against", "base", "shop.yaml")
	if code != exitFail || !strings.Contains(stderr, "base:schemas/shop.yaml:4:3: note:") {
		t.Errorf("breaking --against base from schemas/: exit %d, want 1\n%s", code, stderr)
	}
	t.Chdir(repo)
	// A schema that did not exist at the revision is all new.
	if code, _, stderr := runCLI(t, "breaking", "--against", "HEAD~1", "schemas/new.yaml"); code != exitOK || stderr != "" {
		t.Errorf("a schema new since HEAD~1: exit %d, want 0\n%s", code, stderr)
	}
	// Against itself, nothing changed.
	if code, _, stderr := runCLI(t, "breaking", "--against", "main", "schemas/shop.yaml", "schemas/new.yaml"); code != exitOK || stderr != "" {
		t.Errorf("against main, which is HEAD: exit %d, want 0\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "breaking", "--against", "no-such-branch", "schemas/shop.yaml"); code != exitFail || !strings.Contains(stderr, "not a file, a directory or a revision") {
		t.Errorf("an unknown revision: exit %d, want 1\n%s", code, stderr)
	}
}

// TestBreakingShallowClone checks that a revision a shallow CI clone lacks
// is explained with the fetch that brings it, and that the fetch works.
func TestBreakingShallowClone(t *testing.T) {
	needGit(t)
	repo := newGitRepo(t)
	clone := filepath.Join(t.TempDir(), "clone")
	gitRun(t, filepath.Dir(clone), "clone", "-q", "--depth", "1", "--branch", "main", "file://"+filepath.ToSlash(repo), clone)
	t.Chdir(clone)

	for _, tc := range []struct{ ref, want, fetch string }{
		{"HEAD~1", "HEAD~1 is not in this clone, which is shallow: run `git fetch --no-tags --deepen=1` (or checkout with fetch-depth: 0)", "fetch --no-tags --deepen=1"},
		{"origin/base", "origin/base is not in this clone: run `git fetch --no-tags --depth=1 origin +refs/heads/base:refs/remotes/origin/base` (or checkout with fetch-depth: 0)", "fetch --no-tags --depth=1 origin +refs/heads/base:refs/remotes/origin/base"},
	} {
		code, _, stderr := runCLI(t, "breaking", "--against", tc.ref, "schemas/shop.yaml")
		if want := "eventgen breaking: " + tc.want + "\n"; code != exitFail || stderr != want {
			t.Errorf("--against %s in a shallow clone: exit %d, want 1; stderr (-want +got):\n%s", tc.ref, code, unifiedDiff("stderr", []byte(want), []byte(stderr)))
			continue
		}
		// The command the message names must make the revision readable.
		gitRun(t, clone, strings.Fields(tc.fetch)...)
		code, _, stderr = runCLI(t, "breaking", "--against", tc.ref, "schemas/shop.yaml")
		if code != exitFail || !strings.Contains(stderr, "[EB001]") {
			t.Errorf("--against %s after git %s: exit %d, want the EB001 finding\n%s", tc.ref, tc.fetch, code, stderr)
		}
	}
}

func TestBreakingAgainstDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "old", "schemas", "shop.yaml"), gitSchemaV1)
	writeFile(t, filepath.Join(dir, "schemas", "shop.yaml"), gitSchemaV2)
	writeFile(t, filepath.Join(dir, "schemas", "new.yaml"), gitSchemaV1)
	t.Chdir(dir)
	code, _, stderr := runCLI(t, "breaking", "--against", "old", "schemas/shop.yaml", "schemas/new.yaml")
	if code != exitFail || !strings.Contains(stderr, "old/schemas/shop.yaml:4:3: note: event OrderPlaced had no field coupon") || strings.Contains(stderr, "new.yaml") {
		t.Errorf("--against a directory: exit %d, want 1 and one finding for shop.yaml\n%s", code, stderr)
	}
	// In forward mode an added field is compatible: old consumers ignore it.
	if code, _, stderr := runCLI(t, "breaking", "--against", "old", "--mode", "forward", "schemas/shop.yaml"); code != exitOK || stderr != "" {
		t.Errorf("forward mode: exit %d, want 0\n%s", code, stderr)
	}
}

func TestBreakingUsage(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), gitSchemaV1)
	writeFile(t, filepath.Join(dir, "b.yaml"), gitSchemaV1)
	t.Chdir(dir)
	for _, args := range [][]string{
		{"breaking", "a.yaml"},                                              // no --against
		{"breaking", "--against", "a.yaml"},                                 // no schema
		{"breaking", "--against", "a.yaml", "--mode", "sideways", "b.yaml"}, // unknown mode
		{"breaking", "--against", "a.yaml", "a.yaml", "b.yaml"},             // one file for two schemas
		{"breaking", "--format", "xml", "--against", "a.yaml", "b.yaml"},    // unknown format
	} {
		if code, stdout, stderr := runCLI(t, args...); code != exitUsage || stdout != "" {
			t.Errorf("eventgen %s: exit %d, want 2, and stdout %q, want none\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
}
