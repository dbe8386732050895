package generator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eventgen/eventgen/runtime/event"
)

// compile validates the AST and builds the IR. Every rule violation is
// reported; the IR is nil if any error was found.
func compile(f *schemaFile, r reporter) *Schema {
	c := &compiler{r: r, f: f, types: map[string]*NamedType{}, events: map[string]*Event{}}
	// A setting in defaults applies to every event, and a problem with it
	// would be found once per event: report each distinct diagnostic once.
	defer dedupDiagnostics(r.diags, len(*r.diags))
	s := c.build()
	groupEvents(s)
	c.checkIdentifiers(s.identifiers())
	c.checkTopics()
	if c.failed() {
		return nil
	}
	// Fingerprints expand named types, so they wait until recursion is ruled out.
	for _, ev := range s.Events {
		ev.Fingerprint = eventFingerprint(ev)
	}
	s.Fingerprint = schemaFingerprint(s)
	return s
}

// build turns the AST into the IR, reporting what is wrong with each value
// on the way. While the file has errors, the IR also holds the events and
// pipelines that are not mappings (the loader reported them), so that their
// names are still checked; compile then drops it.
func (c *compiler) build() *Schema {
	f := c.f
	s := &Schema{Path: f.path, Names: packageNames}
	c.header(s)
	c.declareTypes()
	c.resolveTypeFields()
	c.checkRecursion()
	for _, t := range f.types {
		if nt := c.types[t.name.val]; nt != nil {
			s.Types = append(s.Types, nt)
		}
	}
	for _, e := range f.events {
		if ev := c.event(s, e); ev != nil {
			s.Events = append(s.Events, ev)
		}
	}
	if len(f.events) == 0 && !f.unreadable && !f.eventsBad {
		c.r.errorf(f.eventsLine, f.eventsCol, CodeNoEvents, "the schema declares no events")
	}
	for _, p := range f.pipelines {
		if pl := c.pipeline(p); pl != nil {
			s.Pipelines = append(s.Pipelines, pl)
		}
	}
	return s
}

type compiler struct {
	r      reporter
	f      *schemaFile
	types  map[string]*NamedType
	decls  map[string]*typeDecl
	events map[string]*Event
	// eventTopics remembers where each event's topic and guarantee were
	// written, for the one-topic-one-guarantee check.
	eventTopics []*eventTopic
}

// dedupDiagnostics removes exact repeats among the diagnostics from index from on.
func dedupDiagnostics(diags *Diagnostics, from int) {
	seen := map[string]bool{} // Diagnostic.String names everything in it
	out := (*diags)[:from]
	for _, d := range (*diags)[from:] {
		if k := d.String(); !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	*diags = out
}

type eventTopic struct {
	ev    *Event
	topic scalar
	guar  scalar
}

func (c *compiler) failed() bool {
	for _, d := range *c.r.diags {
		if d.Severity == Error && d.Pos.File == c.r.file {
			return true
		}
	}
	return false
}

func (c *compiler) header(s *Schema) {
	f := c.f
	if f.version.set && f.version.val != "1" {
		c.r.errorf(f.version.line, f.version.col, CodeVersion, "unsupported version %q: this eventgen reads version 1", f.version.val)
	}
	if f.pkg.set {
		switch p := f.pkg.val; {
		case !isPackageName(p):
			c.r.errorf(f.pkg.line, f.pkg.col, CodePackageName, "package %q is not a valid Go package name: use lower-case letters and digits, starting with a letter", p)
		case token.IsKeyword(p):
			c.r.errorf(f.pkg.line, f.pkg.col, CodePackageName, "package %q is a Go keyword", p)
		case predeclared[p]:
			c.r.errorf(f.pkg.line, f.pkg.col, CodePackageName, "package %q would shadow Go's predeclared identifier %s", p, p)
		}
		s.Package = f.pkg.val
	}
	s.Source = s.Package
	if f.source.set {
		if strings.TrimSpace(f.source.val) == "" {
			c.r.errorf(f.source.line, f.source.col, CodeBadValue, "source must not be empty")
		}
		s.Source = f.source.val
	}
}

func isPackageName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if ch := s[i]; !('a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9') {
			return false
		}
	}
	return true
}

// checkIdentifiers reports every identifier the generated code would
// declare twice, and schema names that would take one the generated code
// declares itself. ids come in declaration order: the first one keeps the
// name.
func (c *compiler) checkIdentifiers(ids []*goIdent) {
	declared := map[string]*goIdent{}
	clashed := map[*goIdent]bool{}
	for _, id := range ids {
		switch prev, taken := declared[id.name]; {
		case id.base != nil && clashed[id.base]:
			// Names derived from a clashing name would clash again.
			clashed[id] = true
		case id.event != nil && c.types[id.event.Name] != nil:
			c.r.errorf(id.pos.Line, id.pos.Col, CodeNameCollision, "event %s has the name of a type declared in types", id.event.Name)
			clashed[id] = true
		case taken && prev.pos.Line == 0:
			c.r.errorf(id.pos.Line, id.pos.Col, CodeNameCollision, "%s becomes the Go identifier %s, which the generated code declares itself", id.what, id.name)
			clashed[id] = true
		case taken:
			c.r.errorf(id.pos.Line, id.pos.Col, CodeNameCollision, "%s becomes the Go identifier %s, already declared for %s at line %d", id.what, id.name, prev.what, prev.pos.Line)
			clashed[id] = true
		default:
			declared[id.name] = id
		}
	}
}

