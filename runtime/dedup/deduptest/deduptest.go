// Package deduptest is the conformance suite of dedup.Store: every store
// runs it against a real server (see the tests of dedup, pgdedup and
// redisdedup). It checks the contract of dedup.Store through what handlers
// observe (how often each ran, in which order); store-specific tests check
// what only the store can show, such as effects committed with the key.
package deduptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/dedup"
)

// Harness is a store under test and the faults the suite may inject.
type Harness[T any] struct {
	// Store is the store under test, fresh or shared: the suite scopes its
	// keys with a random consumer group per test.
	Store dedup.Store[T]
	// FailCommit, when set, is a Handle body that returns nil but makes
	// the store fail after the handlers ran (a transactional store: a
	// constraint checked at COMMIT). The suite checks that the batch comes
	// back Pending with an error and that nothing of it was recorded.
	FailCommit func(ctx context.Context, tx T) error
	// Break, when set, makes the store's calls fail until restore is
	// called (a connection refused, say).
	Break func() (restore func())
}

// Run runs the conformance suite, each check a subtest with a fresh
// harness from newHarness.
func Run[T any](t *testing.T, newHarness func(t *testing.T) Harness[T]) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness[T])
	}{
		{"FirstDeliveryRuns", firstDeliveryRuns[T]},
		{"RepeatSkips", repeatSkips[T]},
		{"OutcomesInOrder", outcomesInOrder[T]},
		{"FailureLeavesKeyRetryable", failureRetryable[T]},
		{"SameKeyTwiceInBatch", sameKeyTwice[T]},
		{"ConcurrentDeliveriesRunOnce", concurrentOnce[T]},
		{"Expiry", expiry[T]},
		{"StoreFailure", storeFailure[T]},
		{"ScopedByGroupAndEvent", scoped[T]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

// calls records the handler runs of one test, in order.
type calls struct {
	mu  sync.Mutex
	ran []string
}

func (c *calls) add(id string) {
	c.mu.Lock()
	c.ran = append(c.ran, id)
	c.mu.Unlock()
}

func (c *calls) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.ran {
		if r == id {
			n++
		}
	}
	return n
}

func (c *calls) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.ran)
}

var errHandler = errors.New("deduptest: handler fails")

// group returns a consumer group no other test uses.
func group() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "deduptest-" + hex.EncodeToString(b)
}

// spec describes one item: its id and whether its handler fails.
type spec struct {
	id   string
	fail bool
	ttl  time.Duration
	body func(ctx context.Context, tx T0) error
}

// T0 stands for the store's T in spec (the body is adapted by items).
type T0 = any

func items[T any](g string, c *calls, specs ...spec) []dedup.Item[T] {
	out := make([]dedup.Item[T], len(specs))
	for i, s := range specs {
		out[i] = dedup.Item[T]{
			Key: dedup.Key{Group: g, Event: "Event", ID: s.id}, TTL: s.ttl,
			Handle: func(ctx context.Context, tx T) error {
				c.add(s.id)
				if s.body != nil {
					if err := s.body(ctx, tx); err != nil {
						return err
					}
				}
				if s.fail {
					return errHandler
				}
				return nil
			},
		}
	}
	return out
}

func outcomes[T any](batch []dedup.Item[T]) string {
	s := ""
	for i, it := range batch {
		if i > 0 {
			s += " "
		}
		s += it.Key.ID + "=" + it.Outcome.String()
	}
	return s
}

func process[T any](t *testing.T, st dedup.Store[T], batch []dedup.Item[T]) []dedup.Item[T] {
	t.Helper()
	if err := st.Process(t.Context(), batch); err != nil {
		t.Fatalf("Process: %v", err)
	}
	return batch
}

func expect[T any](t *testing.T, batch []dedup.Item[T], want string) {
	t.Helper()
	if got := outcomes(batch); got != want {
		t.Fatalf("outcomes %s, want %s", got, want)
	}
}

func firstDeliveryRuns[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	b := process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "b"}, spec{id: "c"}))
	expect(t, b, "a=handled b=handled c=handled")
	if c.String() != "[a b c]" {
		t.Fatalf("handlers ran %s, want [a b c]", c)
	}
}

