package generator

// The AST is the schema as written, with a position on every value, before
// defaults are applied and names are resolved. load.go builds it from YAML;
// compile.go turns it into the IR.

// scalar is a YAML scalar with its position; set is false when the key was absent.
type scalar struct {
	val       string
	line, col int
	set       bool
}

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
}

// settings are the event keys that `defaults` may also carry.
type settings struct {
	guarantee  scalar
	key        scalar
	idemKey    []scalar
	idemKeySet scalar // position of the idempotency_key entry
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
	settings  settings
	fields    []*fieldDecl
	fieldsSet scalar
}

type typeDecl struct {
	name      scalar
	doc       scalar
	fields    []*fieldDecl
	fieldsSet scalar
	enum      []scalar
	enumSet   scalar
}

type fieldDecl struct {
	name     scalar
	typ      scalar
	optional boolValue
	doc      scalar
}

type pipelineDecl struct {
	name      scalar
	doc       scalar
	consumes  scalar
	produces  []scalar
	guarantee scalar
}
