package deduptest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/dedup"
)

// BatchHarness is a dedup.BatchOffsetStore under test and the effects its
// batch handlers write, so that the suite can check what was committed (a
// transactional store may run a batch handler on items whose effects it
// then rolls back: handler calls alone prove nothing).
type BatchHarness[T any] struct {
	// Store is the store under test; the suite scopes its keys with a
	// random consumer group per test.
	Store dedup.BatchOffsetStore[T]
	// Apply writes one effect per id through tx (e.g. one multi-row
	// INSERT ... ON CONFLICT DO UPDATE SET n = n + 1), in the store's
	// transaction where it has one.
	Apply func(ctx context.Context, tx T, ids []string) error
	// Effects returns how many effects of each id are committed.
	Effects func(t *testing.T) map[string]int
}

// RunBatch runs the conformance suite of the batch path (ProcessBatch and
// ProcessBatchAt), each check a subtest with a fresh harness.
func RunBatch[T any](t *testing.T, newHarness func(t *testing.T) BatchHarness[T]) {
	tests := []struct {
		name string
		fn   func(*testing.T, BatchHarness[T])
	}{
		{"FirstDeliveryRuns", batchFirstDelivery[T]},
		{"RepeatSkips", batchRepeatSkips[T]},
		{"FailureInTheMiddle", batchFailureInTheMiddle[T]},
		{"EachPositionFails", batchEachPosition[T]},
		{"ConcurrentDeliveriesRunOnce", batchConcurrentOnce[T]},
		{"ProcessBatchAtMovesTheOffset", batchAt[T]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

// batchRun is one test's batch handler: it applies the effects of the ids
// it is given up to the first failing one, then fails if one is failing
// (so that a transactional store must roll back the effects written before
// the failure); failing ids fail while fails(id) says so.
type batchRun[T any] struct {
	h     BatchHarness[T]
	g     string
	mu    sync.Mutex
	fails map[string]bool
	calls [][]string // the ids of each call
}

func newBatchRun[T any](h BatchHarness[T]) *batchRun[T] {
	return &batchRun[T]{h: h, g: group(), fails: map[string]bool{}}
}

// scoped returns the effect id of id: unique to the test.
func (r *batchRun[T]) scoped(id string) string { return r.g + "/" + id }

func (r *batchRun[T]) items(ids ...string) []dedup.Item[T] {
	out := make([]dedup.Item[T], len(ids))
	for i, id := range ids {
		out[i] = dedup.Item[T]{
			Key: dedup.Key{Group: r.g, Event: "Event", ID: id}, TTL: time.Hour,
			Handle: func(context.Context, T) error {
				return errors.New("deduptest: ProcessBatch called an item's Handle")
			},
		}
	}
	return out
}

func (r *batchRun[T]) handle(batch []dedup.Item[T]) dedup.BatchFunc[T] {
	return func(ctx context.Context, tx T, run []int) error {
		ids := make([]string, 0, len(run))
		var failing string
		for _, i := range run {
			id := batch[i].Key.ID
			r.mu.Lock()
			f := r.fails[id]
			r.mu.Unlock()
			if f {
				failing = id
				break
			}
			ids = append(ids, id)
		}
		r.mu.Lock()
		var all []string
		for _, i := range run {
			all = append(all, batch[i].Key.ID)
		}
		r.calls = append(r.calls, all)
		r.mu.Unlock()
		scoped := make([]string, len(ids))
		for i, id := range ids {
			scoped[i] = r.scoped(id)
		}
		if len(scoped) > 0 {
			if err := r.h.Apply(ctx, tx, scoped); err != nil {
				return err
			}
		}
		if failing != "" {
			return fmt.Errorf("%w: %s", errHandler, failing)
		}
		return nil
	}
}

func (r *batchRun[T]) process(t *testing.T, ids ...string) []dedup.Item[T] {
	t.Helper()
	b := r.items(ids...)
	if err := r.h.Store.ProcessBatch(t.Context(), b, r.handle(b)); err != nil {
		t.Fatalf("ProcessBatch: %v", err)
	}
	return b
}

// effects returns the committed effects of ids, as "id=n ...".
func (r *batchRun[T]) effects(t *testing.T, ids ...string) string {
	t.Helper()
	got := r.h.Effects(t)
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprintf("%s=%d", id, got[r.scoped(id)]))
	}
	return strings.Join(s, " ")
}

func (r *batchRun[T]) expectEffects(t *testing.T, want string, ids ...string) {
	t.Helper()
	if got := r.effects(t, ids...); got != want {
		t.Fatalf("committed effects %s, want %s", got, want)
	}
}

func batchFirstDelivery[T any](t *testing.T, h BatchHarness[T]) {
	r := newBatchRun(h)
	b := r.process(t, "a", "b", "c")
	expect(t, b, "a=handled b=handled c=handled")
	r.expectEffects(t, "a=1 b=1 c=1", "a", "b", "c")
	for _, c := range r.calls {
		if !slices.IsSorted(c) { // ids are in batch order here
			t.Fatalf("handler calls %v: items must be given in batch order", r.calls)
		}
	}
}

func batchRepeatSkips[T any](t *testing.T, h BatchHarness[T]) {
	r := newBatchRun(h)
	r.process(t, "a", "b")
	calls := len(r.calls)
	b := r.process(t, "a", "b", "a", "c", "c")
	expect(t, b, "a=duplicate b=duplicate a=duplicate c=handled c=duplicate")
	r.expectEffects(t, "a=1 b=1 c=1", "a", "b", "c")
	for _, c := range r.calls[calls:] {
		if slices.Contains(c, "a") || slices.Contains(c, "b") || len(c) != 1 {
			t.Fatalf("handler calls of the redelivery %v, want c alone: a duplicate or a repeat is not given to the handler", r.calls[calls:])
		}
	}
	// Nothing new: no handler call at all.
	calls = len(r.calls)
	b = r.process(t, "a", "c")
	expect(t, b, "a=duplicate c=duplicate")
	if len(r.calls) != calls {
		t.Fatalf("a batch of duplicates called the handler: %v", r.calls[calls:])
	}
}

// batchFailureInTheMiddle: the items before the failing one commit once,
// the failing one is Failed with its own error and retryable, the items
// after it wait (Pending, retryable); a duplicate after it is still
// decided.
func batchFailureInTheMiddle[T any](t *testing.T, h BatchHarness[T]) {
	r := newBatchRun(h)
	r.process(t, "d")
	r.fails["x"] = true
	b := r.process(t, "a", "b", "c", "x", "d", "e", "a")
	expect(t, b, "a=handled b=handled c=handled x=failed d=duplicate e=pending a=duplicate")
	if !errors.Is(b[3].Err, errHandler) || !strings.HasSuffix(b[3].Err.Error(), ": x") {
		t.Fatalf("failed item's Err = %v, want the handler's error for x alone", b[3].Err)
	}
	for i, it := range b {
		if i != 3 && it.Err != nil {
			t.Fatalf("item %s has Err %v, want nil", it.Key.ID, it.Err)
		}
	}
	r.expectEffects(t, "a=1 b=1 c=1 x=0 d=1 e=0", "a", "b", "c", "x", "d", "e")
	// The last call was x alone: its error is its own.
	if last := r.calls[len(r.calls)-1]; fmt.Sprint(last) != "[x]" {
		t.Fatalf("handler calls %v: the failing item must be tried alone last", r.calls)
	}
	// Redelivery after the fix: x and e run, the others are duplicates.
	r.fails["x"] = false
	b = r.process(t, "a", "b", "c", "x", "d", "e")
	expect(t, b, "a=duplicate b=duplicate c=duplicate x=handled d=duplicate e=handled")
	r.expectEffects(t, "a=1 b=1 c=1 x=1 d=1 e=1", "a", "b", "c", "x", "d", "e")
}

// batchEachPosition: a failing item at every position of batches of
// several sizes; the prefix before it commits exactly once.
func batchEachPosition[T any](t *testing.T, h BatchHarness[T]) {
	for _, n := range []int{1, 2, 3, 7, 16} {
		for f := range n {
			r := newBatchRun(h)
			var ids []string
			for i := range n {
				ids = append(ids, fmt.Sprintf("i%02d", i))
			}
			r.fails[ids[f]] = true
			b := r.process(t, ids...)
			var want, wantEff []string
			for i, id := range ids {
				switch {
				case i < f:
					want, wantEff = append(want, id+"=handled"), append(wantEff, id+"=1")
				case i == f:
					want, wantEff = append(want, id+"=failed"), append(wantEff, id+"=0")
				default:
					want, wantEff = append(want, id+"=pending"), append(wantEff, id+"=0")
				}
			}
			if got := outcomes(b); got != strings.Join(want, " ") {
				t.Fatalf("n=%d, failing %d: outcomes %s, want %s", n, f, got, strings.Join(want, " "))
			}
			r.expectEffects(t, strings.Join(wantEff, " "), ids...)
			r.fails[ids[f]] = false
			b = r.process(t, ids...)
			for i, it := range b {
				if want := map[bool]dedup.Outcome{true: dedup.Duplicate, false: dedup.Handled}[i < f]; it.Outcome != want {
					t.Fatalf("n=%d, failing %d, redelivered: outcomes %s", n, f, outcomes(b))
				}
			}
			r.expectEffects(t, joinOnes(ids), ids...)
		}
	}
}

func joinOnes(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id + "=1"
	}
	return strings.Join(s, " ")
}

