package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/dedup/redisdedup"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// stores are the demo's dedup stores: in memory, or PostgreSQL and Redis
// when -postgres and -redis are given.
type stores struct {
	orders    dedup.Store[pgx.Tx]
	payments  dedup.OffsetStore[pgx.Tx]
	shipments dedup.Store[dedup.NoTx]

	pgName, redisName string
	pool              *pgxpool.Pool
	redis             *redis.Client
	stopCleanup       context.CancelFunc
	cleanupDone       chan struct{}
}

func openStores(ctx context.Context, o options, out io.Writer) (*stores, error) {
	st := &stores{pgName: "memory", redisName: "memory"}
	if o.postgres == "" {
		mem := dedup.NewMemory[pgx.Tx](0)
		st.orders, st.payments = mem, mem
	} else {
		pool, err := pgdedup.Connect(ctx, o.postgres) // its errors never show the password
		if err != nil {
			return nil, err
		}
		st.pool = pool
		// The tables of the generated shop_postgres.gen.sql, and the demo's own.
		if err := pgdedup.Migrate(ctx, pool, pgdedup.Options{}); err != nil {
			st.close()
			return nil, err
		}
		_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS shop_demo_orders (order_id text PRIMARY KEY, customer_id text NOT NULL, cents bigint NOT NULL);
CREATE TABLE IF NOT EXISTS shop_demo_ledger (payment_id text PRIMARY KEY, run text NOT NULL, cents bigint NOT NULL)`)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("demo tables: %w", err)
		}
		s, err := pgdedup.New(pool, pgdedup.Options{})
		if err != nil {
			st.close()
			return nil, err
		}
		st.orders, st.payments, st.pgName = s, s, "PostgreSQL ("+pgdedup.Redact(o.postgres)+")"
		cctx, cancel := context.WithCancel(context.Background())
		st.stopCleanup, st.cleanupDone = cancel, make(chan struct{})
		go func() {
			defer close(st.cleanupDone)
			_ = s.RunCleanup(cctx, pgdedup.CleanupOptions{Interval: time.Minute})
		}()
	}
	if o.redis == "" {
		st.shipments = dedup.NewMemory[dedup.NoTx](0)
	} else {
		c, err := redisdedup.Connect(ctx, o.redis)
		if err != nil {
			st.close()
			return nil, err
		}
		st.redis = c
		s, err := redisdedup.New(c, redisdedup.Options{Prefix: "shop-demo:dedup:", Lease: 10 * time.Second})
		if err != nil {
			st.close()
			return nil, err
		}
		st.shipments, st.redisName = s, "Redis ("+redisdedup.Redact(o.redis)+")"
	}
	return st, nil
}

func (st *stores) close() {
	if st.stopCleanup != nil {
		st.stopCleanup()
		<-st.cleanupDone
	}
	if st.pool != nil {
		st.pool.Close()
	}
	if st.redis != nil {
		st.redis.Close()
	}
}

// ledger is what PaymentCaptured credits: a table written in the store's
// transaction (pool set), or, with the in-memory store (tx nil), a map.
type ledger struct {
	pool *pgxpool.Pool
	run  string // the demo run's consumer group: the table outlives runs

	mu  sync.Mutex
	mem map[string]int64
}

func (l *ledger) credit(ctx context.Context, tx pgx.Tx, e *shop.PaymentCaptured) error {
	if tx != nil {
		_, err := tx.Exec(ctx, `INSERT INTO shop_demo_ledger (payment_id, run, cents) VALUES ($1, $2, $3)`, e.PaymentID.String(), l.run, e.Amount.Cents)
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mem == nil {
		l.mem = map[string]int64{}
	}
	if _, dup := l.mem[e.PaymentID.String()]; dup {
		return fmt.Errorf("payment %s credited twice", e.PaymentID)
	}
	l.mem[e.PaymentID.String()] = e.Amount.Cents
	return nil
}

// sums returns how many payments the ledger holds and their total: what
// was committed, read back from the table when there is one.
func (l *ledger) sums() (n, cents int64) {
	if l.pool != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(cents), 0) FROM shop_demo_ledger WHERE run = $1`, l.run).Scan(&n, &cents); err != nil {
			return -1, -1
		}
		return n, cents
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.mem {
		n, cents = n+1, cents+c
	}
	return n, cents
}

func (l *ledger) count() int64 {
	n, _ := l.sums()
	return n
}

func (l *ledger) total() int64 {
	_, c := l.sums()
	return c
}
