package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/outbox"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

// shipments is the outbox part of the demo: the warehouse writes each
// shipment and its OrderShipped event in one PostgreSQL transaction
// (shop.EnqueueOrderShipped), some transactions roll back, and a relay
// publishes what committed. It runs in a schema of its own, dropped at the
// end, in the database of -postgres.
type shipments struct {
	total, rolledBack int
	pool              *pgxpool.Pool
	schema            string
	dropSchema        func()

	committed  sync.Map // order ID → struct{}, shipments that committed
	received   sync.Map // order ID → struct{}
	unique     atomic.Int64
	phantom    atomic.Int64 // events for shipments that rolled back (must stay 0)
	relayStats func() outbox.Stats
}

// newShipments connects to dsn and prepares a fresh schema with the
// shipments table and the outbox table.
func newShipments(ctx context.Context, dsn string, total int) (*shipments, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("-postgres is not a valid PostgreSQL connection URL")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "shop_demo_" + hex.EncodeToString(b)
	admin, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", redact(dsn), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, err
	}
	s := &shipments{total: total, schema: schema, dropSchema: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy()); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	}}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		s.dropSchema()
		return nil, err
	}
	// What a service's migrations would run: its own table, and the outbox
	// (the same DDL the generator writes into the schema's SQL file).
	if _, err := s.pool.Exec(ctx, "CREATE TABLE shipments (order_id uuid PRIMARY KEY, carrier text NOT NULL)"); err == nil {
		err = outbox.Migrate(ctx, s.pool, outbox.Table{})
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *shipments) close() {
	s.pool.Close()
	s.dropSchema()
}

// handle is the OrderShipped handler: it counts each order once.
func (s *shipments) handle(ctx context.Context, e *shop.OrderShipped, rec kafka.AtLeastOnceRecord) error {
	if _, ok := s.committed.Load(e.OrderID); !ok {
		s.phantom.Add(1)
	}
	if _, dup := s.received.LoadOrStore(e.OrderID, struct{}{}); !dup {
		s.unique.Add(1)
	}
	return nil
}

// runRelay publishes the outbox until ctx is done.
func (s *shipments) runRelay(ctx context.Context, cfg kafka.Config) error {
	r, err := outbox.NewRelay(s.pool, outbox.Options{Kafka: cfg})
	if err != nil {
		return err
	}
	s.relayStats = r.Stats
	return r.Run(ctx)
}

// ship writes the shipments: one transaction each, every tenth rolled back
// after its writes (the service failed before committing).
func (s *shipments) ship(ctx context.Context) error {
	for i := range s.total {
		id := event.NewUUID()
		fail := i%10 == 9
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO shipments (order_id, carrier) VALUES ($1, $2)", id.String(), "parcel-post"); err != nil {
				return err
			}
			if err := shop.EnqueueOrderShipped(ctx, tx, &shop.OrderShipped{OrderID: id, Carrier: "parcel-post", ShippedAt: time.Now()}); err != nil {
				return err
			}
			if fail {
				return errRolledBack
			}
			return nil
		})
		switch {
		case errors.Is(err, errRolledBack):
			s.rolledBack++
		case err != nil:
			return fmt.Errorf("shipment: %w", err)
		default:
			s.committed.Store(id, struct{}{})
		}
	}
	return nil
}

var errRolledBack = errors.New("the warehouse failed before committing")

// done reports whether every committed shipment's event has arrived.
func (s *shipments) done() bool { return s.unique.Load() == int64(s.total-s.rolledBack) }

func (s *shipments) report(out io.Writer) {
	published := uint64(0)
	if s.relayStats != nil {
		published = s.relayStats().Published
	}
	fmt.Fprintf(out, "outbox: %d shipments written, %d rolled back → the relay published %d OrderShipped, %d received, %d for a rolled-back shipment\n",
		s.total, s.rolledBack, published, s.unique.Load(), s.phantom.Load())
}

// redact returns a connection URL without its password.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "(the -postgres connection string)"
}