// batchConcurrentOnce: workers deliver overlapping batches of the same
// keys at once, retrying what is not done: every key's effect commits
// exactly once.
func batchConcurrentOnce[T any](t *testing.T, h BatchHarness[T]) {
	const workers, keys = 8, 20
	r := newBatchRun(h)
	var ids []string
	for k := range keys {
		ids = append(ids, fmt.Sprintf("k%02d", k))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	deadline := time.Now().Add(60 * time.Second)
	for w := range workers {
		wg.Go(func() {
			todo := slices.Clone(ids)
			if w%2 == 1 {
				slices.Reverse(todo)
			}
			for len(todo) > 0 {
				b := r.items(todo...)
				if err := h.Store.ProcessBatch(context.Background(), b, r.handle(b)); err != nil {
					errs <- err
					return
				}
				todo = todo[:0]
				for _, it := range b {
					switch it.Outcome {
					case dedup.Handled, dedup.Duplicate:
					case dedup.Busy, dedup.Pending:
						todo = append(todo, it.Key.ID)
					default:
						errs <- fmt.Errorf("%s: %s %v", it.Key.ID, it.Outcome, it.Err)
						return
					}
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("keys %v still not done after 60 s", todo)
					return
				}
				if len(todo) > 0 {
					time.Sleep(time.Millisecond) // Busy: poll again
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.expectEffects(t, joinOnes(ids), ids...)
}

// batchAt: ProcessBatchAt moves the stored offset past the done prefix,
// passes nil-Handle items, and skips what an earlier owner stored.
func batchAt[T any](t *testing.T, h BatchHarness[T]) {
	r := newBatchRun(h)
	at := dedup.Partition{Group: r.g, Topic: "topic", Partition: 1}
	r.fails["x"] = true
	b := r.items("a", "skip", "b", "x", "c")
	b[1].Handle = nil
	next, err := h.Store.ProcessBatchAt(t.Context(), at, b, []int64{10, 11, 12, 13, 14}, r.handle(b))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, b, "a=handled skip=handled b=handled x=failed c=pending")
	if next != 13 {
		t.Fatalf("next = %d, want 13 (the failed record at 13 holds the offset)", next)
	}
	r.expectEffects(t, "a=1 skip=0 b=1 x=0 c=0", "a", "skip", "b", "x", "c")
	r.fails["x"] = false
	// The next owner re-reads from 10 with new IDs below the stored offset:
	// they are Duplicates without running.
	b = r.items("a2", "skip2", "b2", "x", "c")
	next, err = h.Store.ProcessBatchAt(t.Context(), at, b, []int64{10, 11, 12, 13, 14}, r.handle(b))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, b, "a2=duplicate skip2=duplicate b2=duplicate x=handled c=handled")
	if next != 15 {
		t.Fatalf("next = %d, want 15", next)
	}
	r.expectEffects(t, "a2=0 b2=0 x=1 c=1", "a2", "b2", "x", "c")
	got, err := h.Store.LoadOffsets(t.Context(), r.g, "topic")
	if err != nil || len(got) != 1 || got[1] != 15 {
		t.Fatalf("LoadOffsets: %v, %v; want map[1:15]", got, err)
	}
	if _, err := h.Store.ProcessBatchAt(t.Context(), at, b, []int64{1}, r.handle(b)); err == nil {
		t.Fatal("ProcessBatchAt with fewer offsets than items returned nil")
	}
}
