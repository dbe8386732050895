package kafka

import (
	"context"
	"errors"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/dedup"
)

// work is one consumed record on its way through its event's store.
type work struct {
	m    *sarama.ConsumerMessage
	name string // the event's name, for metrics and logs
	key  dedup.Key
	ttl  time.Duration
	// attempt is the handler run this round makes, 1-based.
	attempt int
	store   storeAdapter
	// run runs the handler with the store's transaction (nil without
	// one). A nil run is a record to pass without effects: skipped, or
	// dead-lettered before it reached a handler.
	run func(ctx context.Context, tx any) error
	// batch, for an event registered with a batch handler, runs the
	// handler of consecutive records of the event in one call (see
	// handlers.many); val and rec are what it passes for this record.
	batch *batchRunner
	val   any
	rec   Record

	outcome dedup.Outcome // of the last round
	err     error         // the handler's, when outcome is Failed
	waiting bool          // not run: an earlier record of its Kafka key is not done
	// finished: nothing more to do for the record before its offset may
	// pass (handled, duplicate, skipped, dead-lettered).
	finished bool
}

// handleFunc runs the handler of the round's i-th record with the store's
// transaction; outcome(j) is what the store decided for record j < i.
type handleFunc func(ctx context.Context, i int, tx any, outcome func(j int) dedup.Outcome) error

// manyFunc runs the handlers of the round's records idx (ascending, every
// earlier record done) with the store's transaction in one call: a
// dedup.BatchFunc without its type.
type manyFunc func(ctx context.Context, tx any, idx []int) error

// handlers are the two ways a store call runs a round's handlers: one
// record at a time (dedup.Store.Process) or many at once
// (dedup.BatchStore.ProcessBatch, for records with a batch handler).
type handlers struct {
	one  handleFunc
	many manyFunc
}

// batchRunner runs one event's batch handler on records of that event.
// Records of one registration share one runner (compared by pointer).
type batchRunner struct {
	run func(ctx context.Context, tx any, ws []*work) error
}

// anyBatch reports whether a record of ws has a batch handler.
func anyBatch(ws []*work) bool {
	for _, w := range ws {
		if w.batch != nil {
			return true
		}
	}
	return false
}

// storeAdapter hides the store's transaction type from the consumer's
// loops: typedStore for the dedup stores, everyDelivery for events
// without one.
type storeAdapter interface {
	// process runs ws through dedup.Store.Process, setting each outcome.
	// With records that have a batch handler and a store that is a
	// dedup.BatchStore, it runs them through ProcessBatch with hs.many.
	process(ctx context.Context, ws []*work, hs handlers) error
	// processAt runs ws through dedup.OffsetStore.ProcessAt (or
	// BatchOffsetStore.ProcessBatchAt, as process does).
	processAt(ctx context.Context, at dedup.Partition, ws []*work, hs handlers) (int64, error)
	loadOffsets(ctx context.Context, group, topic string) (map[int32]int64, error)
	// same reports whether other wraps the same store: consecutive
	// records of one store go to it in one call.
	same(other storeAdapter) bool
	// passes reports whether records without effects (skipped,
	// dead-lettered) go through the store so that their offsets are
	// stored there: exactly-once stores.
	passes() bool
}

// typedStore adapts a dedup.Store[Tx] (and its OffsetStore, for
// exactly-once handlers; their Batch forms when the store has them).
type typedStore[Tx any] struct {
	s       dedup.Store[Tx]
	offsets dedup.OffsetStore[Tx]
	batch   dedup.BatchStore[Tx]       // s, if it is one
	batchAt dedup.BatchOffsetStore[Tx] // offsets, if it is one
}

// newTypedStore adapts s, and offsets when not nil (they are the same
// store).
func newTypedStore[Tx any](s dedup.Store[Tx], offsets dedup.OffsetStore[Tx]) *typedStore[Tx] {
	a := &typedStore[Tx]{s: s, offsets: offsets}
	a.batch, _ = s.(dedup.BatchStore[Tx])
	if offsets != nil {
		a.batchAt, _ = offsets.(dedup.BatchOffsetStore[Tx])
	}
	return a
}

