package generator

// The AST is the schema as written, with a position on every value, before
// defaults are applied and names are resolved. load.go builds it from YAML;
// compile.go turns it into the IR.

// scalar is a YAML scalar with its position; set is false when the key was
// absent or its value unreadable. bad is true when the key was written but
// its value was reported as malformed: checks for a missing key skip it.
type scalar struct {
	val       string
	line, col int
	set       bool
	bad       bool
}

// given reports whether the key was written, readable or not.
func (s scalar) given() bool { return s.set || s.bad }

type boolValue struct {
	val       bool
	line, col int
	set       bool
}

type schemaFile struct {
	path      string
	version   scalar
	pkg       scalar
	source    scalar
	defaults  *settings
	types     []*typeDecl
	events    []*eventDecl
	pipelines []*pipelineDecl
	// eventsLine/eventsCol locate the `events` key, or the file start.
	eventsLine, eventsCol int
	// unreadable: the file is not YAML or not a mapping; eventsBad: events
	// is not a mapping. Both were reported; "no events" would only repeat it.
	unreadable, eventsBad bool
}

// settings are the event keys that `defaults` may also carry.
type settings struct {
	guarantee  scalar
	key        scalar
	idemKey    []scalar
	idemKeySet scalar // position of the idempotency_key entry; bad if unreadable
	dedup      *dedupDecl
	outbox     boolValue
	retention  scalar
	deprecated boolValue
}

type dedupDecl struct {
	line, col int
	store     scalar
	ttl       scalar
	reason    scalar
}

type eventDecl struct {
	name scalar
	doc  scalar
	// topic, fields and settings as written on the event itself.
	topic     scalar
	version   scalar
	settings  settings
	fields    []*fieldDecl
	fieldsSet scalar
	// ignore are the rules silenced for this event, as written.
	ignore []ignoreEntry
	// malformed: the event is not a mapping (reported); skip missing-key checks.
	malformed bool
}

// ignoreEntry is one entry of an event's ignore: a code and why it is
// silenced. reason is set and empty for `EG024:` with no reason, so that
// the compiler reports it as a missing reason, not a wrong kind.
type ignoreEntry struct {
	code   scalar
	reason scalar
}

type typeDecl struct {
	name      scalar
	doc       scalar
	fields    []*fieldDecl
	fieldsSet scalar
	enum      []scalar
	enumSet   scalar // bad if the enum list was unreadable
	malformed bool   // not a mapping (reported)
}

type fieldDecl struct {
	name     scalar
	typ      scalar
	optional boolValue
	doc      scalar
	// json is the wire key, when the field names one; the long form only.
	json scalar
}

type pipelineDecl struct {
	name        scalar
	doc         scalar
	consumes    scalar
	produces    []scalar
	producesSet scalar // bad if the produces list was unreadable
	guarantee   scalar
	malformed   bool // not a mapping (reported)
}