// at is the position of a schema value in the IR.
func (c *compiler) at(s scalar) Pos { return Pos{File: c.r.file, Line: s.line, Col: s.col} }

func (c *compiler) declareTypes() {
	c.decls = map[string]*typeDecl{}
	for _, t := range c.f.types {
		n := t.name
		if !isUpperCamel(n.val) {
			c.r.errorf(n.line, n.col, CodeTypeName, "type name %q must be UpperCamelCase (letters and digits, starting with an upper-case letter)", n.val)
			continue
		}
		nt := &NamedType{Name: n.val, GoName: camelToGo(n.val), Doc: strings.TrimSpace(t.doc.val), Pos: c.at(n)}
		switch {
		case t.enumSet.set && t.fieldsSet.set:
			c.r.errorf(t.enumSet.line, t.enumSet.col, CodeWrongKind, "type %s has both fields and enum: a type is a record or an enum", n.val)
		case t.enumSet.set:
			c.enum(nt, t)
		case !t.fieldsSet.set && !t.malformed:
			c.r.errorf(n.line, n.col, CodeMissingKey, "type %s needs fields (a record) or enum (an enum)", n.val)
		}
		nameType(nt)
		c.types[n.val] = nt
		c.decls[n.val] = t
	}
}

func (c *compiler) enum(nt *NamedType, t *typeDecl) {
	if len(t.enum) == 0 && !t.enumSet.bad {
		c.r.errorf(t.enumSet.line, t.enumSet.col, CodeEnumValue, "enum %s has no values", nt.Name)
	}
	seen := map[string]scalar{}
	goSeen := map[string]scalar{}
	nt.Values = []*EnumValue{}
	for _, v := range t.enum {
		if !isEnumValue(v.val) {
			c.r.errorf(v.line, v.col, CodeEnumValue, "enum value %q must start with a letter and use only letters, digits, '_', '-' or '.'", v.val)
			continue
		}
		if prev, ok := seen[v.val]; ok {
			c.r.errorf(v.line, v.col, CodeEnumValue, "enum value %q is repeated (first at line %d)", v.val, prev.line)
			continue
		}
		seen[v.val] = v
		ev := &EnumValue{Value: v.val, GoName: enumValueName(nt, v.val), Pos: c.at(v)}
		if prev, ok := goSeen[ev.GoName]; ok {
			c.r.errorf(v.line, v.col, CodeNameCollision, "enum value %q becomes the Go constant %s, like %q at line %d", v.val, ev.GoName, prev.val, prev.line)
			continue
		}
		goSeen[ev.GoName] = v
		nt.Values = append(nt.Values, ev)
	}
}

func isEnumValue(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return false
		}
	}
	return true
}

func (c *compiler) resolveTypeFields() {
	for _, t := range c.f.types {
		nt := c.types[t.name.val]
		if nt == nil || nt.IsEnum() || !t.fieldsSet.set {
			continue
		}
		nt.Fields = c.fields(t.fields, "type "+nt.Name, recordMethods)
	}
}

func (c *compiler) fields(decls []*fieldDecl, owner string, methods []string) []*Field {
	out := []*Field{}
	goSeen := map[string]scalar{}
	wireSeen := map[string]wireUse{}
	for _, fd := range decls {
		n := fd.name
		if !isLowerSnake(n.val) {
			c.r.errorf(n.line, n.col, CodeFieldName, "field name %q in %s must be lower_snake_case (a-z, 0-9 and single underscores, starting with a letter)", n.val, owner)
			continue
		}
		f := &Field{Pos: c.at(n), Name: n.val, Wire: n.val, GoName: snakeToCamel(n.val), Doc: strings.TrimSpace(fd.doc.val), Optional: fd.optional.val}
		if slices.Contains(methods, f.GoName) {
			// The Go name would hide a generated method: keep the wire
			// name, suffix the Go name.
			f.GoName += "_"
		}
		if prev, ok := goSeen[f.GoName]; ok {
			c.r.errorf(n.line, n.col, CodeNameCollision, "field %q in %s becomes the Go field %s, like %q at line %d", n.val, owner, f.GoName, prev.val, prev.line)
			continue
		}
		goSeen[f.GoName] = n
		if !c.wireKey(f, fd, owner, wireSeen) {
			continue
		}
		if fd.typ.set {
			f.Type = c.parseType(fd.typ)
		}
		if f.Type == nil {
			continue
		}
		out = append(out, f)
	}
	return out
}

// wireUse is where a wire key is taken: the field, and the `json` value
// that gave it (unset for a key that is the field's name).
type wireUse struct {
	field string
	pos   scalar
	json  bool
}

