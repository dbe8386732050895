package runtime_test

import (
	"testing"

	"github.com/eventgen/eventgen/generator"
	"github.com/eventgen/eventgen/runtime"
)

// TestRuntimeMirror keeps the generator's copies of runtime constants in step.
func TestRuntimeMirror(t *testing.T) {
	if generator.GenVersion < runtime.MinVersion || generator.GenVersion > runtime.MaxVersion {
		t.Errorf("generator.GenVersion %d outside the runtime's [%d, %d]", generator.GenVersion, runtime.MinVersion, runtime.MaxVersion)
	}
	for _, g := range []generator.Guarantee{generator.AtMostOnce, generator.AtLeastOnce, generator.ExactlyOnce} {
		if g.String() != runtime.Guarantee(g).String() {
			t.Errorf("guarantee %d: generator %q, runtime %q", g, g, runtime.Guarantee(g))
		}
	}
	for _, s := range []generator.DedupStore{generator.DedupNone, generator.DedupPostgres, generator.DedupRedis} {
		if s.String() != runtime.DedupStore(s).String() {
			t.Errorf("dedup store %d: generator %q, runtime %q", s, s, runtime.DedupStore(s))
		}
	}
}
