package generator

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// load parses one schema file into the AST. Every problem is reported to r;
// the returned AST holds whatever could be read, so that later checks still
// run and one pass reports as much as possible.
func load(path string, src []byte, r reporter) (f *schemaFile) {
	f = &schemaFile{path: path, eventsLine: 1, eventsCol: 1}
	defer func() {
		// yaml.v3 has panicked on hostile input in the past; a schema must
		// never crash the tool, so such a panic becomes a diagnostic.
		if p := recover(); p != nil {
			r.errorf(1, 1, CodeSyntax, "the YAML parser failed: %v", p)
			f = &schemaFile{path: path, eventsLine: 1, eventsCol: 1, unreadable: true}
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line, msg := yamlErrorLine(err)
		// At end of input the parser can name a line past the last one.
		line = min(line, bytes.Count(src, []byte("\n"))+1)
		r.errorf(line, 1, CodeSyntax, "%s", msg)
		f.unreadable = true
		return f
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		r.errorf(1, 1, CodeMissingKey, "the schema is empty: want a mapping with version, package and events")
		f.unreadable = true
		return f
	}
	l := loader{r: r}
	root := deref(doc.Content[0])
	f.unreadable = root.Kind != yaml.MappingNode // reported by l.mapping
	l.mapping(root, "the schema", topKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			f.version = l.scalar(v, "version")
		case "package":
			f.pkg = l.scalar(v, "package")
		case "source":
			f.source = l.scalar(v, "source")
		case "defaults":
			s := &settings{}
			l.mapping(v, defaultsWhat, defaultKeys, func(key string, k, v *yaml.Node) {
				l.setting(s, key, v)
			})
			f.defaults = s
		case "types":
			l.mapping(v, "types", nil, func(name string, k, v *yaml.Node) {
				f.types = append(f.types, l.typeDecl(k, v))
			})
		case "events":
			f.eventsLine, f.eventsCol = k.Line, k.Column
			f.eventsBad = deref(v).Kind != yaml.MappingNode // reported by l.mapping
			l.mapping(v, "events", nil, func(name string, k, v *yaml.Node) {
				f.events = append(f.events, l.eventDecl(k, v))
			})
		case "pipelines":
			l.mapping(v, "pipelines", nil, func(name string, k, v *yaml.Node) {
				f.pipelines = append(f.pipelines, l.pipelineDecl(k, v))
			})
		}
	})
	if root.Kind == yaml.MappingNode {
		// given, not hasKey: a misspelt key was read as the one it names.
		if !f.version.given() {
			r.errorf(root.Line, root.Column, CodeMissingKey, "missing required key %q", "version")
		}
		if !f.pkg.given() {
			r.errorf(root.Line, root.Column, CodeMissingKey, "missing required key %q", "package")
		}
	}
	return f
}

var (
	topKeys      = []string{"version", "package", "source", "defaults", "types", "events", "pipelines"}
	settingKeys  = []string{"guarantee", "key", "idempotency_key", "dedup", "outbox", "retention", "deprecated"}
	defaultKeys  = settingKeys
	eventKeys    = append([]string{"doc", "topic", "version", "fields", "ignore"}, settingKeys...)
	typeKeys     = []string{"doc", "fields", "enum"}
	fieldKeys    = []string{"type", "optional", "doc", "json"}
	dedupKeys    = []string{"store", "ttl", "reason"}
	pipelineKeys = []string{"doc", "consumes", "produces", "guarantee"}
)

// defaultsWhat names the defaults mapping in messages.
const defaultsWhat = "defaults"

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrors are the messages of yaml.v3's parser (as opposed to its
// scanner). For these, yaml.v3 prints the zero-based line of the mark (its
// decode.go adds one for scanner errors only), so the line is one short.
var yamlParserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// yamlErrorLine extracts the line from a yaml.v3 error ("yaml: line 3: ...").
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			if yamlParserErrors[m[2]] {
				n++
			}
			return n, m[2]
		}
	}
	if len(msg) > 6 && msg[:6] == "yaml: " {
		msg = msg[6:]
	}
	return 1, msg
}

type loader struct {
	r reporter
}

// deref follows YAML aliases (bounded, in case of a cycle).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return "a scalar"
	}
	return "an alias"
}