func batchFunc[Tx any](many manyFunc) dedup.BatchFunc[Tx] {
	return func(ctx context.Context, tx Tx, run []int) error { return many(ctx, tx, run) }
}

func (a *typedStore[Tx]) items(ws []*work, handle handleFunc) []dedup.Item[Tx] {
	items := make([]dedup.Item[Tx], len(ws))
	outcome := func(j int) dedup.Outcome { return items[j].Outcome }
	for i, w := range ws {
		items[i] = dedup.Item[Tx]{Key: w.key, TTL: w.ttl}
		if w.run != nil {
			items[i].Handle = func(ctx context.Context, tx Tx) error { return handle(ctx, i, tx, outcome) }
		}
	}
	return items
}

func copyOutcomes[Tx any](ws []*work, items []dedup.Item[Tx]) {
	for i, w := range ws {
		w.outcome, w.err = items[i].Outcome, items[i].Err
	}
}

func (a *typedStore[Tx]) process(ctx context.Context, ws []*work, hs handlers) error {
	items := a.items(ws, hs.one)
	var err error
	if a.batch != nil && anyBatch(ws) {
		err = a.batch.ProcessBatch(ctx, items, batchFunc[Tx](hs.many))
	} else {
		err = a.s.Process(ctx, items)
	}
	copyOutcomes(ws, items)
	return err
}

func (a *typedStore[Tx]) processAt(ctx context.Context, at dedup.Partition, ws []*work, hs handlers) (int64, error) {
	items := a.items(ws, hs.one)
	offsets := make([]int64, len(ws))
	for i, w := range ws {
		offsets[i] = w.m.Offset
	}
	var next int64
	var err error
	if a.batchAt != nil && anyBatch(ws) {
		next, err = a.batchAt.ProcessBatchAt(ctx, at, items, offsets, batchFunc[Tx](hs.many))
	} else {
		next, err = a.offsets.ProcessAt(ctx, at, items, offsets)
	}
	copyOutcomes(ws, items)
	return next, err
}

func (a *typedStore[Tx]) passes() bool { return a.offsets != nil }

func (a *typedStore[Tx]) loadOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	return a.offsets.LoadOffsets(ctx, group, topic)
}

func (a *typedStore[Tx]) same(other storeAdapter) (same bool) {
	o, ok := other.(*typedStore[Tx])
	if !ok {
		return false
	}
	defer func() {
		if recover() != nil { // a store of an incomparable type is only itself
			same = a == o
		}
	}()
	return any(a.s) == any(o.s)
}

// errNoOffsets: only exactly-once handlers' stores keep offsets, and
// registration gives them one.
var errNoOffsets = errors.New("eventgen: this store keeps no offsets")

// everyDelivery is the store of events whose schema says dedup store none:
// it remembers nothing, so every delivery runs the handler.
type everyDelivery struct{}

func (everyDelivery) process(ctx context.Context, ws []*work, hs handlers) error {
	handle := hs.one
	outcome := func(j int) dedup.Outcome { return ws[j].outcome }
	for i, w := range ws {
		w.outcome, w.err = dedup.Pending, nil
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := handle(ctx, i, nil, outcome); err != nil {
			w.outcome, w.err = dedup.Failed, err
			continue
		}
		w.outcome = dedup.Handled
	}
	return nil
}

func (everyDelivery) processAt(context.Context, dedup.Partition, []*work, handlers) (int64, error) {
	return -1, errNoOffsets
}

func (everyDelivery) loadOffsets(context.Context, string, string) (map[int32]int64, error) {
	return nil, errNoOffsets
}

func (everyDelivery) passes() bool { return false }

// same is false: records without a store are run one per call (see
// settle).
func (everyDelivery) same(storeAdapter) bool { return false }