// wireKey sets f.Wire from the field's `json`, if it has one, and checks
// that the key is one eventgen can write (wireKeyProblem) and that no other
// field of the same event or record type reads the same key; false if not.
func (c *compiler) wireKey(f *Field, fd *fieldDecl, owner string, seen map[string]wireUse) bool {
	use := wireUse{field: f.Name, pos: fd.name}
	if fd.json.given() {
		if !fd.json.set {
			return false // reported as a wrong kind
		}
		if p := wireKeyProblem(fd.json.val); p != "" {
			c.r.errorf(fd.json.line, fd.json.col, CodeWireKey, "field %s in %s: json key %q %s", f.Name, owner, fd.json.val, p)
			return false
		}
		f.Wire = fd.json.val
		use = wireUse{field: f.Name, pos: fd.json, json: true}
	}
	if prev, ok := seen[f.Wire]; ok {
		how := func(u wireUse) string {
			if u.json {
				return fmt.Sprintf("field %s reads JSON key %q (its json)", u.field, f.Wire)
			}
			return fmt.Sprintf("field %s reads JSON key %q (its name)", u.field, f.Wire)
		}
		*c.r.diags = append(*c.r.diags, Diagnostic{
			Pos: c.at(use.pos), Severity: Error, Code: CodeWireKey,
			Message: fmt.Sprintf("%s in %s, like field %s: each field needs a JSON key of its own; give one of them another json", how(use), owner, prev.field),
			Related: []Related{{Pos: c.at(prev.pos), Message: how(prev)}},
		})
		return false
	}
	seen[f.Wire] = use
	return true
}

// wireKeyProblem says what is wrong with a `json` key, or "". Any string
// is a JSON key; eventgen takes the printable ones (letters, marks,
// numbers, punctuation, symbols and the ASCII space: unicode.IsPrint), so
// that a key reads the same in the schema, the generated code, the docs
// and a record, and no key needs more escaping than \" and \\.
func wireKeyProblem(k string) string {
	switch {
	case k == "":
		return "is empty: a field needs a JSON key; leave json out to use the field's name"
	case !utf8.ValidString(k):
		return "is not valid UTF-8"
	}
	for _, r := range k {
		if !unicode.IsPrint(r) {
			return fmt.Sprintf("contains %U, which is not printable: JSON keys must be printable characters (letters, digits, punctuation, symbols, the ASCII space)", r)
		}
	}
	return ""
}

// parseType parses a field type: a scalar name, a declared type name,
// list<T> or map<string,T>.
func (c *compiler) parseType(s scalar) *Type {
	p := typeParser{src: strings.TrimSpace(s.val)}
	t, err := p.parse(c)
	if err == "" && p.pos != len(p.src) {
		err = fmt.Sprintf("invalid type %q: unexpected %q after the type", p.src, p.src[p.pos:])
	}
	if err != "" {
		c.r.errorf(s.line, s.col, CodeUnknownType, "%s", err)
		return nil
	}
	return t
}

type typeParser struct {
	src string
	pos int
}

func (p *typeParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) {
		ch := p.src[p.pos]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_') {
			break
		}
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *typeParser) expect(ch byte) bool {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
	if p.pos < len(p.src) && p.src[p.pos] == ch {
		p.pos++
		for p.pos < len(p.src) && p.src[p.pos] == ' ' {
			p.pos++
		}
		return true
	}
	return false
}

func (p *typeParser) parse(c *compiler) (*Type, string) {
	name := p.ident()
	switch name {
	case "":
		if p.pos < len(p.src) {
			return nil, fmt.Sprintf("invalid type %q: unexpected %q", p.src, p.src[p.pos:p.pos+1])
		}
		return nil, "the type is empty"
	case "list":
		if !p.expect('<') {
			return nil, fmt.Sprintf("invalid type %q: write list<T>", p.src)
		}
		elem, err := p.parse(c)
		if err != "" {
			return nil, err
		}
		if !p.expect('>') {
			return nil, fmt.Sprintf("invalid type %q: list<T> is missing its '>'", p.src)
		}
		return &Type{Kind: KindList, Elem: elem}, ""
	case "map":
		if !p.expect('<') || p.ident() != "string" || !p.expect(',') {
			if p.src == "map<string" {
				return nil, `invalid type "map<string": inside a YAML flow mapping {...} the comma ends the value; quote the type: "map<string,T>"`
			}
			return nil, fmt.Sprintf("invalid type %q: write map<string,T> (map keys are strings)", p.src)
		}
		elem, err := p.parse(c)
		if err != "" {
			return nil, err
		}
		if !p.expect('>') {
			return nil, fmt.Sprintf("invalid type %q: map<string,T> is missing its '>'", p.src)
		}
		return &Type{Kind: KindMap, Elem: elem}, ""
	}
	if k, ok := scalarKinds[name]; ok {
		return &Type{Kind: k}, ""
	}
	if nt, ok := c.types[name]; ok {
		return &Type{Kind: KindNamed, Named: nt}, ""
	}
	for n := range c.types {
		if strings.EqualFold(n, name) {
			return nil, fmt.Sprintf("unknown type %q; did you mean %q?", name, n)
		}
	}
	if alias, ok := typeAliases[strings.ToLower(name)]; ok {
		return nil, fmt.Sprintf("unknown type %q; did you mean %q?", name, alias)
	}
	known := []string{"list", "map"}
	for n := range scalarKinds {
		known = append(known, n)
	}
	for n := range c.types {
		known = append(known, n)
	}
	slices.Sort(known)
	return nil, fmt.Sprintf("unknown type %q%s", name, didYouMean(name, known))
}