// mapping walks a mapping node. With known keys, others are reported with a
// suggestion; with nil, any key is accepted (names of events, types, ...).
// A key written twice is an error (YAML requires unique keys, but yaml.v3
// does not check when decoding into a Node); only the first is read.
func (l loader) mapping(n *yaml.Node, what string, known []string, each func(key string, k, v *yaml.Node)) {
	n = deref(n)
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.r.errorf(n.Line, n.Column, CodeWrongKind, "%s must be a mapping, not %s", what, kindName(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.r.errorf(k.Line, k.Column, CodeWrongKind, "keys in %s must be scalars, not %s", what, kindName(k))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			l.r.errorf(k.Line, k.Column, CodeSyntax, "key %q is repeated in %s (first at line %d): YAML keys must be unique", k.Value, what, line)
			continue
		}
		seen[k.Value] = k.Line
		key := k.Value
		if known != nil && !slices.Contains(known, key) {
			if what == defaultsWhat && slices.Contains(eventKeys, key) {
				l.r.errorf(k.Line, k.Column, CodeUnknownKey, "%q cannot be set in defaults: it belongs on each event", key)
				continue
			}
			s := suggest(key, known)
			l.r.errorf(k.Line, k.Column, CodeUnknownKey, "unknown key %q in %s%s", key, what, didYouMean(key, known))
			// Read the value as the key it most likely means, so that a
			// misspelt key is not also reported as a missing one; unless
			// that key is written as well, or the guess is a distant one.
			if d := levenshtein(key, s); s == "" || hasKey(n, s) || d > 2 && d > len(key)/3 {
				continue
			}
			key = s
		}
		each(key, k, v)
	}
}

func (l loader) scalar(n *yaml.Node, what string) scalar {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.r.errorf(n.Line, n.Column, CodeWrongKind, "%s must be a scalar, not %s", what, kindName(n))
		return scalar{line: n.Line, col: n.Column, bad: true}
	}
	return scalar{val: n.Value, line: n.Line, col: n.Column, set: true}
}

func (l loader) boolean(n *yaml.Node, what string) boolValue {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.r.errorf(n.Line, n.Column, CodeBadValue, "%s must be true or false, not %s", what, kindName(n))
		return boolValue{line: n.Line, col: n.Column}
	}
	if n.Tag != "!!bool" {
		l.r.errorf(n.Line, n.Column, CodeBadValue, "%s must be true or false, not %q", what, n.Value)
		return boolValue{line: n.Line, col: n.Column}
	}
	var b bool
	_ = n.Decode(&b) // tag !!bool guarantees it decodes
	return boolValue{val: b, line: n.Line, col: n.Column, set: true}
}

// scalars reads a list of scalars; a single scalar is accepted as a list of
// one. ok is false if anything was reported, so that callers do not also
// report the list as empty.
func (l loader) scalars(n *yaml.Node, what string) (out []scalar, ok bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []scalar{l.scalar(n, what)}, true
	}
	if n.Kind != yaml.SequenceNode {
		l.r.errorf(n.Line, n.Column, CodeWrongKind, "%s must be a list, not %s", what, kindName(n))
		return nil, false
	}
	ok = true
	for _, item := range n.Content {
		if s := l.scalar(item, what+" entries"); s.set {
			out = append(out, s)
		} else {
			ok = false
		}
	}
	return out, ok
}

func keyScalar(k *yaml.Node) scalar {
	return scalar{val: k.Value, line: k.Line, col: k.Column, set: true}
}

func (l loader) setting(s *settings, key string, v *yaml.Node) {
	switch key {
	case "guarantee":
		s.guarantee = l.scalar(v, "guarantee")
	case "key":
		s.key = l.scalar(v, "key")
	case "idempotency_key":
		s.idemKeySet = scalar{line: v.Line, col: v.Column, set: true}
		var ok bool
		s.idemKey, ok = l.scalars(v, "idempotency_key")
		s.idemKeySet.bad = !ok
	case "dedup":
		d := &dedupDecl{line: v.Line, col: v.Column}
		l.mapping(v, "dedup", dedupKeys, func(key string, k, v *yaml.Node) {
			switch key {
			case "store":
				d.store = l.scalar(v, "dedup.store")
			case "ttl":
				d.ttl = l.scalar(v, "dedup.ttl")
			case "reason":
				d.reason = l.scalar(v, "dedup.reason")
			}
		})
		s.dedup = d
	case "outbox":
		s.outbox = l.boolean(v, "outbox")
	case "retention":
		s.retention = l.scalar(v, "retention")
	case "deprecated":
		s.deprecated = l.boolean(v, "deprecated")
	}
}

