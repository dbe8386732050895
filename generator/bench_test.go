package generator

import (
	"fmt"
	"strings"
	"testing"
)

// bigSchema is a schema of n events cycling through every guarantee, with
// fields of every kind, records, enums and pipelines: a large service's
// worth of events, to measure the whole pipeline.
func bigSchema(n int) []byte {
	var b strings.Builder
	b.WriteString("version: 1\npackage: big\nsource: example.com/big\ndefaults:\n  retention: 168h\n")
	b.WriteString("types:\n")
	b.WriteString("  Money:\n    fields:\n      cents: int64\n      currency: string\n")
	b.WriteString("  Point:\n    fields:\n      lat: float64\n      lng: float64\n      label: {type: string, optional: true}\n")
	b.WriteString("  Level:\n    enum: [low, mid-range, HIGH, v1.2]\n")
	b.WriteString("  Status:\n    enum: [pending, paid, shipped, cancelled]\n")
	b.WriteString("events:\n")
	for i := range n {
		fmt.Fprintf(&b, "  Event%d:\n    doc: Event number %d.\n    topic: big.topic%d\n    key: id\n", i, i, i)
		switch i % 3 {
		case 0:
			b.WriteString("    guarantee: at-most-once\n")
		case 1:
			b.WriteString("    guarantee: at-least-once\n    idempotency_key: [id, seq]\n    dedup: {store: postgres, ttl: 336h}\n")
		case 2:
			b.WriteString("    guarantee: exactly-once\n    idempotency_key: [id]\n    dedup: {store: none, reason: Upserted by id.}\n")
		}
		// Four fields every event has, four more taken in turn from the
		// other kinds, so that the schema has fields of every kind.
		b.WriteString("    fields:\n      id: uuid\n      seq: int32\n      name: string\n      at: timestamp\n")
		for j := range 4 {
			fmt.Fprintf(&b, "      f%d: %s\n", j, otherKinds[(i*4+j)%len(otherKinds)])
		}
	}
	b.WriteString("pipelines:\n")
	for i := 2; i+3 < n; i += 30 {
		fmt.Fprintf(&b, "  Pipe%d:\n    consumes: Event%d\n    produces: [Event%d]\n    guarantee: exactly-once\n", i, i, i+3)
	}
	return []byte(b.String())
}

var otherKinds = []string{
	"int64", "bool", "float64", "bytes", "duration", "decimal", "Level", "Status", "Money",
	"{type: Point, optional: true}", "list<uuid>", `"map<string,decimal>"`, "list<Money>",
	"{type: string, optional: true, doc: Free text.}", "{type: timestamp, optional: true}",
}

// BenchmarkGenerate1000Events runs the whole pipeline (load, compile, emit,
// format) on a 1,000-event schema: what `eventgen generate` does minus the
// disk writes.
func BenchmarkGenerate1000Events(b *testing.B) {
	inputs := []Input{{Path: "big.yaml", Data: bigSchema(1000)}}
	files, diags := Generate(inputs, Options{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	lines := 0
	for _, f := range files {
		lines += strings.Count(string(f.Data), "\n")
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if _, diags := Generate(inputs, Options{}); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
	// On a shared machine wall time depends on the neighbours; the CPU
	// time the process used is the work itself.
	if cpu >= 0 {
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	}
	b.ReportMetric(float64(lines), "lines/op")
}
