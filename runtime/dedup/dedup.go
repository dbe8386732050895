// Package dedup makes at-least-once deliveries effectively-once: a Store
// remembers which events a consumer group has processed and runs a handler
// only for events it has not seen. It holds the Store contract, the Memory
// store (for tests and demos) and the types the Kafka consumer and the
// stores share; the stores that persist live in packages of their own, each
// with its client: pgdedup (PostgreSQL, pgx) and redisdedup (Redis,
// go-redis). deduptest is the conformance suite every store passes.
//
// A store is generic over what handlers write their effects through: a
// PostgreSQL store passes the transaction in which it records the key
// (dedup.Store[pgx.Tx]), so that effects and "processed" commit together;
// stores without transactions pass NoTx. docs/dedup.md says how to choose a
// store, what each promises and which crashes can still repeat an effect.
//
// The package imports the standard library only.
package dedup

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Key identifies one logical event in the scope of one consumer group: a
// redelivery of the event has the same Key, the same event consumed by
// another group does not.
type Key struct {
	// Group is the consumer group.
	Group string
	// Event is the event's type name, e.g. "OrderPlaced".
	Event string
	// ID is the event's idempotency key (the schema's idempotency_key
	// fields, joined).
	ID string
}

// String returns the key as group/event/id, for logs.
func (k Key) String() string { return k.Group + "/" + k.Event + "/" + k.ID }

// Outcome is what Process did with an Item.
type Outcome int

const (
	// Pending: Handle did not run in this call, or its effects were rolled
	// back (a store error, or an earlier item of the batch with the same key
	// did not succeed). Process the item again later.
	Pending Outcome = iota
	// Handled: Handle ran and returned nil, and the key is recorded.
	Handled
	// Duplicate: the key was already recorded (and not expired); Handle did
	// not run.
	Duplicate
	// Failed: Handle ran and returned an error (in Item.Err). Its effects
	// were rolled back where the store has transactions, and the key is not
	// recorded: the item can be processed again.
	Failed
	// Busy: another worker is processing the key right now (it holds a live
	// lease); Handle did not run. Process the item again later.
	Busy
)

// String returns the outcome's name, e.g. "duplicate".
func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Handled:
		return "handled"
	case Duplicate:
		return "duplicate"
	case Failed:
		return "failed"
	case Busy:
		return "busy"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Done reports whether the item needs no more processing: it was handled
// now or before.
func (o Outcome) Done() bool { return o == Handled || o == Duplicate }

// Item is one event given to a Store.
type Item[T any] struct {
	// Key identifies the event.
	Key Key
	// TTL is how long the key is remembered once Handle succeeded. Zero
	// means the store's default.
	TTL time.Duration
	// Handle applies the event's effects, through tx where the store has
	// transactions. Required.
	Handle func(ctx context.Context, tx T) error
	// Outcome and Err are set by Process: Err is Handle's error when
	// Outcome is Failed, nil otherwise.
	Outcome Outcome
	Err     error
}

// Store remembers processed keys and runs the handlers of new ones.
//
// Process processes the batch in order. For each item:
//
//   - an item whose key is not recorded, or recorded but expired, runs
//     Handle once; the key is recorded if and only if Handle returns nil,
//     and a transactional store records it atomically with Handle's
//     effects (in the transaction Handle received);
//   - an item whose key is recorded is a Duplicate: Handle does not run;
//   - a Handle that fails leaves the key unrecorded, so the item can be
//     retried, and neither undoes nor repeats the other items' effects;
//   - an item whose key appeared earlier in the batch does not run: it is
//     a Duplicate when the earlier item is Handled or a Duplicate, Pending
//     otherwise;
//   - concurrent Process calls (in one process or many) given the same key
//     run Handle once between them: the others see a Duplicate, or Busy
//     while the first is still running (non-blocking stores), or wait for
//     it (PostgreSQL).
//
// Handles run one at a time, in batch order, and items are decided in
// that order: when an item's Handle runs, the Outcome of every earlier item
// is set (a consumer uses it to keep later records of a key waiting behind
// an earlier one that did not succeed). A returned error is the
// store's own failure (the network, the database, a commit that failed):
// items left Pending did not run or had their effects rolled back; items
// with another outcome keep it. A transactional store that fails to
// commit sets every item of the batch back to Pending.
type Store[T any] interface {
	Process(ctx context.Context, batch []Item[T]) error
}

// NoTx is what a store without transactions (Redis, Memory[NoTx]) passes
// to handlers: their effects are not atomic with the key's record.
type NoTx struct{}

// Partition identifies one partition of a topic consumed by a group: the
// scope of an offset stored next to a consumer's effects.
type Partition struct {
	Group     string
	Topic     string
	Partition int32
}