// typeAliases map type names from other languages and schema systems to
// eventgen's, for suggestions that edit distance would get wrong
// (datetime is closer to decimal than to timestamp).
var typeAliases = map[string]string{
	"boolean": "bool", "int": "int64", "integer": "int64", "long": "int64",
	"float": "float64", "double": "float64", "number": "float64",
	"str": "string", "text": "string", "binary": "bytes", "blob": "bytes",
	"guid": "uuid", "datetime": "timestamp", "date": "timestamp", "time": "timestamp",
	"instant": "timestamp", "numeric": "decimal",
	"array": "list<T>", "dict": "map<string,T>", "object": "map<string,T>",
}

// checkRecursion reports named record types that contain themselves.
func (c *compiler) checkRecursion() {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[*NamedType]int{}
	var reported = map[*NamedType]bool{}
	var visit func(nt *NamedType, path []string)
	visit = func(nt *NamedType, path []string) {
		switch state[nt] {
		case done:
			return
		case visiting:
			i := slices.Index(path, nt.Name)
			cycle := append(slices.Clone(path[i:]), nt.Name)
			if !reported[nt] {
				reported[nt] = true
				d := c.decls[nt.Name]
				c.r.errorf(d.name.line, d.name.col, CodeRecursiveType, "type %s is recursive: %s", nt.Name, strings.Join(cycle, " → "))
			}
			return
		}
		state[nt] = visiting
		for _, f := range nt.Fields {
			for t := f.Type; t != nil; t = t.Elem {
				if t.Kind == KindNamed {
					visit(t.Named, append(path, nt.Name))
				}
			}
		}
		state[nt] = done
	}
	for _, t := range c.f.types {
		if nt := c.types[t.name.val]; nt != nil {
			visit(nt, nil)
		}
	}
}

// pick returns the event's setting, or the default's when the event has none.
func pick(own, def scalar) scalar {
	if own.given() {
		return own
	}
	return def
}

func pickBool(own, def boolValue) boolValue {
	if own.set {
		return own
	}
	return def
}

var guarantees = map[string]event.Guarantee{
	"at-most-once":  event.AtMostOnce,
	"at-least-once": event.AtLeastOnce,
	"exactly-once":  event.ExactlyOnce,
}

var guaranteeNames = []string{"at-most-once", "at-least-once", "exactly-once"}

func (c *compiler) guarantee(s scalar) (event.Guarantee, bool) {
	g, ok := guarantees[s.val]
	if !ok {
		c.r.errorf(s.line, s.col, CodeBadValue, "unknown guarantee %q: want at-most-once, at-least-once or exactly-once%s", s.val, didYouMean(s.val, guaranteeNames))
	}
	return g, ok
}

func (c *compiler) duration(s scalar, what string) time.Duration {
	d, err := time.ParseDuration(s.val)
	if err != nil {
		c.r.errorf(s.line, s.col, CodeDuration, "%s %q is not a duration: use Go syntax such as 168h or 30m", what, s.val)
		return 0
	}
	if d <= 0 {
		c.r.errorf(s.line, s.col, CodeDuration, "%s must be positive, not %s", what, s.val)
		return 0
	}
	return d
}

// eventSettings are an event's settings with the defaults applied.
type eventSettings struct {
	guarantee  scalar
	key        scalar
	idemKey    []scalar
	idemKeySet scalar
	retention  scalar
	outbox     boolValue
	deprecated boolValue
	dedup      *dedupDecl
}

// resolveSettings applies the defaults to what the event leaves unset.
func (c *compiler) resolveSettings(e *eventDecl) eventSettings {
	def := c.f.defaults
	if def == nil {
		def = &settings{}
	}
	own := e.settings
	r := eventSettings{
		guarantee:  pick(own.guarantee, def.guarantee),
		key:        pick(own.key, def.key),
		idemKey:    own.idemKey,
		idemKeySet: own.idemKeySet,
		retention:  pick(own.retention, def.retention),
		outbox:     pickBool(own.outbox, def.outbox),
		deprecated: pickBool(own.deprecated, def.deprecated),
		dedup:      own.dedup,
	}
	if !own.idemKeySet.set {
		r.idemKey, r.idemKeySet = def.idemKey, def.idemKeySet
	}
	if r.dedup == nil {
		r.dedup = def.dedup
	}
	return r
}

// noIdemKey reports an event without idempotency key: one written as `[]`
// names no field, and one that could not be read was reported already.
func (s eventSettings) noIdemKey() bool { return len(s.idemKey) == 0 && !s.idemKeySet.bad }

// event builds one event: its name, its settings with defaults, its
// values, then the rules between settings.
func (c *compiler) event(s *Schema, e *eventDecl) *Event {
	n := e.name
	if !isUpperCamel(n.val) {
		c.r.errorf(n.line, n.col, CodeTypeName, "event name %q must be UpperCamelCase (letters and digits, starting with an upper-case letter)", n.val)
		return nil
	}
	ev := &Event{Name: n.val, GoName: camelToGo(n.val), Doc: strings.TrimSpace(e.doc.val), Pos: c.at(n), Version: 1}
	c.eventVersion(ev, e.version)
	nameEvent(s, ev)
	c.events[n.val] = ev
	if e.malformed {
		return ev // not a mapping: reported by the loader; its names are still checked
	}
	ev.Ignore = c.ignore(ev, e.ignore)
	set := c.resolveSettings(e)
	c.eventTopic(ev, e)
	c.eventFields(ev, e)
	c.eventGuarantee(ev, e, set.guarantee)
	c.eventKeys(ev, e, set)
	if set.retention.set {
		ev.Retention = c.duration(set.retention, "retention")
	}
	ev.Outbox = set.outbox.val
	ev.Deprecated = set.deprecated.val
	c.dedup(ev, set.dedup, n, set.noIdemKey(), set.retention)
	c.guaranteeRules(ev, set)
	c.eventPositions(ev, e, set)
	nameEventSettings(ev)
	return ev
}

