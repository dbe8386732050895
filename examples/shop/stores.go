package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
// when -postgres and -redis are given. In PostgreSQL they live in a schema
// of their own, dropped at the end, with the demo's tables.
type stores struct {
	orders     dedup.Store[pgx.Tx]
	payments   dedup.OffsetStore[pgx.Tx]
	deliveries dedup.Store[dedup.NoTx]

	pgName, redisName        string
	ordersTable, ledgerTable string // quoted, schema-qualified
	pool                     *pgxpool.Pool
	dropSchema               func()
	redis                    *redis.Client
	stopCleanup              context.CancelFunc
	cleanupDone              chan struct{}
}

func openStores(ctx context.Context, o options) (st *stores, err error) {
	st = &stores{pgName: "memory", redisName: "memory"}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if o.postgres == "" {
		mem := dedup.NewMemory[pgx.Tx](0)
		st.orders, st.payments = mem, mem
	} else {
		pool, err := pgdedup.Connect(ctx, o.postgres) // its errors never show the password
		if err != nil {
			return st, err
		}
		st.pool = pool
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		schema := "shop_demo_dedup_" + hex.EncodeToString(b)
		opts := pgdedup.Options{Schema: schema}
		// The tables of the generated shop_postgres.gen.sql (and the schema).
		if err := pgdedup.Migrate(ctx, pool, opts); err != nil {
			return st, err
		}
		st.dropSchema = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = pool.Exec(ctx, `DROP SCHEMA "`+schema+`" CASCADE`)
		}
		st.ordersTable, st.ledgerTable = `"`+schema+`".orders`, `"`+schema+`".ledger`
		_, err = pool.Exec(ctx, `CREATE TABLE `+st.ordersTable+` (order_id text PRIMARY KEY, customer_id text NOT NULL, cents bigint NOT NULL);
CREATE TABLE `+st.ledgerTable+` (payment_id text PRIMARY KEY, cents bigint NOT NULL)`)
		if err != nil {
			return st, fmt.Errorf("demo tables: %w", err)
		}
		s, err := pgdedup.New(pool, opts)
		if err != nil {
			return st, err
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
		st.deliveries = dedup.NewMemory[dedup.NoTx](0)
	} else {
		c, err := redisdedup.Connect(ctx, o.redis)
		if err != nil {
			return st, err
		}
		st.redis = c
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		// A prefix of the run's own: its keys expire with their TTL.
		s, err := redisdedup.New(c, redisdedup.Options{Prefix: "shop-demo:" + hex.EncodeToString(b) + ":", Lease: 10 * time.Second})
		if err != nil {
			return st, err
		}
		st.deliveries, st.redisName = s, "Redis ("+redisdedup.Redact(o.redis)+")"
	}
	return st, nil
}

func (st *stores) close() {
	if st.stopCleanup != nil {
		st.stopCleanup()
		<-st.cleanupDone
	}
	if st.dropSchema != nil {
		st.dropSchema()
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
	pool  *pgxpool.Pool
	table string // quoted, schema-qualified

	mu  sync.Mutex
	mem map[string]int64
}

func (l *ledger) credit(ctx context.Context, tx pgx.Tx, e *shop.PaymentCaptured) error {
	if tx != nil {
		_, err := tx.Exec(ctx, `INSERT INTO `+l.table+` (payment_id, cents) VALUES ($1, $2)`, e.PaymentID.String(), e.Amount.Cents)
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
		if err := l.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(cents), 0) FROM `+l.table).Scan(&n, &cents); err != nil {
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
