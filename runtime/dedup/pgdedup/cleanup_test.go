package pgdedup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/dedup"
)

// seed inserts n expired and live rows of group g directly.
func seed(t *testing.T, pool *pgxpool.Pool, s *Store, g string, expired, live int) {
	t.Helper()
	_, err := pool.Exec(t.Context(), `INSERT INTO `+s.q.Dedup+` (consumer_group, event, id, expires_at)
SELECT $1, 'Credit', 'expired-' || i, now() - interval '1 hour' - i * interval '1 millisecond' FROM generate_series(1, $2::int) i
UNION ALL
SELECT $1, 'Credit', 'live-' || i, now() + interval '1 hour' FROM generate_series(1, $3::int) i`, g, expired, live)
	if err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, s *Store, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM `+s.q.Dedup+` WHERE `+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TTL cleanup: expired rows go, in batches; live rows stay; the expiry
// index serves the cleanup's scan.
func TestCleanupRemovesExpiredKeepsLive(t *testing.T) {
	s, pool, _ := newStore(t, Options{})
	seed(t, pool, s, "g", 25_000, 3_000)
	if _, err := pool.Exec(t.Context(), `ANALYZE `+s.q.Dedup); err != nil {
		t.Fatal(err)
	}
	var plan []string
	rows, err := pool.Query(t.Context(), `EXPLAIN SELECT ctid FROM `+s.q.Dedup+` WHERE expires_at < now() ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if !strings.Contains(strings.Join(plan, "\n"), "expires_at_idx") {
		t.Errorf("the cleanup's scan does not use the expiry index:\n%s", strings.Join(plan, "\n"))
	}
	n, err := s.DeleteExpired(t.Context(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n != 25_000 || count(t, pool, s, "expires_at < now()") != 0 || count(t, pool, s, "true") != 3_000 {
		t.Fatalf("deleted %d (want 25000); %d expired and %d rows left (want 0 and 3000)", n, count(t, pool, s, "expires_at < now()"), count(t, pool, s, "true"))
	}
	// A key whose record was cleaned up runs again; a live one does not.
	b := []dedup.Item[pgx.Tx]{item("g", "expired-1", nop), item("g", "live-1", nop)}
	if err := s.Process(t.Context(), b); err != nil || b[0].Outcome != dedup.Handled || b[1].Outcome != dedup.Duplicate {
		t.Fatalf("after cleanup: %v %s %s, want handled duplicate", err, b[0].Outcome, b[1].Outcome)
	}
}

func nop(context.Context, pgx.Tx) error { return nil }

// The cleanup and the handlers never wait for each other, shown by
// ordering rather than timing:
//
//  1. a cleanup batch holding every expired row locked (its transaction
//     left open) does not stop a batch of new and live keys from
//     committing;
//  2. a batch held open inside a handler, with live keys and an expired key
//     it took over locked, does not stop a whole cleanup pass: the pass
//     skips the taken-over row and finishes while the handler still waits.
func TestCleanupDoesNotBlockHandlers(t *testing.T) {
	s, pool, _ := newStore(t, Options{})
	seed(t, pool, s, "g", 5_000, 500)
	ctx := t.Context()

	// 1. The cleanup holds its locks; handlers go on.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.deleteExpiredBatch(ctx, tx, 100_000)
	if err != nil || n != 5_000 {
		t.Fatalf("open cleanup batch deleted %d, %v", n, err)
	}
	b := []dedup.Item[pgx.Tx]{item("g", "new-1", nop), item("g", "live-1", nop), item("g", "new-2", nop)}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = s.Process(pctx, b)
	cancel()
	if err != nil {
		t.Fatalf("a batch of new and live keys while a cleanup transaction holds the expired rows: %v (it waited for the cleanup)", err)
	}
	if got := fmt.Sprint(b[0].Outcome, b[1].Outcome, b[2].Outcome); got != "handled duplicate handled" {
		t.Fatalf("outcomes %s", got)
	}
	if err := tx.Rollback(ctx); err != nil { // the rows come back for part 2
		t.Fatal(err)
	}

	// 2. A handler holds its batch open; the cleanup goes on.
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	held := []dedup.Item[pgx.Tx]{
		item("g", "live-2", nop),
		item("g", "expired-7", nop), // taken over: its row is locked by this batch
		item("g", "new-3", func(ctx context.Context, tx pgx.Tx) error {
			close(inside)
			<-release
			return nil
		}),
	}
	go func() { done <- s.Process(context.Background(), held) }()
	<-inside
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	deleted, err := s.DeleteExpired(cctx, 500)
	cancel()
	if err != nil {
		t.Fatalf("cleanup while a handler holds its batch: %v (it waited for the handler)", err)
	}
	select {
	case <-done:
		t.Fatal("the held batch finished before the cleanup: the order proves nothing")
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if deleted != 4_999 {
		t.Fatalf("the cleanup deleted %d rows, want 4999 (every expired row but the one the handler took over)", deleted)
	}
	if got := fmt.Sprint(held[0].Outcome, held[1].Outcome, held[2].Outcome); got != "duplicate handled handled" {
		t.Fatalf("held batch outcomes %s", got)
	}
	if count(t, pool, s, "id = 'expired-7' AND expires_at > now()") != 1 {
		t.Fatal("the taken-over key lost its new record")
	}
}

// TestCleanupUnderLoadLatency measures handlers' latency while a cleanup
// pass deletes a large expired set, against the same load without it. It
// only reports: the non-blocking claim is TestCleanupDoesNotBlockHandlers'
// (timings on a shared 2-core machine prove nothing).
func TestCleanupUnderLoadLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement only")
	}
	s, pool, _ := newStore(t, Options{})
	seed(t, pool, s, "g", 100_000, 0)
	measure := func(during func(context.Context)) (p50, p99 time.Duration) {
		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		if during != nil {
			wg.Go(func() { during(ctx) })
		}
		var lat []time.Duration
		var seq atomic.Int64
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			var b []dedup.Item[pgx.Tx]
			for range 50 {
				b = append(b, item("load", fmt.Sprint(seq.Add(1)), nop))
			}
			start := time.Now()
			if err := s.Process(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		stop()
		wg.Wait()
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}
	p50, p99 := measure(nil)
	var deleted int64
	c50, c99 := measure(func(ctx context.Context) { deleted, _ = s.DeleteExpired(ctx, 1000) })
	t.Logf("batches of 50 new keys: p50 %v p99 %v alone; p50 %v p99 %v while the cleanup deleted %d expired rows", p50, p99, c50, c99, deleted)
}