// eventVersion reads the event's version: a positive integer, 1 if unset.
func (c *compiler) eventVersion(ev *Event, v scalar) {
	if !v.set {
		return // unset, or unreadable and reported by the loader
	}
	n, err := strconv.Atoi(v.val)
	if err != nil || n <= 0 || v.val[0] < '1' || v.val[0] > '9' {
		c.r.errorf(v.line, v.col, CodeEventVersion, "event %s: version %q must be a positive integer such as 2", ev.Name, v.val)
		return
	}
	ev.Version = n
}

// eventPositions records where the event's settings were written.
func (c *compiler) eventPositions(ev *Event, e *eventDecl, set eventSettings) {
	at := func(s scalar) Pos {
		if !s.given() {
			return Pos{}
		}
		return c.at(s)
	}
	atBool := func(b boolValue) Pos {
		if b.line == 0 {
			return Pos{}
		}
		return Pos{File: c.r.file, Line: b.line, Col: b.col}
	}
	ev.At = EventPositions{
		Topic: at(e.topic), Version: at(e.version), Guarantee: at(set.guarantee),
		Key: at(set.key), IdemKey: at(set.idemKeySet),
		Outbox: atBool(set.outbox), Retention: at(set.retention),
	}
	if d := set.dedup; d != nil {
		ev.At.Dedup = Pos{File: c.r.file, Line: d.line, Col: d.col}
		ev.At.DedupStore, ev.At.DedupTTL = at(d.store), at(d.ttl)
	}
}

// ignore checks an event's ignore entries and returns the rules they
// silence, or nil. Only warnings and breaking-change codes can be silenced:
// an error means the generated code would be wrong or unsafe, and a reason
// does not make it right.
func (c *compiler) ignore(ev *Event, entries []ignoreEntry) map[Code]string {
	var silenced map[Code]string
	for _, e := range entries {
		code := Code(e.code.val)
		ok := true
		switch {
		case silenceable(code):
		case codeSummaries[code] != "":
			c.r.errorf(e.code.line, e.code.col, CodeIgnore, "%s cannot be silenced on event %s: it is an error, and code generated despite it would be wrong or unsafe; only warnings and breaking-change codes (EBnnn) can be ignored", code, ev.Name)
			ok = false
		case hasBreakingForm(code):
			c.r.errorf(e.code.line, e.code.col, CodeIgnore, "unknown breaking-change code %q in ignore of event %s: eventgen breaking reports %s (docs/breaking.md lists them)%s", e.code.val, ev.Name, breakingCodeRange(), suggestCode(e.code.val))
			ok = false
		default:
			c.r.errorf(e.code.line, e.code.col, CodeIgnore, "unknown code %q in ignore of event %s: want a warning (%s) or a breaking-change code (%s)%s", e.code.val, ev.Name, strings.Join(silenceableWarnings(), ", "), breakingCodeRange(), suggestCode(e.code.val))
			ok = false
		}
		if !e.reason.set {
			continue // not a scalar: reported by the loader
		}
		reason := strings.TrimSpace(e.reason.val)
		if reason == "" {
			c.r.errorf(e.code.line, e.code.col, CodeIgnore, "ignore %s on event %s needs a reason: say why the rule does not apply to this event", e.code.val, ev.Name)
			ok = false
		}
		if ok {
			if silenced == nil {
				silenced = map[Code]string{}
			}
			silenced[code] = reason
		}
	}
	return silenced
}

// silenceableWarnings lists the warning codes, in order.
func silenceableWarnings() []string {
	var codes []string
	for c := range warningCodes {
		codes = append(codes, string(c))
	}
	slices.Sort(codes)
	return codes
}

// suggestCode suggests a code for a misspelt one: the same in upper case
// (eg024), the same number written with more or fewer digits (EG24,
// EB0018), or a warning code one edit away. Codes are numbers: one further
// away is another rule, not a typo.
func suggestCode(s string) string {
	up := strings.ToUpper(s)
	if up != s && silenceable(Code(up)) {
		return "; did you mean " + quote(up) + "?"
	}
	if c, ok := sameNumberCode(up); ok {
		return "; did you mean " + quote(string(c)) + "?"
	}
	for _, c := range silenceableWarnings() {
		if levenshtein(up, c) == 1 {
			return "; did you mean " + quote(c) + "?"
		}
	}
	return ""
}

// sameNumberCode finds the silenceable code with the prefix (EG, EB) and
// number of s, written with another count of digits: EB18 and EB0018 are
// EB018.
func sameNumberCode(s string) (Code, bool) {
	if len(s) < 3 || len(s) > 8 || (s[:2] != "EG" && s[:2] != "EB") {
		return "", false
	}
	n, err := strconv.Atoi(s[2:])
	if err != nil || n < 0 || s[2] == '+' || s[2] == '-' {
		return "", false
	}
	c := Code(fmt.Sprintf("%s%03d", s[:2], n))
	if string(c) == s || !silenceable(c) {
		return "", false
	}
	return c, true
}

