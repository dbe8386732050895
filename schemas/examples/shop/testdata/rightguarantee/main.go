// This program is the control for wrongguarantee: the same handler with the
// record type of its event's guarantee compiles.
package main

import (
	"context"

	"github.com/eventgen/eventgen/runtime"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	c, _ := shop.NewConsumer(runtime.ConsumerConfig{})
	c.HandleOrderPlaced(func(ctx context.Context, e *shop.OrderPlaced, rec runtime.AtLeastOnceRecord) error {
		return nil
	})
}
