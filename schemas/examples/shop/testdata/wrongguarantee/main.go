// This program must not compile: it registers an at-most-once handler for
// OrderPlaced, an at-least-once event. wiring_test.go checks the error.
package main

import (
	"context"

	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	c, _ := shop.NewConsumer(kafka.ConsumerConfig{})
	c.HandleOrderPlaced(func(ctx context.Context, e *shop.OrderPlaced, rec kafka.AtMostOnceRecord) error {
		return nil
	})
}