// warnf reports a warning about ev, unless the event's ignore silences the
// rule. Every warning about an event goes through here, so that any
// warning can be silenced.
func (c *compiler) warnf(ev *Event, line, col int, code Code, format string, args ...any) {
	if _, silenced := ev.Ignore[code]; silenced {
		return
	}
	c.r.warnf(line, col, code, format, args...)
}

func (c *compiler) eventTopic(ev *Event, e *eventDecl) {
	if !e.topic.given() {
		c.r.errorf(e.name.line, e.name.col, CodeMissingKey, "event %s: missing required key \"topic\"", ev.Name)
	} else if msg := topicProblem(e.topic.val); e.topic.set && msg != "" {
		c.r.errorf(e.topic.line, e.topic.col, CodeTopic, "topic %q %s", e.topic.val, msg)
	}
	ev.Topic = e.topic.val
}

func (c *compiler) eventFields(ev *Event, e *eventDecl) {
	if !e.fieldsSet.set {
		c.r.errorf(e.name.line, e.name.col, CodeMissingKey, "event %s: missing required key \"fields\"", ev.Name)
	}
	ev.Fields = c.fields(e.fields, "event "+ev.Name, eventMethods)
}

func (c *compiler) eventGuarantee(ev *Event, e *eventDecl, g scalar) {
	if !g.given() {
		c.r.errorf(e.name.line, e.name.col, CodeMissingKey, "event %s: missing required key \"guarantee\" (set it on the event or in defaults)", ev.Name)
	} else if g.set {
		ev.Guarantee, _ = c.guarantee(g)
	}
	c.eventTopics = append(c.eventTopics, &eventTopic{ev: ev, topic: e.topic, guar: g})
}

// eventKeys resolves the partition key and the idempotency key fields.
func (c *compiler) eventKeys(ev *Event, e *eventDecl, set eventSettings) {
	if set.key.set {
		ev.Key = c.keyField(ev, e, set.key, "key")
	}
	seen := map[string]bool{}
	for _, k := range set.idemKey {
		if seen[k.val] {
			c.r.errorf(k.line, k.col, CodeKeyField, "idempotency_key names field %q twice", k.val)
			continue
		}
		seen[k.val] = true
		if f := c.keyField(ev, e, k, "idempotency_key"); f != nil {
			ev.IdemKey = append(ev.IdemKey, f)
		}
	}
}

// guaranteeRules checks the settings each guarantee forbids or requires
// (dedup's are in dedup).
func (c *compiler) guaranteeRules(ev *Event, set eventSettings) {
	n := ev.Pos
	switch ev.Guarantee {
	case event.AtMostOnce:
		if ev.Outbox {
			c.r.errorf(set.outbox.line, set.outbox.col, CodeAtMostOnceOutbox, "event %s is at-most-once but asks for the outbox: the outbox exists to never lose an event; use at-least-once or drop outbox", ev.Name)
		}
	case event.ExactlyOnce:
		if ev.Outbox {
			c.r.errorf(set.outbox.line, set.outbox.col, CodeExactlyOnceOutbox, "event %s is exactly-once but asks for the outbox: the relay publishes at least once (a relay that dies between publishing and deleting a row publishes it again), outside any Kafka transaction, and an exactly-once pipeline reading the event would transform the copy again; make the event at-least-once with a dedup store, or send it in the producer's transaction", ev.Name)
		}
		switch {
		case set.noIdemKey() && set.idemKeySet.set:
			c.r.errorf(set.idemKeySet.line, set.idemKeySet.col, CodeExactlyOnceIdemKey, "event %s is exactly-once but its idempotency_key is empty: name the fields that identify one logical event", ev.Name)
		case set.noIdemKey():
			c.r.errorf(n.Line, n.Col, CodeExactlyOnceIdemKey, "event %s is exactly-once but has no idempotency_key: name the fields that identify one logical event", ev.Name)
		}
	}
}

// topicProblem returns why a Kafka topic name is invalid, or "".
func topicProblem(t string) string {
	switch {
	case t == "":
		return "is empty"
	case t == "." || t == "..":
		return "is not allowed by Kafka"
	case len(t) > 245:
		return fmt.Sprintf("is %d characters long: Kafka allows 249, and eventgen needs 4 for the .dlq dead-letter topic", len(t))
	}
	for i := 0; i < len(t); i++ {
		ch := t[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			r, _ := utf8.DecodeRuneInString(t[i:])
			return fmt.Sprintf("has the character %q: Kafka topics use only a-z, A-Z, 0-9, '.', '_' and '-'", r)
		}
	}
	return ""
}