func (l loader) eventDecl(k, v *yaml.Node) *eventDecl {
	e := &eventDecl{name: keyScalar(k), malformed: v.Kind != yaml.MappingNode}
	what := fmt.Sprintf("event %s", k.Value)
	l.mapping(v, what, eventKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "doc":
			e.doc = l.scalar(v, "doc")
		case "topic":
			e.topic = l.scalar(v, "topic")
		case "version":
			e.version = l.scalar(v, "version")
		case "fields":
			e.fieldsSet = keyScalar(k)
			e.fields = l.fields(v, what)
		case "ignore":
			e.ignore = l.ignore(v, what)
		default:
			l.setting(&e.settings, key, v)
		}
	})
	return e
}

// ignore reads an event's ignore mapping, from codes to reasons; the
// compiler checks the codes and that each reason says something.
func (l loader) ignore(n *yaml.Node, owner string) []ignoreEntry {
	var out []ignoreEntry
	l.mapping(n, "ignore of "+owner, nil, func(code string, k, v *yaml.Node) {
		e := ignoreEntry{code: keyScalar(k)}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			e.reason = scalar{line: k.Line, col: k.Column, set: true}
		} else {
			e.reason = l.scalar(v, "the reason for ignoring "+code)
		}
		out = append(out, e)
	})
	return out
}

func (l loader) typeDecl(k, v *yaml.Node) *typeDecl {
	t := &typeDecl{name: keyScalar(k), malformed: v.Kind != yaml.MappingNode}
	what := fmt.Sprintf("type %s", k.Value)
	l.mapping(v, what, typeKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "doc":
			t.doc = l.scalar(v, "doc")
		case "fields":
			t.fieldsSet = keyScalar(k)
			t.fields = l.fields(v, what)
		case "enum":
			t.enumSet = keyScalar(k)
			var ok bool
			t.enum, ok = l.scalars(v, "enum")
			t.enumSet.bad = !ok
		}
	})
	return t
}

func (l loader) fields(n *yaml.Node, owner string) []*fieldDecl {
	var out []*fieldDecl
	l.mapping(n, "fields of "+owner, nil, func(name string, k, v *yaml.Node) {
		f := &fieldDecl{name: keyScalar(k)}
		if v.Kind == yaml.MappingNode {
			v = withoutSplitMapType(v)
			l.mapping(v, "field "+name, fieldKeys, func(key string, k, v *yaml.Node) {
				switch key {
				case "type":
					f.typ = l.scalar(v, "the type of field "+name)
				case "optional":
					f.optional = l.boolean(v, "optional")
				case "doc":
					f.doc = l.scalar(v, "doc")
				case "json":
					f.json = l.scalar(v, "json")
				}
			})
			if !f.typ.set && !hasKey(v, "type") {
				l.r.errorf(k.Line, k.Column, CodeMissingKey, "field %s: missing required key \"type\"", name)
			}
		} else {
			f.typ = l.scalar(v, "the type of field "+name)
		}
		out = append(out, f)
	})
	return out
}

// withoutSplitMapType undoes the one mistake YAML flow syntax invites: in
// {type: map<string,T>}, the comma ends the value, leaving type "map<string"
// and a stray key "T>". The type is reported, with a hint to quote it, by
// parseType; the stray key is dropped so that it is not reported again.
func withoutSplitMapType(v *yaml.Node) *yaml.Node {
	if v.Style&yaml.FlowStyle == 0 {
		return v
	}
	for i := 0; i+3 < len(v.Content); i += 2 {
		k, val, next := v.Content[i], v.Content[i+1], v.Content[i+2]
		if k.Value == "type" && strings.HasPrefix(val.Value, "map<") && !strings.Contains(val.Value, ">") && strings.HasSuffix(next.Value, ">") {
			c := *v
			c.Content = slices.Delete(slices.Clone(v.Content), i+2, i+4)
			return &c
		}
	}
	return v
}

func (l loader) pipelineDecl(k, v *yaml.Node) *pipelineDecl {
	p := &pipelineDecl{name: keyScalar(k), malformed: v.Kind != yaml.MappingNode}
	l.mapping(v, "pipeline "+k.Value, pipelineKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "doc":
			p.doc = l.scalar(v, "doc")
		case "consumes":
			p.consumes = l.scalar(v, "consumes")
		case "produces":
			p.producesSet = keyScalar(k)
			var ok bool
			p.produces, ok = l.scalars(v, "produces")
			p.producesSet.bad = !ok
		case "guarantee":
			p.guarantee = l.scalar(v, "guarantee")
		}
	})
	return p
}
