package runtime

// EnforceVersion is used by generated code to check, at compile time, that
// the generated code and this package are compatible, in the spirit of
// protobuf-go's protoimpl.EnforceVersion. Generated files contain
//
//	const (
//		_ = runtime.EnforceVersion(GenVersion - runtime.MinVersion)
//		_ = runtime.EnforceVersion(runtime.MaxVersion - GenVersion)
//	)
//
// A negative constant cannot be converted to an unsigned type, so a file
// generated for a runtime that is too old or too new fails to compile on the
// line that names the problem. The fix is to regenerate with an eventgen
// whose version matches the imported runtime module.
type EnforceVersion uint

const (
	// GenVersion is the version of the code the generator in this module emits.
	GenVersion = 1
	// MinVersion is the oldest generated-code version this runtime supports.
	MinVersion = 1
	// MaxVersion is the newest generated-code version this runtime supports.
	MaxVersion = 1
)
