package dedup_test

import (
	"testing"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/deduptest"
)

func TestMemoryConformance(t *testing.T) {
	deduptest.Run(t, func(t *testing.T) deduptest.Harness[dedup.NoTx] {
		return deduptest.Harness[dedup.NoTx]{Store: dedup.NewMemory[dedup.NoTx](0)}
	})
}

func TestMemoryOffsets(t *testing.T) {
	deduptest.RunOffsets(t, func(t *testing.T) dedup.OffsetStore[dedup.NoTx] {
		return dedup.NewMemory[dedup.NoTx](0)
	})
}