func repeatSkips[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "b"}))
	b := process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "b"}, spec{id: "c"}))
	expect(t, b, "a=duplicate b=duplicate c=handled")
	if c.String() != "[a b c]" {
		t.Fatalf("handlers ran %s, want [a b c]: a redelivery must not run its handler", c)
	}
}

func outcomesInOrder[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	process(t, h.Store, items[T](g, c, spec{id: "d"}))
	b := items[T](g, c, spec{id: "a"}, spec{id: "b"}, spec{id: "x", fail: true}, spec{id: "d"}, spec{id: "e"})
	var seen string // the earlier items' outcomes when e's handler runs
	h4 := b[4].Handle
	b[4].Handle = func(ctx context.Context, tx T) error {
		seen = outcomes(b[:4])
		return h4(ctx, tx)
	}
	process(t, h.Store, b)
	expect(t, b, "a=handled b=handled x=failed d=duplicate e=handled")
	if seen != "a=handled b=handled x=failed d=duplicate" {
		t.Fatalf("when e's handler ran, the earlier outcomes were %s: items must be decided in order", seen)
	}
	if c.String() != "[d a b x e]" {
		t.Fatalf("handlers ran %s, want [d a b x e] (batch order)", c)
	}
	if !errors.Is(b[2].Err, errHandler) {
		t.Fatalf("failed item's Err = %v, want the handler's error", b[2].Err)
	}
	for i, it := range b {
		if i != 2 && it.Err != nil {
			t.Fatalf("item %s has Err %v, want nil", it.Key.ID, it.Err)
		}
	}
}

func failureRetryable[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	b := process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "b", fail: true}, spec{id: "c"}))
	expect(t, b, "a=handled b=failed c=handled")
	b = process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "b"}, spec{id: "c"}))
	expect(t, b, "a=duplicate b=handled c=duplicate")
	if c.count("a") != 1 || c.count("b") != 2 || c.count("c") != 1 {
		t.Fatalf("handlers ran %s, want a and c once, b twice (failed, then retried)", c)
	}
	b = process(t, h.Store, items[T](g, c, spec{id: "b"}))
	expect(t, b, "b=duplicate")
}

func sameKeyTwice[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	b := process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "a"}, spec{id: "f", fail: true}, spec{id: "f"}))
	expect(t, b, "a=handled a=duplicate f=failed f=pending")
	if c.String() != "[a f]" {
		t.Fatalf("handlers ran %s, want [a f]: a key repeated in a batch runs once", c)
	}
	b = process(t, h.Store, items[T](g, c, spec{id: "f"}, spec{id: "f"}))
	expect(t, b, "f=handled f=duplicate")
}

