package outbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
)

// workload enqueues events the way services do: each key is an entity
// whose next event is enqueued only after its previous one committed,
// while transactions of different keys interleave; some transactions stay
// open a while after their enqueue, so that rows with later ids commit
// first (the out-of-order commits an id cursor skips).
type workload struct {
	et      *event.Type
	keys    int // keys k0..k<keys-1>
	perKey  int // events per key, seq 0..perKey-1
	writers int // concurrent writers; writer w owns keys w, w+writers, ...
	// holdEvery: one transaction in holdEvery stays open for up to
	// maxHold after its enqueue (0: never).
	holdEvery int
	maxHold   time.Duration
	// poison: keys whose event seq poisonSeq carries a payload larger
	// than the producer's limit (the key's later events wait behind it).
	poison    map[string]bool
	poisonSeq int
	padding   int // bytes of the poison payload
	seed      uint64
}

func (w workload) key(i int) string { return fmt.Sprintf("k%d", i) }

// want is what a checker expects on the topic: every event of every key
// not poisoned; a poisoned key's events before its poison row.
func (w workload) want() map[string]int {
	m := map[string]int{}
	for i := range w.keys {
		k := w.key(i)
		if w.poison[k] {
			m[k] = w.poisonSeq
		} else {
			m[k] = w.perKey
		}
	}
	return m
}

// run enqueues the whole workload into table t (the default when zero)
// and returns the first error.
func (w workload) run(ctx context.Context, pool *pgxpool.Pool, t Table) error {
	var wg sync.WaitGroup
	errs := make(chan error, w.writers)
	for wr := range w.writers {
		rng := rand.New(rand.NewPCG(w.seed, uint64(wr)))
		wg.Go(func() {
			for seq := range w.perKey {
				for k := wr; k < w.keys; k += w.writers {
					if err := w.enqueueOne(ctx, pool, t, rng, w.key(k), seq); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (w workload) enqueueOne(ctx context.Context, pool *pgxpool.Pool, t Table, rng *rand.Rand, key string, seq int) error {
	e := seqEvent(w.et, key, seq)
	if w.poison[key] && seq == w.poisonSeq {
		e.Note = strings.Repeat("x", w.padding)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := t.Enqueue(ctx, tx, e); err != nil {
			return err
		}
		if w.holdEvery > 0 && rng.IntN(w.holdEvery) == 0 {
			// Keep the row uncommitted while other writers commit rows
			// with later ids.
			return sleep(ctx, time.Duration(rng.Int64N(int64(w.maxHold)+1)))
		}
		return nil
	})
}

// naiveIDCursorRelay is the design the outbox replaces, as a control: it
// polls rows with an id above the last one it published, in id order, and
// advances its cursor past them. A row whose transaction commits after a
// row with a later id was published is never read.
func naiveIDCursorRelay(ctx context.Context, pool *pgxpool.Pool, prod *kafka.AtLeastOnceProducer) error {
	err := naiveIDCursorLoop(ctx, pool, prod)
	if ctx.Err() != nil {
		return nil // stopped
	}
	return err
}

func naiveIDCursorLoop(ctx context.Context, pool *pgxpool.Pool, prod *kafka.AtLeastOnceProducer) error {
	var cursor int64
	for ctx.Err() == nil {
		rows, err := pool.Query(ctx, "SELECT id, topic, key, headers, payload, attempts FROM eventgen_outbox WHERE id > $1 ORDER BY id LIMIT 100", cursor)
		if err != nil {
			return err
		}
		var batch []row
		var rw row
		if _, err := pgx.ForEachRow(rows, []any{&rw.id, &rw.topic, &rw.key, &rw.headers, &rw.payload, &rw.attempts}, func() error {
			batch = append(batch, rw)
			rw = row{}
			return nil
		}); err != nil {
			return err
		}
		if len(batch) == 0 {
			_ = sleep(ctx, 10*time.Millisecond)
			continue
		}
		for _, rw := range batch {
			rec, err := rw.record()
			if err != nil {
				return err
			}
			done := make(chan error, 1)
			if err := prod.SendRawAsync(ctx, rec, func(err error) { done <- err }); err != nil {
				return err
			}
			if err := <-done; err != nil {
				return err
			}
			cursor = rw.id
		}
	}
	return nil
}

// testEventType is the event type of a test's topic.
func testEventType(t testing.TB, topic string) *event.Type {
	t.Helper()
	return testevent.Type(topic, event.AtLeastOnce)
}
