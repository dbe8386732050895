package generator

import (
	"bytes"
	_ "embed"
)

// jsonSchema is the JSON Schema of the schema language. The copy that
// editors point at, schemas/eventgen.schema.json, is `eventgen jsonschema`'s
// output; a test in cmd/eventgen keeps the two byte-identical.
//
//go:embed eventgen.schema.json
var jsonSchema []byte

// JSONSchema returns the JSON Schema (draft-07) of the YAML schema language,
// for editors (yaml-language-server) and other validators. It checks what a
// JSON Schema can: the keys of every mapping, which values are mappings,
// lists or scalars, required keys, the guarantee and dedup store values,
// booleans, and the patterns of names, topics, durations and field types.
// Rules between values (keys naming declared fields, guarantees and the
// settings they require, Go name collisions, recursive types) are left to
// Check. The caller may modify the returned slice.
func JSONSchema() []byte { return bytes.Clone(jsonSchema) }