// concurrentOnce gives each of several keys to many goroutines at once;
// each retries Busy and Pending outcomes until its item is done. Every key
// must be handled exactly once between them.
func concurrentOnce[T any](t *testing.T, h Harness[T]) {
	const workers, keys = 16, 4
	g, c := group(), &calls{}
	var started atomic.Int64
	allStarted := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, workers*keys)
	deadline := time.Now().Add(60 * time.Second)
	for k := range keys {
		id := fmt.Sprintf("k%d", k)
		for range workers {
			wg.Go(func() {
				if started.Add(1) == workers*keys {
					once.Do(func() { close(allStarted) })
				}
				for try := 0; ; try++ {
					b := items[T](g, c, spec{id: id, body: func(ctx context.Context, _ T0) error {
						// Hold the key until every worker has started, so
						// that the others meet it in flight.
						select {
						case <-allStarted:
						case <-time.After(time.Until(deadline)):
						}
						time.Sleep(5 * time.Millisecond) // widen the window; no check depends on it
						return nil
					}})
					err := h.Store.Process(context.Background(), b)
					if err != nil {
						errs <- err
						return
					}
					if b[0].Outcome.Done() {
						return
					}
					if b[0].Outcome == dedup.Failed {
						errs <- fmt.Errorf("%s failed: %v", id, b[0].Err)
						return
					}
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("%s still %s after %d tries", id, b[0].Outcome, try)
						return
					}
					time.Sleep(time.Millisecond) // Busy: poll again
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for k := range keys {
		id := fmt.Sprintf("k%d", k)
		if n := c.count(id); n != 1 {
			t.Errorf("%s handled %d times by %d concurrent workers, want 1", id, n, workers)
		}
	}
}

// expiry: a key whose TTL passed runs again; a live one does not.
func expiry[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	const short = 500 * time.Millisecond
	process(t, h.Store, items[T](g, c, spec{id: "short", ttl: short}, spec{id: "long", ttl: time.Hour}))
	b := process(t, h.Store, items[T](g, c, spec{id: "short", ttl: short}, spec{id: "long", ttl: time.Hour}))
	expect(t, b, "short=duplicate long=duplicate")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b := process(t, h.Store, items[T](g, c, spec{id: "short", ttl: short}))
		if b[0].Outcome == dedup.Handled {
			break
		}
		if b[0].Outcome != dedup.Duplicate {
			t.Fatalf("short: %s before expiry, want duplicate", b[0].Outcome)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a key with TTL %v was still a duplicate 30 s later", short)
		}
		time.Sleep(50 * time.Millisecond) // poll the expiry
	}
	b = process(t, h.Store, items[T](g, c, spec{id: "long", ttl: time.Hour}, spec{id: "short", ttl: short}))
	expect(t, b, "long=duplicate short=duplicate")
	if c.count("short") != 2 || c.count("long") != 1 {
		t.Fatalf("handlers ran %s, want short twice (expired once) and long once", c)
	}
}

// storeFailure: after a failed Process, an item left Pending runs when
// processed again, an item that kept Handled is a Duplicate.
func storeFailure[T any](t *testing.T, h Harness[T]) {
	if h.FailCommit == nil && h.Break == nil {
		t.Log("the store offers no fault injection; nothing to check")
		return
	}
	if h.FailCommit != nil {
		g, c := group(), &calls{}
		b := items[T](g, c, spec{id: "a"}, spec{id: "x", body: func(ctx context.Context, tx T0) error { return h.FailCommit(ctx, tx.(T)) }}, spec{id: "c"})
		if err := h.Store.Process(t.Context(), b); err == nil {
			t.Fatalf("Process with a failing commit returned nil; outcomes %s", outcomes(b))
		}
		expect(t, b, "a=pending x=pending c=pending")
		b = process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "x"}, spec{id: "c"}))
		expect(t, b, "a=handled x=handled c=handled")
	}
	if h.Break != nil {
		g, c := group(), &calls{}
		restore := h.Break()
		b := items[T](g, c, spec{id: "a"}, spec{id: "b"})
		err := h.Store.Process(t.Context(), b)
		restore()
		if err == nil {
			t.Fatalf("Process on a broken store returned nil; outcomes %s", outcomes(b))
		}
		before := outcomes(b)
		again := process(t, h.Store, items[T](g, c, spec{id: "a"}, spec{id: "b"}))
		for i := range b {
			want := map[dedup.Outcome]dedup.Outcome{dedup.Pending: dedup.Handled, dedup.Handled: dedup.Duplicate}[b[i].Outcome]
			if want == 0 || again[i].Outcome != want {
				t.Fatalf("after the failure %s, processing again gave %s: a Pending item must run, a Handled one be a Duplicate", before, outcomes(again))
			}
		}
		if c.count("a") != 1 || c.count("b") != 1 {
			t.Fatalf("handlers ran %s, want each once", c)
		}
	}
}

// scoped: the same ID in another group or another event is another key.
func scoped[T any](t *testing.T, h Harness[T]) {
	g, c := group(), &calls{}
	process(t, h.Store, items[T](g, c, spec{id: "a"}))
	other := items[T](group(), c, spec{id: "a"})
	otherEvent := items[T](g, c, spec{id: "a"})
	otherEvent[0].Key.Event = "OtherEvent"
	b := process(t, h.Store, append(other, otherEvent...))
	if b[0].Outcome != dedup.Handled || b[1].Outcome != dedup.Handled {
		t.Fatalf("the same ID in another group / event: %s, %s; want handled, handled", b[0].Outcome, b[1].Outcome)
	}
}

