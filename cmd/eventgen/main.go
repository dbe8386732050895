// Command eventgen generates typed Go producers, consumers and event types
// from YAML event schemas, and checks that committed generated code is current.
//
// Usage:
//
//	eventgen generate [-out DIR] schema.yaml...   write generated files (only those that changed)
//	eventgen check schema.yaml...                 validate and lint, write nothing
//	eventgen diff [-out DIR] schema.yaml...       exit 1 and print a diff if generated code is stale
//	eventgen version                              print the version
//
// Diagnostics go to stderr as `path:line:col: error: message [EGnnn]`. The
// exit status is 0 on success, 1 on schema errors or stale output, 2 on
// usage errors. From go generate:
//
//	//go:generate go run github.com/eventgen/eventgen/cmd/eventgen generate orders.yaml
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