// keyField checks a key or idempotency-key field reference.
func (c *compiler) keyField(ev *Event, e *eventDecl, k scalar, what string) *Field {
	var f *Field
	for _, x := range ev.Fields {
		if x.Name == k.val {
			f = x
		}
	}
	if f == nil {
		declared := slices.ContainsFunc(e.fields, func(fd *fieldDecl) bool { return fd.name.val == k.val })
		if declared {
			return nil // the field itself was reported
		}
		names := make([]string, 0, len(ev.Fields))
		for _, x := range ev.Fields {
			names = append(names, x.Name)
		}
		c.r.errorf(k.line, k.col, CodeKeyField, "%s names field %q, which event %s does not have%s", what, k.val, ev.Name, didYouMean(k.val, names))
		return nil
	}
	if f.Optional {
		c.r.errorf(k.line, k.col, CodeKeyOptional, "%s field %q of event %s is optional: a key must always be present", what, k.val, ev.Name)
	}
	switch t := f.Type; t.Kind {
	case KindString, KindUUID, KindInt32, KindInt64:
	case KindNamed:
		if !t.Named.IsEnum() {
			c.r.errorf(k.line, k.col, CodeKeyType, "%s field %q of event %s has record type %s: keys are string, uuid, int32, int64 or an enum", what, k.val, ev.Name, t.Named.Name)
		}
	case KindTimestamp, KindFloat64, KindDuration, KindDecimal, KindBytes:
		c.r.errorf(k.line, k.col, CodeKeyUnstable, "%s field %q of event %s has type %s, which does not identify an event reliably (clocks skew, floats round, encodings vary): use a string, uuid, int32, int64 or enum field", what, k.val, ev.Name, t)
	default:
		c.r.errorf(k.line, k.col, CodeKeyType, "%s field %q of event %s has type %s: keys are string, uuid, int32, int64 or an enum", what, k.val, ev.Name, t)
	}
	f.IsKey = true
	return f
}

var dedupStores = map[string]event.DedupStore{
	"postgres": event.DedupPostgres, "redis": event.DedupRedis, "none": event.DedupNone,
}

func (c *compiler) dedup(ev *Event, d *dedupDecl, n scalar, noIdem bool, retention scalar) {
	if d == nil {
		if ev.Guarantee == event.AtLeastOnce {
			c.r.errorf(n.line, n.col, CodeDedupRequired, "event %s is at-least-once and needs dedup: {store: postgres|redis, ttl: ...} or {store: none, reason: ...} for a naturally idempotent handler", n.val)
		}
		return
	}
	if !d.store.given() {
		c.r.errorf(d.line, d.col, CodeMissingKey, "dedup: missing required key \"store\" (postgres, redis or none)")
		return
	}
	if !d.store.set {
		return // unreadable: reported by the loader
	}
	store, ok := dedupStores[d.store.val]
	if !ok {
		c.r.errorf(d.store.line, d.store.col, CodeBadValue, "unknown dedup store %q: want postgres, redis or none%s", d.store.val, didYouMean(d.store.val, []string{"postgres", "redis", "none"}))
		return
	}
	ev.Dedup = store
	if d.ttl.set {
		ev.DedupTTL = c.duration(d.ttl, "dedup.ttl")
	}
	switch store {
	case event.DedupNone:
		if !d.reason.set || strings.TrimSpace(d.reason.val) == "" {
			c.r.errorf(d.store.line, d.store.col, CodeDedupSettings, "dedup store none needs a reason: say why the handler is naturally idempotent")
		}
		ev.DedupWhy = strings.TrimSpace(d.reason.val)
	default:
		if !d.ttl.given() {
			c.r.errorf(d.store.line, d.store.col, CodeDedupSettings, "dedup store %s needs a ttl: how long processed events are remembered", d.store.val)
		}
		if noIdem && ev.Guarantee == event.AtLeastOnce {
			c.r.errorf(d.store.line, d.store.col, CodeDedupIdemKey, "dedup store %s on event %s needs idempotency_key: the fields that identify one logical event", d.store.val, ev.Name)
		}
	}
	switch ev.Guarantee {
	case event.AtMostOnce:
		if store != event.DedupNone {
			c.warnf(ev, d.store.line, d.store.col, CodeAtMostOnceDedup, "event %s is at-most-once: nothing is redelivered, so the %s dedup store only costs time", ev.Name, d.store.val)
		}
	case event.ExactlyOnce:
		if store == event.DedupRedis {
			c.r.errorf(d.store.line, d.store.col, CodeExactlyOnceRedis, "event %s is exactly-once but dedups in redis: a Redis marker lives outside the handler's transaction, so a crash between them repeats or loses the effect; use postgres", ev.Name)
		}
	}
	if ev.DedupTTL > 0 && ev.Retention > 0 && ev.DedupTTL < ev.Retention && store != event.DedupNone {
		c.warnf(ev, d.ttl.line, d.ttl.col, CodeTTLBelowRetention, "dedup.ttl %s is shorter than retention %s: a redelivery older than the ttl passes the dedup store", d.ttl.val, retention.val)
	}
}

// checkTopics reports topics shared by events with different guarantees.
func (c *compiler) checkTopics() {
	first := map[string]*eventTopic{}
	for _, et := range c.eventTopics {
		if !et.topic.set || et.ev.Guarantee == 0 {
			continue
		}
		prev, ok := first[et.topic.val]
		if !ok {
			first[et.topic.val] = et
			continue
		}
		if prev.ev.Guarantee != et.ev.Guarantee {
			c.r.errorf(et.topic.line, et.topic.col, CodeTopicGuarantee, "topic %q carries event %s (%s) and event %s (%s): one topic, one guarantee", et.topic.val, prev.ev.Name, prev.ev.Guarantee, et.ev.Name, et.ev.Guarantee)
		}
	}
}

