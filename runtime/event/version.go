package event

// EnforceVersion is used by generated code to check, at compile time, that
// the generated code and this module are compatible, in the spirit of
// protobuf-go's protoimpl.EnforceVersion. Generated files contain
//
//	const (
//		_ = event.EnforceVersion(4 - event.MinVersion)
//		_ = event.EnforceVersion(event.MaxVersion - 4)
//	)
//
// A negative constant cannot be converted to an unsigned type, so a file
// generated for a runtime that is too old or too new fails to compile on the
// line that names the problem. The fix is to regenerate with the eventgen of
// the github.com/eventgen/eventgen module that the service's go.mod names.
type EnforceVersion uint

const (
	// GenVersion is the version of the code the generator in this module
	// emits. Version 2 split the runtime into runtime/event and
	// runtime/kafka and gave NewProducer one signature for every schema;
	// version 3 declares the schema's events to consumers and pipelines
	// (kafka.DeclareEvents, PipelineConfig.Events) for routing by ce_type;
	// version 4 registers each event with its dedup store
	// (kafka.HandleDeduped, kafka.HandleExactlyOnce, <schema>_postgres.gen.go).
	GenVersion = 4
	// MinVersion is the oldest generated-code version this runtime supports.
	// Version 2 code still runs: without the declared events, records of the
	// schema's other events on a topic are dead-lettered as unknown rather
	// than skipped.
	MinVersion = 2
	// MaxVersion is the newest generated-code version this runtime supports.
	MaxVersion = 4
)