// OffsetStore is a Store that also keeps a consumer group's offsets, for
// exactly-once effects: the next offset of a partition is stored in the
// same transaction as the effects of the records before it, so that after
// a crash or rebalance the consumer resumes exactly where the effects end.
// pgdedup.Store is one (OffsetStore[pgx.Tx]); Memory is one for tests.
type OffsetStore[T any] interface {
	Store[T]
	// LoadOffsets returns the next offset to consume of each partition of
	// topic that group has stored (partitions it never stored are absent).
	LoadOffsets(ctx context.Context, group, topic string) (map[int32]int64, error)
	// ProcessAt processes batch, records of one partition whose offsets
	// are offsets (ascending, one per item), in one transaction that also
	// holds the partition's stored offset: items below the stored offset
	// were processed by an earlier owner of the partition and are
	// Duplicates without looking at their keys; an item with a nil Handle
	// is a record to pass without effects (skipped, dead-lettered): its
	// outcome is Handled and its key is not recorded. The stored offset
	// moves past the longest prefix of items that are done (Handled or
	// Duplicate) and is returned. On error nothing of the batch is
	// committed: every item is Pending and next is the offset stored
	// before the call (-1 if none).
	ProcessAt(ctx context.Context, at Partition, batch []Item[T], offsets []int64) (next int64, err error)
}

// BatchFunc applies, through tx, the effects of the items of a batch whose
// indexes are run (ascending, at least one): the handlers of many items in
// one call, so that their effects can be written with one statement. It
// fails as a whole by returning an error.
type BatchFunc[T any] func(ctx context.Context, tx T, run []int) error

// BatchStore is a Store that can run a batch's new items through one
// handler call (a BatchFunc) instead of one Handle call per item.
//
// ProcessBatch is Process, except that:
//
//   - the effects of the items to run (new keys, first occurrences, with a
//     non-nil Handle) are applied by handle, given their indexes in batch
//     order; an item's Handle is not called, its being non-nil only says
//     that the item has effects (a nil Handle is ErrNoHandle, as in
//     Process);
//   - handle may be called several times with consecutive runs of those
//     items (a store without transactions calls it one item at a time); a
//     call that fails has its effects rolled back (transactional stores),
//     and the store narrows the failure down to the first item that fails
//     on its own (calling handle with that one item; its error is the
//     item's Err), keeping the effects of the items before it, each
//     applied once;
//   - processing stops at the first Failed item: the items after it that
//     would run are left Pending (their keys unrecorded), so that a
//     consumer can keep a partition's order; duplicates and repeats
//     after it are decided as in Process.
//
// When every item runs, as in the common case, a transactional store calls
// handle once per batch.
type BatchStore[T any] interface {
	Store[T]
	ProcessBatch(ctx context.Context, batch []Item[T], handle BatchFunc[T]) error
}

// BatchOffsetStore is an OffsetStore whose ProcessAt also has a BatchFunc
// form: ProcessBatchAt is ProcessAt with the handler semantics of
// ProcessBatch (an item with a nil Handle is a record to pass, as in
// ProcessAt).
type BatchOffsetStore[T any] interface {
	OffsetStore[T]
	BatchStore[T]
	ProcessBatchAt(ctx context.Context, at Partition, batch []Item[T], offsets []int64, handle BatchFunc[T]) (next int64, err error)
}

// ErrNoHandle is the Err of an item given to Process without a Handle.
var ErrNoHandle = errors.New("dedup: item has no Handle")

// MarkRepeats sets, for each item whose key appeared earlier in the batch,
// first to the index of that earlier item (-1 for the first occurrence).
// Stores process a repeated item after its first occurrence: see Resolve.
func MarkRepeats[T any](batch []Item[T]) []int {
	first := make([]int, len(batch))
	seen := make(map[Key]int, len(batch))
	for i := range batch {
		if j, ok := seen[batch[i].Key]; ok {
			first[i] = j
			continue
		}
		seen[batch[i].Key] = i
		first[i] = -1
	}
	return first
}

// ResolveRepeat returns the outcome of an item whose key's first
// occurrence in the batch ended with prior: Duplicate when that one is
// done, Pending otherwise.
func ResolveRepeat(prior Outcome) Outcome {
	if prior.Done() {
		return Duplicate
	}
	return Pending
}

// TTLOr returns ttl, or def when ttl is not positive.
func TTLOr(ttl, def time.Duration) time.Duration {
	if ttl > 0 {
		return ttl
	}
	return def
}

// NextOffset returns the offset after the longest prefix of batch whose
// items are done, or stored when that prefix is empty (or ends below
// stored).
func NextOffset[T any](batch []Item[T], offsets []int64, stored int64) int64 {
	next := stored
	for i := range batch {
		if !batch[i].Outcome.Done() {
			break
		}
		next = max(next, offsets[i]+1)
	}
	return next
}

// ErrOffsets returns the error of a ProcessAt given a number of offsets
// other than the number of items.
func ErrOffsets(items, offsets int) error {
	return fmt.Errorf("dedup: ProcessAt got %d items and %d offsets; want one offset per item", items, offsets)
}
