package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/eventgen/eventgen/generator"
)

// gitTimeout bounds each git command breaking runs.
const gitTimeout = 30 * time.Second

// runBreaking compares each schema with its version at --against and
// reports the changes that break consumers in --mode, in --format.
func runBreaking(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("eventgen breaking", flag.ContinueOnError)
	fl.SetOutput(stderr)
	against := fl.String("against", "", "the old schemas: a file, a directory holding them at the same relative paths, or a git revision (main, origin/main, HEAD~1, a commit)")
	modeName := fl.String("mode", "backward", "backward (new consumers read old records), forward (old consumers read new records) or full (both)")
	format, strict := reportFlags(fl, "treat warnings (changes a new version allows) as errors")
	if code, ok := parseFlags(fl, args, format, stderr); !ok {
		return code
	}
	mode, err := generator.ParseMode(*modeName)
	if err != nil {
		fmt.Fprintf(stderr, "eventgen breaking: %v\n%s", err, usage)
		return exitUsage
	}
	switch {
	case *against == "":
		fmt.Fprintf(stderr, "eventgen breaking: --against is required: a file, a directory or a git revision\n%s", usage)
		return exitUsage
	case fl.NArg() == 0:
		fmt.Fprintf(stderr, "eventgen breaking: no schema files given\n%s", usage)
		return exitUsage
	}
	ref := newRef(*against)
	if ref.kind == refFile && fl.NArg() > 1 {
		fmt.Fprintf(stderr, "eventgen breaking: --against %s is one file, but %d schemas are given: name a directory or a git revision\n", *against, fl.NArg())
		return exitUsage
	}

	var diags generator.Diagnostics
	var problems []string // failures that are not findings: git, I/O, schemas that do not compile
	for _, p := range fl.Args() {
		p = filepath.Clean(p)
		d, err := breakingOne(p, ref, mode)
		diags = append(diags, d...)
		var ce *compileError
		switch {
		case errors.As(err, &ce) && ce.isNew && *format != "text":
			// For programs and annotations, the new schema's errors are
			// diagnostics like check's: they are on the lines under review.
			diags = append(diags, ce.diags...)
			problems = append(problems, ce.summary())
		case err != nil:
			problems = append(problems, err.Error())
		}
	}
	diags.Sort()
	if *strict {
		diags = diags.Strict()
	}
	// One call prints the findings, in every format, as check does; the
	// problems follow on stderr, which the json and github formats leave
	// to people.
	r := generator.Report{Diagnostics: diags}
	if err := r.Print(stdout, stderr, *format); err != nil {
		fmt.Fprintf(stderr, "eventgen: %v\n", err)
		return exitFail
	}
	for _, msg := range problems {
		fmt.Fprintf(stderr, "eventgen breaking: %s\n", msg)
	}
	if r.Failed() || len(problems) > 0 {
		return exitFail
	}
	return exitOK
}

// compileError is a schema that does not compile, so that there is
// nothing sound to compare.
type compileError struct {
	path, oldPath string // oldPath is "" when the new schema is the one failing
	isNew         bool
	diags         generator.Diagnostics
}

func (e *compileError) summary() string {
	if e.isNew {
		return fmt.Sprintf("%s does not compile, so it cannot be compared (eventgen check %s shows the same)", e.path, e.path)
	}
	return fmt.Sprintf("the old schema %s does not compile with this eventgen, so %s cannot be compared with it", e.oldPath, e.path)
}

func (e *compileError) Error() string {
	return e.summary() + ":\n" + indent(e.diags.Error())
}

// breakingOne compares one schema with its old version. The findings come
// back as diagnostics; err says why there was no comparison, and is a
// *compileError for a schema that does not compile.
func breakingOne(path string, ref ref, mode generator.Mode) (generator.Diagnostics, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cur, diags := generator.Check([]generator.Input{{Path: path, Data: data}})
	if diags.HasErrors() {
		return nil, &compileError{path: path, isNew: true, diags: diags}
	}
	old, err := ref.read(path)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, nil // the schema is new: nothing it replaces can break
	}
	prev, diags := generator.Check([]generator.Input{*old})
	if diags.HasErrors() {
		return nil, &compileError{path: path, oldPath: old.Path, diags: diags}
	}
	return generator.Breaking(prev[0], cur[0], mode), nil
}

func indent(s string) string {
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}

type refKind int

const (
	refFile refKind = iota + 1
	refDir
	refGit
)

// ref is where the old schemas are.
type ref struct {
	name string
	kind refKind
}

