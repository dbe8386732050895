// Command eventgen generates typed Go producers, consumers and event types
// from YAML event schemas, and checks that committed generated code is current.
//
// Usage:
//
//	eventgen generate [-out DIR] schema.yaml...   write generated files (only those that changed)
//	eventgen check schema.yaml...                 validate and lint, write nothing
//	eventgen diff [-out DIR] schema.yaml...       exit 1 and print a diff if generated code is stale
//	eventgen breaking --against REF [--mode backward|forward|full] schema.yaml...
//	                                              exit 1 on changes that break consumers
//	eventgen jsonschema                           print the JSON Schema of the schema language
//	eventgen asyncapi [-out FILE] schema.yaml     print (or write to FILE) the AsyncAPI 3.0.0 document, as YAML
//	eventgen relay --postgres URL --brokers HOST:PORT[,...]
//	                                              publish the transactional outbox to Kafka
//	eventgen relay retry|quarantined --postgres URL ...
//	                                              release or list quarantined outbox rows
//	eventgen version                              print the version
//
// The JSON Schema lets editors complete and check schemas as people type: a
// schema whose first line is
//
//	# yaml-language-server: $schema=path/to/eventgen.schema.json
//
// is validated by the YAML extensions built on yaml-language-server. The
// repository ships it as schemas/eventgen.schema.json; `eventgen jsonschema >
// .eventgen.schema.json` vendors it. It checks structure; check does the rest.
//
// Diagnostics go to stderr as `path:line:col: error: message [EGnnn]`. The
// exit status is 0 on success, 1 on schema errors or stale output, 2 on
// usage errors.
//
// relay runs the transactional outbox's relay (runtime/outbox) until it is
// interrupted, with a progress line on a terminal; relay retry releases
// rows quarantined after repeated failures, relay quarantined lists them.
// The password of --postgres never appears in their output. docs/outbox.md
// describes the outbox.
//
// breaking compares each schema with its old version at REF: a file, a
// directory holding the old schemas at the same relative paths, or a git
// revision (main, origin/main, HEAD~1, a commit) read with git show. The
// mode is Confluent Schema Registry's: backward (the default; consumers
// built from the new schema read old records), forward (old consumers read
// new records) or full (both). Findings are `EBnnn` diagnostics pointing at
// the new and the old position; docs/breaking.md lists the rules.
//
// generate, check, diff and breaking take -format text|json|github: text
// is the output above; json is one JSON document on stdout, with the stale
// files and their diffs for diff; github is GitHub Actions workflow
// commands on stdout (::error file=F,line=L,col=C,title=EG012::message),
// which the runner shows on the lines of a pull request. With -strict,
// warnings are errors: the exit status is 1 and nothing is written. From
// go generate:
//
//	//go:generate go run github.com/eventgen/eventgen/cmd/eventgen generate orders.yaml
package main

import (
	"os"
	"runtime/debug"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// eventgen runs for a moment and most of what it allocates
		// (jennifer trees, syntax trees for go/format) is garbage soon:
		// collecting a quarter as often saves about a quarter of the CPU
		// time of a large schema, for a heap that stays in the hundreds
		// of MB even then. GOGC set by the user wins.
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
