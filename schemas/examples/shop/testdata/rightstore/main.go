// This program is the control for wrongstore: the same handlers with the
// stores their schema's dedup settings call for compile.
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
	c.HandleOrderPlaced(dedup.NewMemory[pgx.Tx](0), func(ctx context.Context, e *shop.OrderPlaced, tx pgx.Tx, rec kafka.AtLeastOnceRecord) error {
		return nil
	})
	c.HandleOrderDelivered(dedup.NewMemory[dedup.NoTx](0), func(ctx context.Context, e *shop.OrderDelivered, rec kafka.AtLeastOnceRecord) error {
		return nil
	})
}