func (c *compiler) pipeline(p *pipelineDecl) *Pipeline {
	n := p.name
	if !isUpperCamel(n.val) {
		c.r.errorf(n.line, n.col, CodeTypeName, "pipeline name %q must be UpperCamelCase (letters and digits, starting with an upper-case letter)", n.val)
		return nil
	}
	pl := &Pipeline{Name: n.val, GoName: camelToGo(n.val), Doc: strings.TrimSpace(p.doc.val), Pos: c.at(n)}
	namePipeline(pl)
	if p.malformed {
		return pl // not a mapping: reported by the loader; its names are still checked
	}
	if !p.guarantee.given() {
		c.r.errorf(n.line, n.col, CodeMissingKey, "pipeline %s: missing required key \"guarantee\"", n.val)
	} else if !p.guarantee.set {
		// unreadable: reported by the loader
	} else if g, ok := c.guarantee(p.guarantee); ok {
		pl.Guarantee = g
		if g == event.AtMostOnce {
			c.r.errorf(p.guarantee.line, p.guarantee.col, CodePipelineUnsupported, "pipeline %s is at-most-once: pipelines are at-least-once or exactly-once; consume with a consumer and produce with a producer instead", n.val)
		}
	}
	lookup := func(s scalar, what string) *Event {
		ev := c.events[s.val]
		if ev == nil {
			names := make([]string, 0, len(c.events))
			for name := range c.events {
				names = append(names, name)
			}
			slices.Sort(names)
			c.r.errorf(s.line, s.col, CodePipelineEvent, "pipeline %s %s %q, which is not a declared event%s", n.val, what, s.val, didYouMean(s.val, names))
			return nil
		}
		switch {
		case pl.Guarantee == 0 || ev.Guarantee == 0:
		case pl.Guarantee > ev.Guarantee:
			c.r.errorf(s.line, s.col, CodePipelineGuarantee, "pipeline %s is %s but the event it %s, %s, is %s: a chain is as strong as its weakest link", n.val, pl.Guarantee, what, ev.Name, ev.Guarantee)
		case what == "produces" && pl.Guarantee < ev.Guarantee:
			// An exactly-once event is only ever written in a transaction.
			c.r.errorf(s.line, s.col, CodePipelineGuarantee, "pipeline %s is %s but the event it produces, %s, is %s: exactly-once events are written only in transactions; make the pipeline exactly-once", n.val, pl.Guarantee, ev.Name, ev.Guarantee)
		}
		return ev
	}
	if !p.consumes.given() {
		c.r.errorf(n.line, n.col, CodeMissingKey, "pipeline %s: missing required key \"consumes\"", n.val)
	} else if p.consumes.set {
		pl.Consumes = lookup(p.consumes, "consumes")
	}
	switch {
	case !p.producesSet.given():
		c.r.errorf(n.line, n.col, CodeMissingKey, "pipeline %s: missing required key \"produces\" (a list of events)", n.val)
	case len(p.produces) == 0 && !p.producesSet.bad:
		c.r.errorf(p.producesSet.line, p.producesSet.col, CodeMissingKey, "pipeline %s: produces is empty: name the events it produces", n.val)
	}
	seen := map[string]bool{}
	for _, s := range p.produces {
		if seen[s.val] {
			// The generated emitter has one Emit method per event.
			c.r.errorf(s.line, s.col, CodePipelineEvent, "pipeline %s produces %q twice", n.val, s.val)
			continue
		}
		seen[s.val] = true
		if ev := lookup(s, "produces"); ev != nil {
			pl.Produces = append(pl.Produces, ev)
		}
	}
	return pl
}

// typeShape writes the canonical shape of a type, expanding named types, for
// fingerprints: two schemas with equal shapes have equal wire formats.
func typeShape(b *strings.Builder, t *Type) {
	switch t.Kind {
	case KindList:
		b.WriteString("list<")
		typeShape(b, t.Elem)
		b.WriteString(">")
	case KindMap:
		b.WriteString("map<string,")
		typeShape(b, t.Elem)
		b.WriteString(">")
	case KindNamed:
		if t.Named.IsEnum() {
			b.WriteString("enum[")
			for i, v := range t.Named.Values {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(v.Value)
			}
			b.WriteString("]")
			return
		}
		fieldsShape(b, t.Named.Fields)
	default:
		b.WriteString(t.String())
	}
}

func fieldsShape(b *strings.Builder, fields []*Field) {
	b.WriteString("{")
	for _, f := range fields {
		// The wire key, not the schema name: the fingerprint is of what
		// records carry, and a rename that keeps the key changes nothing.
		b.WriteString(f.Wire)
		if f.Optional {
			b.WriteString("?")
		}
		b.WriteString(":")
		typeShape(b, f.Type)
		b.WriteString(";")
	}
	b.WriteString("}")
}

func eventFingerprint(ev *Event) string {
	var b strings.Builder
	b.WriteString(ev.Name)
	fieldsShape(&b, ev.Fields)
	return hash(b.String())
}

func schemaFingerprint(s *Schema) string {
	var b strings.Builder
	b.WriteString(s.Package)
	for _, ev := range s.Events {
		b.WriteString("|" + ev.Topic + "|" + ev.Guarantee.String() + "|" + ev.Fingerprint)
	}
	return hash(b.String())
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:16])
}
