package dedup_test

import (
	"context"
	"maps"
	"sync"
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

func TestMemoryBatch(t *testing.T) {
	deduptest.RunBatch(t, func(t *testing.T) deduptest.BatchHarness[dedup.NoTx] {
		var mu sync.Mutex
		effects := map[string]int{}
		return deduptest.BatchHarness[dedup.NoTx]{
			Store: dedup.NewMemory[dedup.NoTx](0),
			Apply: func(_ context.Context, _ dedup.NoTx, ids []string) error {
				mu.Lock()
				defer mu.Unlock()
				for _, id := range ids {
					effects[id]++
				}
				return nil
			},
			Effects: func(*testing.T) map[string]int {
				mu.Lock()
				defer mu.Unlock()
				return maps.Clone(effects)
			},
		}
	})
}