// newRef tells a file or directory from a git revision: a path that exists
// wins over a revision of the same name.
func newRef(name string) ref {
	st, err := os.Stat(name)
	switch {
	case err != nil:
		return ref{name: name, kind: refGit}
	case st.IsDir():
		return ref{name: name, kind: refDir}
	}
	return ref{name: name, kind: refFile}
}

// read returns the old version of the schema at path, or nil if it did not
// exist there.
func (r ref) read(path string) (*generator.Input, error) {
	switch r.kind {
	case refFile:
		return readInput(filepath.Clean(r.name))
	case refDir:
		rel := path
		if filepath.IsAbs(path) {
			wd, err := os.Getwd()
			if err != nil {
				return nil, err
			}
			if rel, err = filepath.Rel(wd, path); err != nil {
				return nil, fmt.Errorf("%s: not below the current directory, so its place in %s is unknown: %w", path, r.name, err)
			}
		}
		in, err := readInput(filepath.Join(r.name, rel))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return in, err
	}
	return r.readGit(path)
}

func readInput(path string) (*generator.Input, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &generator.Input{Path: path, Data: data}, nil
}

// readGit reads the schema at the revision with git show, running git in
// the schema's directory so that the repository is the schema's own.
func (r ref) readGit(path string) (*generator.Input, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if _, err := git(dir, "rev-parse", "--git-dir"); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("--against %s: no such file or directory, and git, which would read it as a revision, is not installed: %w", r.name, err)
		}
		return nil, fmt.Errorf("--against %s: no such file or directory, and %s is not in a git repository to read a revision from", r.name, path)
	}
	if _, err := git(dir, "rev-parse", "--verify", "--quiet", "--end-of-options", r.name+"^{commit}"); err != nil {
		return nil, r.missing(dir)
	}
	// ls-tree takes the path relative to dir and prints it from the root,
	// which is what REV:path names.
	out, err := git(dir, "ls-tree", "--full-name", "--name-only", r.name, "--", base)
	if err != nil {
		return nil, err
	}
	full := strings.TrimSpace(out)
	if full == "" {
		return nil, nil // not in that revision: the schema is new
	}
	data, err := git(dir, "show", r.name+":"+full)
	if err != nil {
		return nil, err
	}
	return &generator.Input{Path: r.name + ":" + full, Data: []byte(data)}, nil
}

var (
	ancestorRE = regexp.MustCompile(`^(.*)~(\d*)$`)
	commitRE   = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
)

// missing explains a revision the repository lacks, with the command that
// fetches it: in CI, clones are often shallow and hold one branch.
func (r ref) missing(dir string) error {
	out, _ := git(dir, "rev-parse", "--is-shallow-repository")
	shallow := strings.TrimSpace(out) == "true"
	const either = "(or checkout with fetch-depth: 0)"
	name := r.name
	if shallow {
		if m := ancestorRE.FindStringSubmatch(name); m != nil {
			n := cmp.Or(m[2], "1")
			return fmt.Errorf("%s is not in this clone, which is shallow: run `git fetch --no-tags --deepen=%s` %s", name, n, either)
		}
		if strings.ContainsAny(name, "^@{}:") {
			return fmt.Errorf("%s is not in this clone, which is shallow: run `git fetch --no-tags --unshallow` %s", name, either)
		}
		if commitRE.MatchString(name) {
			return fmt.Errorf("commit %s is not in this clone, which is shallow: run `git fetch --no-tags --depth=1 origin %s` %s", name, name, either)
		}
	}
	remote, branch, ok := strings.Cut(strings.TrimPrefix(name, "refs/remotes/"), "/")
	if ok {
		if _, err := git(dir, "remote", "get-url", remote); err == nil {
			// The refspec spelt out: a single-branch clone (actions/checkout's)
			// would otherwise fetch the branch to FETCH_HEAD only.
			return fmt.Errorf("%s is not in this clone: run `git fetch --no-tags --depth=1 %s +refs/heads/%s:refs/remotes/%s/%s` %s", name, remote, branch, remote, branch, either)
		}
	}
	if _, err := git(dir, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/"+name); err == nil {
		return fmt.Errorf("%s is not a branch of this clone, but origin/%s is: use --against origin/%s", name, name, name)
	}
	if _, err := git(dir, "remote", "get-url", "origin"); err == nil && !strings.ContainsAny(name, "~^@{}:") {
		return fmt.Errorf("%s is not in this clone: run `git fetch --no-tags --depth=1 origin +refs/heads/%s:refs/remotes/origin/%s` %s and use --against origin/%s", name, name, name, either, name)
	}
	return fmt.Errorf("--against %s: not a file, a directory or a revision of this git repository", name)
}

// git runs one git command in dir and returns its standard output.
func git(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}
