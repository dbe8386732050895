package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/event"
)

// Enqueue writes e to the default outbox table inside tx, the caller's
// transaction: the event is published if and only if tx commits. The
// generated Enqueue<Event> functions call it. See Table.Enqueue.
func Enqueue(ctx context.Context, tx pgx.Tx, e event.Event) error {
	return Table{}.Enqueue(ctx, tx, e)
}

// Enqueue validates e and writes it to the outbox table t inside tx: topic,
// key, payload (the event's JSON) and CloudEvents headers with a ce_id and
// ce_time assigned now, plus the traceparent of ctx. The relay publishes the
// row as it is, so a republished event keeps its ce_id. On commit the
// relays are notified (LISTEN/NOTIFY). Enqueue returns an error matching
// ErrInvalidEvent for an invalid event and ErrInvalidTable for an invalid
// t; a database error leaves tx as PostgreSQL does (aborted).
//
// A key's events are published in the order they were enqueued (the
// table's id order). When transactions that enqueue for one key overlap,
// that is the order of the Enqueue calls, not of the commits: write the
// entity first (its row lock serialises the transactions), then enqueue.
func (t Table) Enqueue(ctx context.Context, tx pgx.Tx, e event.Event) error {
	if err := t.validate(); err != nil {
		return err
	}
	if e == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	et := e.EventType()
	if et == nil || et.Topic == "" {
		return fmt.Errorf("%w: event %T has no event type or topic", ErrInvalidEvent, e)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: invalid %s event: %w", ErrInvalidEvent, et.Name, err)
	}
	s := t.stmts()
	headers := appendHeaders(make([]byte, 0, 320), et, event.NewUUID().String(), time.Now(), event.Traceparent(ctx))
	payload := e.AppendJSON(make([]byte, 0, 256))
	if _, err := tx.Exec(ctx, s.enqueue, et.Topic, e.Key(), headers, payload, s.channel); err != nil {
		return fmt.Errorf("eventgen: enqueueing %s in %s: %w", et.Name, s.table, err)
	}
	return nil
}

// appendHeaders appends the JSON object of an outbox row's headers: the
// CloudEvents binary-mode attributes every eventgen producer writes (see
// event.HeaderID and the others), and traceparent when there is one.
func appendHeaders(b []byte, et *event.Type, id string, at time.Time, traceparent string) []byte {
	start := len(b)
	add := func(k, v string) {
		b = append(b, ',')
		b = event.AppendString(b, k)
		b = append(b, ':')
		b = event.AppendString(b, v)
	}
	add(event.HeaderSpecVersion, event.SpecVersion)
	add(event.HeaderID, id)
	add(event.HeaderType, et.CEType)
	add(event.HeaderSource, et.Source)
	add(event.HeaderTime, at.UTC().Format(time.RFC3339Nano))
	add(event.HeaderContentType, event.ContentTypeJSON)
	if traceparent != "" {
		add(event.HeaderTraceparent, traceparent)
	}
	return event.CloseObject(b, start)
}
