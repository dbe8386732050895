// This program must not compile: it registers an at-most-once handler for
// PriceChanged, an at-least-once event. wiring_test.go checks the error.
package main

import (
	"context"

	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/schemas/examples/shop"
)

func main() {
	c, _ := shop.NewConsumer(kafka.ConsumerConfig{})
	c.HandlePriceChanged(func(ctx context.Context, e *shop.PriceChanged, rec kafka.AtMostOnceRecord) error {
		return nil
	})
}
