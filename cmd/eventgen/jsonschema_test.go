package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventgen/eventgen/generator"
)

// committedJSONSchema is the copy of the JSON Schema that editors point at.
const committedJSONSchema = "../../schemas/eventgen.schema.json"

// TestJSONSchemaCommand checks that `eventgen jsonschema` prints valid JSON
// and the same bytes as the committed schemas/eventgen.schema.json;
// `go test ./cmd/eventgen -update` rewrites that file.
func TestJSONSchemaCommand(t *testing.T) {
	code, stdout, stderr := runCLI(t, "jsonschema")
	if code != exitOK || stderr != "" {
		t.Fatalf("eventgen jsonschema: exit %d, stderr %q", code, stderr)
	}
	if !json.Valid([]byte(stdout)) {
		t.Fatal("eventgen jsonschema printed invalid JSON")
	}
	if *update {
		if err := os.WriteFile(committedJSONSchema, []byte(stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(committedJSONSchema)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, []byte(stdout)) {
		t.Errorf("schemas/eventgen.schema.json differs from `eventgen jsonschema`; run go test ./cmd/eventgen -update")
	}
	if code, _, stderr := runCLI(t, "jsonschema", "extra"); code != exitUsage || !strings.Contains(stderr, "takes no arguments") {
		t.Errorf("eventgen jsonschema extra: exit %d, stderr %q; want a usage error", code, stderr)
	}
}

// ajvCLI is the validator the JSON Schema is tested with, installed by
// `npm ci --prefix tools/ajv` (versions pinned in tools/ajv/package-lock.json).
const ajvCLI = "../../tools/ajv/node_modules/ajv-cli/dist/index.js"

// ajvKeywords declares the editor-only keywords (patternErrorMessage) that
// ajv's strict mode would otherwise reject.
const ajvKeywords = "../../tools/ajv/keywords.cjs"

// structuralCodes are the diagnostics whose cause the JSON Schema sees:
// unknown keys, wrong kinds, missing keys, the version, values outside
// their set. An invalid_* golden case that has only these must fail ajv.
var structuralCodes = []string{"EG002", "EG003", "EG004", "EG005", "EG029"}

// jsonSchemaCases says, for each golden case with errors, what ajv must
// say about it, and why. Cases not listed are decided by the codes of their
// errors: none, must pass; only structuralCodes, must fail; others, only
// logged.
var jsonSchemaCases = map[string]struct {
	fails bool // ajv must reject it; else it must accept it
	skip  bool // not comparable: the YAML does not become one JSON document
	why   string
}{
	// Structural: what the JSON Schema is for.
	"invalid_unknown_keys": {fails: true, why: "EG002: additionalProperties: false on every mapping"},
	"invalid_wrong_kinds":  {fails: true, why: "EG003: type of each value; oneOf fields/enum for a type"},
	"invalid_missing_keys": {fails: true, why: "EG004: required (version, package, topic, fields, type, dedup.store, consumes, produces, guarantee)"},
	"invalid_empty_schema": {fails: true, why: "EG004: an empty file is null, not an object"},
	"invalid_version":      {fails: true, why: "EG005: version is an enum"},
	"invalid_bad_values":   {fails: true, why: "EG029: guarantee and dedup.store enums, booleans, a non-blank source"},
	// Caught by patterns and value constraints.
	"invalid_package_keyword":     {fails: true, why: "EG006: package excludes Go keywords"},
	"invalid_package_predeclared": {fails: true, why: "EG006: package excludes predeclared identifiers"},
	"invalid_package_uppercase":   {fails: true, why: "EG006: package pattern"},
	"invalid_names":               {fails: true, why: "EG007, EG008: propertyNames patterns"},
	"invalid_enum_values":         {fails: true, why: "EG010: enum value pattern, uniqueItems, minItems"},
	"invalid_topics":              {fails: true, why: "EG011: topic pattern and length"},
	"invalid_dedup":               {fails: true, why: "EG020: store none needs reason, postgres/redis need ttl (EG019 and EG030 depend on the guarantee: not caught)"},
	"invalid_durations":           {fails: true, why: "EG023: positive Go duration pattern"},
	"invalid_field_types":         {fails: true, why: "EG028: type pattern (but not undeclared UpperCamelCase names such as Mony)"},
	"invalid_no_events":           {fails: true, why: "EG031: events has minProperties 1"},
	"invalid_ignore":              {fails: true, why: "EG002, EG003 in and around ignore; EG033: malformed codes, error codes (EG022) and blank reasons"},
	"invalid_key_fields":          {fails: true, why: "EG013: idempotency_key names a field twice (uniqueItems); fields that do not exist or have no key type are not caught"},
	"format_github":               {fails: true, why: "EG011: topic pattern; EG028: type pattern"},
	"format_json":                 {fails: true, why: "EG011: topic pattern; EG028: type pattern"},
	"invalid_pipelines":           {fails: true, why: "EG032: a pipeline's guarantee is exactly-once; EG025 partly: produces lists an event twice (uniqueItems); undeclared events and EG026 are not caught"},
	// Structurally valid: only eventgen check finds these, and the JSON
	// Schema must not reject them (no false errors in editors).
	"invalid_at_most_once_outbox": {why: "EG017 depends on the guarantee, possibly from defaults"},
	"invalid_collisions":          {why: "EG009 is about the Go names derived from schema names"},
	"invalid_exactly_once":        {why: "EG021, EG022 depend on the guarantee, possibly from defaults"},
	"invalid_key_unstable":        {why: "EG016 refers to the types of the event's fields"},
	"invalid_recursive_types":     {why: "EG027 follows references between types"},
	"invalid_topic_guarantee":     {why: "EG012 compares events"},
	"issue_example":               {why: "EG025, EG026 refer to the events a pipeline names"},
	// Not one JSON document.
	"invalid_syntax":         {skip: true, why: "EG001: not YAML"},
	"invalid_syntax_tab":     {skip: true, why: "EG001: not YAML"},
	"invalid_duplicate_keys": {skip: true, why: "EG001: a repeated key has no JSON form (editors report it as a YAML error)"},
}

// eventKeyCases exercise the event keys that no golden case has yet
// (version and ignore arrive with the other issue-10 branches): each is
// written into validSchema's event.
var eventKeyCases = []struct {
	yaml  string
	fails bool
	why   string
}{
	{yaml: "    version: 2\n", why: "a positive version"},
	{yaml: "    ignore: {EG024: the topic is compacted; a day of dedup is enough, EB003: moved to v2}\n", why: "codes with reasons"},
	{yaml: "    version: 0\n", fails: true, why: "version is a positive integer"},
	{yaml: "    version: v2\n", fails: true, why: "version is a positive integer"},
	{yaml: "    ignore: {EG24: why}\n", fails: true, why: "codes are EGnnn or EBnnn"},
	{yaml: "    ignore: {EG024: \"  \"}\n", fails: true, why: "a reason is not blank"},
	{yaml: "    ignore: [EG024]\n", fails: true, why: "ignore maps codes to reasons"},
	{yaml: "    ignore: {EG019: an error}\n", fails: true, why: "errors cannot be silenced"},
}

type ajvCase struct {
	name  string // shown in failures
	file  string // the JSON that ajv validates
	src   string // the YAML file
	fails bool
	check bool // false: only log ajv's verdict
	why   string
}

// TestJSONSchemaWithAjv validates YAML schemas, converted to JSON, with a
// real validator: ajv-cli, in one process. Every example schema, every
// golden case that eventgen check accepts and the docs' complete example
// must pass; the others must get the verdict jsonSchemaCases gives them.
func TestJSONSchemaWithAjv(t *testing.T) {
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(ajvCLI)
	}
	if err != nil {
		msg := fmt.Sprintf("ajv-cli is not installed (%v); install it with: npm ci --prefix tools/ajv", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cases := ajvCases(t)
	dir := t.TempDir()
	args := []string{ajvCLI, "validate", "--strict=true", "--allow-union-types", "--all-errors", "--errors=text", "-c", ajvKeywords, "-s", committedJSONSchema}
	for i := range cases {
		c := &cases[i]
		src, err := os.ReadFile(c.src)
		if err != nil {
			t.Fatal(err)
		}
		data, err := yamlToJSON(src)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%03d.json", i))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c.file = file
		args = append(args, "-d", file)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), node, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run() // exit 1 when any file is invalid: the verdicts below decide
	t.Logf("ajv validated %d files in %v", len(cases), time.Since(start).Round(time.Millisecond))
	verdicts := parseAjv(stdout.String() + "\n" + stderr.String())
	if len(verdicts) != len(cases) {
		t.Fatalf("ajv gave %d verdicts for %d files (%v):\n%s\n%s", len(verdicts), len(cases), err, stdout.String(), stderr.String())
	}
	passed, failed := 0, 0
	for _, c := range cases {
		v, ok := verdicts[c.file]
		if !ok {
			t.Errorf("%s: ajv gave no verdict", c.name)
			continue
		}
		if v.invalid {
			failed++
		} else {
			passed++
		}
		if testing.Verbose() {
			t.Logf("%s: invalid=%v %s", c.name, v.invalid, v.errors)
		}
		switch {
		case !c.check:
			t.Logf("%s (not listed: %s): ajv says invalid=%v %s", c.name, c.why, v.invalid, v.errors)
		case c.fails && !v.invalid:
			t.Errorf("%s: ajv accepts it; want it rejected (%s)", c.name, c.why)
		case !c.fails && v.invalid:
			t.Errorf("%s: ajv rejects it (%s): %s", c.name, c.why, v.errors)
		}
	}
	t.Logf("%d files passed ajv, %d failed it", passed, failed)
}

// ajvCases lists the files to validate and what ajv must say.
func ajvCases(t *testing.T) []ajvCase {
	t.Helper()
	var cases []ajvCase
	examples, _ := filepath.Glob("../../schemas/examples/*/*.yaml")
	goldens, _ := filepath.Glob(filepath.Join(goldenDir, "*", "schema.yaml"))
	if len(examples) == 0 || len(goldens) == 0 {
		t.Fatal("no example or golden schemas found")
	}
	for _, p := range examples {
		cases = append(cases, ajvCase{name: strings.TrimPrefix(p, "../../"), src: p, check: true, why: "an example"})
	}
	cases = append(cases, ajvCase{name: "docs/schema.md's complete example", src: docsExample(t), check: true, why: "the documented example"})
	inline := t.TempDir()
	for i, c := range eventKeyCases {
		p := filepath.Join(inline, fmt.Sprintf("event%d.yaml", i))
		src := strings.Replace(validSchema, "    topic: pings\n", "    topic: pings\n"+c.yaml, 1)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, ajvCase{name: "event keys: " + strings.TrimSpace(c.yaml), src: p, fails: c.fails, check: true, why: c.why})
	}
	listed := map[string]bool{}
	for _, p := range goldens {
		name := filepath.Base(filepath.Dir(p))
		c, ok := jsonSchemaCases[name]
		codes := checkErrors(t, p)
		if !ok && len(codes) == 0 {
			// Warnings are fine: --strict is not the JSON Schema's business.
			cases = append(cases, ajvCase{name: name, src: p, check: true, why: "eventgen check accepts it"})
			continue
		}
		listed[name] = ok
		switch {
		case c.skip:
			continue
		case ok:
			cases = append(cases, ajvCase{name: name, src: p, fails: c.fails, check: true, why: c.why})
		default:
			structural := len(codes) > 0 && !slices.ContainsFunc(codes, func(c string) bool { return !slices.Contains(structuralCodes, c) })
			why := fmt.Sprintf("errors %v", codes)
			cases = append(cases, ajvCase{name: name, src: p, fails: structural, check: structural, why: why})
		}
	}
	for name := range jsonSchemaCases {
		if _, ok := listed[name]; !ok {
			t.Errorf("jsonSchemaCases lists %s, which is not a golden case", name)
		}
	}
	return cases
}

// checkErrors returns the codes of the errors eventgen check finds in the
// schema, sorted, each once.
func checkErrors(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, diags := generator.Check([]generator.Input{{Path: "schema.yaml", Data: data}})
	var codes []string
	for _, d := range diags {
		if d.Severity == generator.Error && !slices.Contains(codes, string(d.Code)) {
			codes = append(codes, string(d.Code))
		}
	}
	slices.Sort(codes)
	return codes
}

// docsExample writes the YAML of docs/schema.md's "A complete example" to
// a file and returns its path.
func docsExample(t *testing.T) string {
	data, err := os.ReadFile("../../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "## A complete example\n")
	_, rest, ok2 := strings.Cut(rest, "```yaml\n")
	example, _, ok3 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/schema.md has no complete example in a ```yaml block")
	}
	p := filepath.Join(t.TempDir(), "example.yaml")
	if err := os.WriteFile(p, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type ajvVerdict struct {
	invalid bool
	errors  string
}

// parseAjv reads ajv-cli's output: "FILE valid", or "FILE invalid" and a
// line of errors (with --errors=text).
func parseAjv(out string) map[string]ajvVerdict {
	verdicts := map[string]ajvVerdict{}
	var last string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutSuffix(line, " valid"); ok && strings.HasSuffix(f, ".json") {
			verdicts[f] = ajvVerdict{}
			last = ""
		} else if f, ok := strings.CutSuffix(line, " invalid"); ok && strings.HasSuffix(f, ".json") {
			verdicts[f] = ajvVerdict{invalid: true}
			last = f
		} else if last != "" && strings.TrimSpace(line) != "" {
			v := verdicts[last]
			v.errors += line
			verdicts[last] = v
		}
	}
	return verdicts
}

// yamlToJSON converts a YAML document to the JSON an editor validates: the
// keys of a mapping are their text (the first of a repeated key wins, as in
// eventgen's loader), and scalars keep the YAML type they resolve to
// (1 is a number, true a boolean, 2024-01-01 a string).
func yamlToJSON(src []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return []byte("null\n"), nil
	}
	v, err := yamlValue(doc.Content[0], 0)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func yamlValue(n *yaml.Node, depth int) (any, error) {
	if depth > 100 {
		return nil, fmt.Errorf("line %d: nested too deeply (an alias cycle?)", n.Line)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias, depth+1)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			for k.Kind == yaml.AliasNode && depth < 100 {
				k, depth = k.Alias, depth+1
			}
			if _, dup := m[k.Value]; dup {
				continue
			}
			v, err := yamlValue(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		list := []any{}
		for _, item := range n.Content {
			v, err := yamlValue(item, depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	}
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool", "!!int", "!!float":
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %v", n.Line, err)
		}
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return n.Value, nil // no JSON form
		}
		return v, nil
	}
	return n.Value, nil
}
