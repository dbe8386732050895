// This program must not compile: it registers an at-most-once handler for
// OrderPlaced, an at-least-once event. wiring_test.go checks the error.
package main

import (
	"context"

	"github.com/eventgen/eventgen/runtime"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	c, _ := shop.NewConsumer(runtime.ConsumerConfig{})
	c.HandleOrderPlaced(func(ctx context.Context, e *shop.OrderPlaced, rec runtime.AtMostOnceRecord) error {
		return nil
	})
}
