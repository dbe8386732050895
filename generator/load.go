package generator

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"

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
			f = &schemaFile{path: path, eventsLine: 1, eventsCol: 1}
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line, msg := yamlErrorLine(err)
		// At end of input the parser can name a line past the last one.
		line = min(line, bytes.Count(src, []byte("\n"))+1)
		r.errorf(line, 1, CodeSyntax, "%s", msg)
		return f
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		r.errorf(1, 1, CodeMissingKey, "the schema is empty: want a mapping with version, package and events")
		return f
	}
	l := loader{r: r}
	root := deref(doc.Content[0])
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
			l.mapping(v, "defaults", defaultKeys, func(key string, k, v *yaml.Node) {
				l.setting(s, key, v)
			})
			f.defaults = s
		case "types":
			l.mapping(v, "types", nil, func(name string, k, v *yaml.Node) {
				f.types = append(f.types, l.typeDecl(k, v))
			})
		case "events":
			f.eventsLine, f.eventsCol = k.Line, k.Column
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
		for _, key := range []string{"version", "package"} {
			if !hasKey(root, key) {
				r.errorf(root.Line, root.Column, CodeMissingKey, "missing required key %q", key)
			}
		}
	}
	return f
}

var (
	topKeys      = []string{"version", "package", "source", "defaults", "types", "events", "pipelines"}
	settingKeys  = []string{"guarantee", "key", "idempotency_key", "dedup", "outbox", "retention", "deprecated"}
	defaultKeys  = settingKeys
	eventKeys    = append([]string{"doc", "topic", "fields"}, settingKeys...)
	typeKeys     = []string{"doc", "fields", "enum"}
	fieldKeys    = []string{"type", "optional", "doc"}
	dedupKeys    = []string{"store", "ttl", "reason"}
	pipelineKeys = []string{"doc", "consumes", "produces", "guarantee"}
)

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlErrorLine extracts the line from a yaml.v3 error ("yaml: line 3: ...").
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
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
func (l loader) mapping(n *yaml.Node, what string, known []string, each func(key string, k, v *yaml.Node)) {
	n = deref(n)
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.r.errorf(n.Line, n.Column, CodeWrongKind, "%s must be a mapping, not %s", what, kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.r.errorf(k.Line, k.Column, CodeWrongKind, "keys in %s must be scalars, not %s", what, kindName(k))
			continue
		}
		if known != nil && !slices.Contains(known, k.Value) {
			l.r.errorf(k.Line, k.Column, CodeUnknownKey, "unknown key %q in %s%s", k.Value, what, didYouMean(k.Value, known))
			continue
		}
		each(k.Value, k, v)
	}
}

func (l loader) scalar(n *yaml.Node, what string) scalar {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.r.errorf(n.Line, n.Column, CodeWrongKind, "%s must be a scalar, not %s", what, kindName(n))
		return scalar{line: n.Line, col: n.Column}
	}
	return scalar{val: n.Value, line: n.Line, col: n.Column, set: true}
}

func (l loader) boolean(n *yaml.Node, what string) boolValue {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		l.r.errorf(n.Line, n.Column, CodeBadValue, "%s must be true or false, not %q", what, n.Value)
		return boolValue{line: n.Line, col: n.Column}
	}
	var b bool
	_ = n.Decode(&b) // tag !!bool guarantees it decodes
	return boolValue{val: b, line: n.Line, col: n.Column, set: true}
}

// scalars reads a list of scalars; a single scalar is accepted as a list of one.
func (l loader) scalars(n *yaml.Node, what string) []scalar {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []scalar{l.scalar(n, what)}
	}
	if n.Kind != yaml.SequenceNode {
		l.r.errorf(n.Line, n.Column, CodeWrongKind, "%s must be a list, not %s", what, kindName(n))
		return nil
	}
	var out []scalar
	for _, item := range n.Content {
		if s := l.scalar(item, what+" entries"); s.set {
			out = append(out, s)
		}
	}
	return out
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
		s.idemKey = l.scalars(v, "idempotency_key")
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
	e := &eventDecl{name: keyScalar(k)}
	what := fmt.Sprintf("event %s", k.Value)
	l.mapping(v, what, eventKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "doc":
			e.doc = l.scalar(v, "doc")
		case "topic":
			e.topic = l.scalar(v, "topic")
		case "fields":
			e.fieldsSet = keyScalar(k)
			e.fields = l.fields(v, what)
		default:
			l.setting(&e.settings, key, v)
		}
	})
	return e
}

func (l loader) typeDecl(k, v *yaml.Node) *typeDecl {
	t := &typeDecl{name: keyScalar(k)}
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
			t.enum = l.scalars(v, "enum")
		}
	})
	return t
}

func (l loader) fields(n *yaml.Node, owner string) []*fieldDecl {
	var out []*fieldDecl
	l.mapping(n, "fields of "+owner, nil, func(name string, k, v *yaml.Node) {
		f := &fieldDecl{name: keyScalar(k)}
		if v.Kind == yaml.MappingNode {
			l.mapping(v, "field "+name, fieldKeys, func(key string, k, v *yaml.Node) {
				switch key {
				case "type":
					f.typ = l.scalar(v, "type")
				case "optional":
					f.optional = l.boolean(v, "optional")
				case "doc":
					f.doc = l.scalar(v, "doc")
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

func (l loader) pipelineDecl(k, v *yaml.Node) *pipelineDecl {
	p := &pipelineDecl{name: keyScalar(k)}
	l.mapping(v, "pipeline "+k.Value, pipelineKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "doc":
			p.doc = l.scalar(v, "doc")
		case "consumes":
			p.consumes = l.scalar(v, "consumes")
		case "produces":
			p.produces = l.scalars(v, "produces")
		case "guarantee":
			p.guarantee = l.scalar(v, "guarantee")
		}
	})
	return p
}
