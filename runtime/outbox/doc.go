// Package outbox is eventgen's transactional outbox on PostgreSQL (pgx v5):
// a service writes an event to the outbox table in the same transaction as
// its business data (Enqueue, or the generated Enqueue<Event>), and a Relay
// publishes the table's rows to Kafka through runtime/kafka's idempotent
// producer, then deletes them. The event is published if and only if the
// transaction commits, it keeps the CloudEvents id it was given at enqueue
// however often it is published, and a key's events are published in the
// order they were enqueued, with any number of relays running.
//
//	if err := outbox.Migrate(ctx, pool, outbox.Table{}); err != nil { ... }
//	relay, err := outbox.NewRelay(pool, outbox.Options{Kafka: kafka.Config{Brokers: brokers}})
//	go relay.Run(ctx)
//
//	tx, _ := pool.Begin(ctx)
//	// ... business writes ...
//	err = shop.EnqueueOrderPlaced(ctx, tx, ev)
//	err = tx.Commit(ctx)
//
// docs/outbox.md describes the guarantees, the ordering and the operations
// (backlog, quarantine, retention, several relays).
package outbox
