// This program must not compile: it registers OrderPlaced (dedup store
// postgres, whose handler receives the pgx transaction) with a store
// without transactions, and OrderDelivered (dedup store redis) with a
// PostgreSQL-typed store. wiring_test.go checks the errors.
package main

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	c, _ := shop.NewConsumer(kafka.ConsumerConfig{})
	c.HandleOrderPlaced(dedup.NewMemory[dedup.NoTx](0), func(ctx context.Context, e *shop.OrderPlaced, tx pgx.Tx, rec kafka.AtLeastOnceRecord) error {
		return nil
	})
	c.HandleOrderDelivered(dedup.NewMemory[pgx.Tx](0), func(ctx context.Context, e *shop.OrderDelivered, rec kafka.AtLeastOnceRecord) error {
		return nil
	})
}
