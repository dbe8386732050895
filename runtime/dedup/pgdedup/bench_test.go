package pgdedup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup"
)

// BenchmarkProcess measures the store alone: batches of 500 new keys, each
// handler one INSERT, from `workers` goroutines (a consumer's partitions).
func BenchmarkProcess(b *testing.B) {
	benchStore(b,
		func(id string) func(context.Context, pgx.Tx) error {
			return func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO orders (id, cents) VALUES ($1, $2)`, id, 100)
				return err
			}
		},
		func(s *Store, items []dedup.Item[pgx.Tx]) error { return s.Process(context.Background(), items) })
}

// BenchmarkProcessBatch is BenchmarkProcess with a batch handler: the
// batch's inserts as one multi-row INSERT.
func BenchmarkProcessBatch(b *testing.B) {
	benchStore(b,
		func(string) func(context.Context, pgx.Tx) error {
			return func(context.Context, pgx.Tx) error { return nil }
		},
		func(s *Store, items []dedup.Item[pgx.Tx]) error {
			handle := func(ctx context.Context, tx pgx.Tx, run []int) error {
				ids, cents := make([]string, len(run)), make([]int64, len(run))
				for k, i := range run {
					ids[k], cents[k] = items[i].Key.ID, 100
				}
				_, err := tx.Exec(ctx, `INSERT INTO orders (id, cents) SELECT * FROM unnest($1::text[], $2::bigint[])`, ids, cents)
				return err
			}
			return s.ProcessBatch(context.Background(), items, handle)
		})
}

// benchStore runs b.N new keys through a fresh store into an orders table,
// in batches of 500 from 1 and from 3 goroutines: handler makes each key's
// handler, process hands a batch to the store.
func benchStore(b *testing.B, handler func(id string) func(context.Context, pgx.Tx) error, process func(*Store, []dedup.Item[pgx.Tx]) error) {
	for _, workers := range []int{1, 3} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, pool, _ := newStoreB(b)
			if _, err := pool.Exec(context.Background(), `CREATE TABLE orders (id text PRIMARY KEY, cents bigint NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			const batch = 500
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := b.N / workers
			for w := 0; w < workers; w++ {
				wg.Go(func() {
					for done := 0; done < per; done += batch {
						items := make([]dedup.Item[pgx.Tx], 0, batch)
						for range min(batch, per-done) {
							id := fmt.Sprint(seq.Add(1))
							items = append(items, dedup.Item[pgx.Tx]{Key: dedup.Key{Group: "g", Event: "E", ID: id}, TTL: time.Hour, Handle: handler(id)})
						}
						if err := process(s, items); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*workers)/time.Since(start).Seconds(), "items/s")
		})
	}
}