// RunOffsets checks an OffsetStore's ProcessAt and LoadOffsets: the stored
// offset moves past the done prefix of a batch, records below it are
// Duplicates without running, nil-Handle items pass, two owners of a
// partition serialise on it.
func RunOffsets[T any](t *testing.T, newStore func(t *testing.T) dedup.OffsetStore[T]) {
	t.Run("ProcessAtMovesTheOffset", func(t *testing.T) {
		st := newStore(t)
		g, c := group(), &calls{}
		at := dedup.Partition{Group: g, Topic: "topic", Partition: 3}
		got, err := st.LoadOffsets(t.Context(), g, "topic")
		if err != nil || len(got) != 0 {
			t.Fatalf("LoadOffsets of a new group: %v, %v; want none", got, err)
		}
		b := items[T](g, c, spec{id: "a"}, spec{id: "b"}, spec{id: "x", fail: true}, spec{id: "d"})
		var seen string // the earlier items' outcomes when d's handler runs
		h3 := b[3].Handle
		b[3].Handle = func(ctx context.Context, tx T) error {
			seen = outcomes(b[:3])
			return h3(ctx, tx)
		}
		next, err := st.ProcessAt(t.Context(), at, b, []int64{10, 11, 12, 13})
		if err != nil {
			t.Fatal(err)
		}
		expect(t, b, "a=handled b=handled x=failed d=handled")
		if seen != "a=handled b=handled x=failed" {
			t.Fatalf("when d's handler ran, the earlier outcomes were %s: items must be decided in order, in place", seen)
		}
		if next != 12 {
			t.Fatalf("next = %d, want 12 (the failed record at 12 holds the offset)", next)
		}
		// The next owner re-reads from 12; 10 and 11 come again with new
		// IDs (a replay from an older Kafka offset): below the stored
		// offset, they do not run.
		b = items[T](g, c, spec{id: "a2"}, spec{id: "b2"}, spec{id: "x"}, spec{id: "d"}, spec{id: "skip"})
		b[4].Handle = nil
		next, err = st.ProcessAt(t.Context(), at, b, []int64{10, 11, 12, 13, 14})
		if err != nil {
			t.Fatal(err)
		}
		expect(t, b, "a2=duplicate b2=duplicate x=handled d=duplicate skip=handled")
		if next != 15 {
			t.Fatalf("next = %d, want 15", next)
		}
		if c.String() != "[a b x d x]" {
			t.Fatalf("handlers ran %s, want [a b x d x]", c)
		}
		got, err = st.LoadOffsets(t.Context(), g, "topic")
		if err != nil || len(got) != 1 || got[3] != 15 {
			t.Fatalf("LoadOffsets: %v, %v; want map[3:15]", got, err)
		}
		if _, err := st.ProcessAt(t.Context(), at, b, []int64{1}); err == nil {
			t.Fatal("ProcessAt with fewer offsets than items returned nil")
		}
	})
	t.Run("TwoOwnersSerialise", func(t *testing.T) {
		st := newStore(t)
		g, c := group(), &calls{}
		at := dedup.Partition{Group: g, Topic: "topic", Partition: 0}
		// Two owners (a rebalance in progress) process overlapping ranges
		// of the partition, each record under a fresh key, as records
		// without an idempotency key would be: only the offset keeps them
		// from running twice.
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for w := range 2 {
			wg.Go(func() {
				for from := int64(0); from < 100; from += 10 {
					var specs []spec
					var offs []int64
					for o := from; o < from+10; o++ {
						specs = append(specs, spec{id: fmt.Sprintf("o%d-w%d", o, w)})
						offs = append(offs, o)
					}
					if _, err := st.ProcessAt(context.Background(), at, items[T](g, c, specs...), offs); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for o := range 100 {
			if n := c.count(fmt.Sprintf("o%d-w0", o)) + c.count(fmt.Sprintf("o%d-w1", o)); n != 1 {
				t.Fatalf("offset %d ran %d times, want 1", o, n)
			}
		}
	})
}
