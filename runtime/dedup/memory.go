package dedup

import (
	"context"
	"sync"
	"time"
)

// DefaultMemoryTTL is how long Memory remembers a key when neither the item
// nor NewMemory sets a TTL.
const DefaultMemoryTTL = 24 * time.Hour

// Memory is an in-process Store and OffsetStore (and their Batch forms),
// for tests and demos: keys
// and offsets live in a map guarded by a mutex and are lost with the
// process. It passes handlers the zero value of T (a nil pgx.Tx for a
// Memory[pgx.Tx]), so their effects are not atomic with anything: use it
// where the handler's effects are in memory too. A key being handled by
// one Process call is Busy for the others until that handler returns.
type Memory[T any] struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	keys    map[Key]memEntry
	offsets map[Partition]int64
	parts   map[Partition]*sync.Mutex // serialises ProcessAt per partition
}

type memEntry struct {
	done    bool      // false: a Handle is running (a lease)
	expires time.Time // of a done entry
}

// NewMemory returns an empty Memory store whose keys expire ttl after their
// handler succeeded, unless the item sets its own TTL. ttl ≤ 0 means
// DefaultMemoryTTL.
func NewMemory[T any](ttl time.Duration) *Memory[T] {
	return &Memory[T]{
		ttl: TTLOr(ttl, DefaultMemoryTTL), now: time.Now,
		keys: map[Key]memEntry{}, offsets: map[Partition]int64{}, parts: map[Partition]*sync.Mutex{},
	}
}

// Process implements Store.
func (m *Memory[T]) Process(ctx context.Context, batch []Item[T]) error {
	return m.process(ctx, batch, nil, nil)
}

// ProcessBatch implements BatchStore: handle runs one item at a time
// (Memory has no transactions to roll a larger call back).
func (m *Memory[T]) ProcessBatch(ctx context.Context, batch []Item[T], handle BatchFunc[T]) error {
	return m.process(ctx, batch, nil, handle)
}

// process is Process for the items not marked in decided (nil: all), in
// place and in order; with handle, it is ProcessBatch.
func (m *Memory[T]) process(ctx context.Context, batch []Item[T], decided []bool, handle BatchFunc[T]) error {
	first := MarkRepeats(batch)
	stopped := false // ProcessBatch: an item failed, the later ones wait
	for i := range batch {
		if decided != nil && decided[i] {
			continue
		}
		it := &batch[i]
		it.Outcome, it.Err = Pending, nil
		if j := first[i]; j >= 0 {
			it.Outcome = ResolveRepeat(batch[j].Outcome)
			continue
		}
		if err := ctx.Err(); err != nil {
			return err // the rest stay Pending
		}
		if it.Handle == nil {
			it.Outcome, it.Err = Failed, ErrNoHandle
			continue
		}
		if stopped {
			if m.recorded(it.Key) {
				it.Outcome = Duplicate
			}
			continue
		}
		if o, ok := m.lease(it.Key); !ok {
			it.Outcome = o
			continue
		}
		var zero T
		var err error
		if handle != nil {
			err = handle(ctx, zero, []int{i})
		} else {
			err = it.Handle(ctx, zero)
		}
		m.mu.Lock()
		if err != nil {
			delete(m.keys, it.Key)
			it.Outcome, it.Err = Failed, err
			stopped = handle != nil
		} else {
			m.keys[it.Key] = memEntry{done: true, expires: m.now().Add(TTLOr(it.TTL, m.ttl))}
			it.Outcome = Handled
		}
		m.mu.Unlock()
	}
	return nil
}

// lease takes key for a handler run; when it cannot, it returns the
// item's outcome (Duplicate or Busy).
func (m *Memory[T]) lease(k Key) (Outcome, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[k]
	switch {
	case ok && !e.done:
		return Busy, false
	case ok && m.now().Before(e.expires):
		return Duplicate, false
	}
	m.keys[k] = memEntry{}
	return Pending, true
}

// recorded reports whether key is recorded as done and not expired.
func (m *Memory[T]) recorded(k Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[k]
	return ok && e.done && m.now().Before(e.expires)
}

// LoadOffsets implements OffsetStore.
func (m *Memory[T]) LoadOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]int64{}
	for p, off := range m.offsets {
		if p.Group == group && p.Topic == topic {
			out[p.Partition] = off
		}
	}
	return out, nil
}

// ProcessAt implements OffsetStore. Calls for one partition are
// serialised, as a database row lock would.
func (m *Memory[T]) ProcessAt(ctx context.Context, at Partition, batch []Item[T], offsets []int64) (int64, error) {
	return m.processAt(ctx, at, batch, offsets, nil)
}

// ProcessBatchAt implements BatchOffsetStore (see ProcessBatch).
func (m *Memory[T]) ProcessBatchAt(ctx context.Context, at Partition, batch []Item[T], offsets []int64, handle BatchFunc[T]) (int64, error) {
	return m.processAt(ctx, at, batch, offsets, handle)
}

func (m *Memory[T]) processAt(ctx context.Context, at Partition, batch []Item[T], offsets []int64, handle BatchFunc[T]) (int64, error) {
	m.mu.Lock()
	pm := m.parts[at]
	if pm == nil {
		pm = &sync.Mutex{}
		m.parts[at] = pm
	}
	m.mu.Unlock()
	pm.Lock()
	defer pm.Unlock()
	m.mu.Lock()
	stored, ok := m.offsets[at]
	m.mu.Unlock()
	if !ok {
		stored = -1
	}
	if len(offsets) != len(batch) {
		return stored, ErrOffsets(len(batch), len(offsets))
	}
	decided := make([]bool, len(batch))
	for i := range batch {
		batch[i].Outcome, batch[i].Err = Pending, nil
		switch {
		case offsets[i] < stored:
			batch[i].Outcome, decided[i] = Duplicate, true
		case batch[i].Handle == nil:
			batch[i].Outcome, decided[i] = Handled, true
		}
	}
	if err := m.process(ctx, batch, decided, handle); err != nil {
		return stored, err
	}
	next := NextOffset(batch, offsets, stored)
	m.mu.Lock()
	m.offsets[at] = next
	m.mu.Unlock()
	return next, nil
}
