// This program is the control for wrongguarantee: the same handler with the
// record type of its event's guarantee compiles.
package main

import (
	"context"

	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	c, _ := shop.NewConsumer(kafka.ConsumerConfig{})
	c.HandlePriceChanged(func(ctx context.Context, e *shop.PriceChanged, rec kafka.AtLeastOnceRecord) error {
		return nil
	})
}
