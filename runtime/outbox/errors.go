package outbox

import "errors"

// The errors of package outbox. Returned errors wrap them with %w: match
// them with errors.Is, and read the message for the details.
var (
	// ErrInvalidOptions is matched by NewRelay's error for invalid
	// Options; the error names every invalid field, one per line, e.g.
	// "Options.Kafka.Brokers is empty".
	ErrInvalidOptions = errors.New("eventgen: invalid outbox options")

	// ErrInvalidTable is matched when a Table's schema or name is not a
	// plain SQL identifier (lower-case letters, digits, underscores), by
	// Enqueue, Migrate, Retry and NewRelay; the error matches
	// templates.ErrInvalidName too, as the dedup store's does.
	ErrInvalidTable = errors.New("eventgen: invalid outbox table name")

	// ErrNoTable is returned by Relay.Run, Stats and Retry when the outbox
	// table does not exist: run Migrate, or apply the generated SQL.
	ErrNoTable = errors.New("eventgen: outbox table does not exist")

	// ErrInvalidEvent is matched by Enqueue's error for an event that
	// cannot be enqueued: nil, without a type or topic, or failing its
	// Validate.
	ErrInvalidEvent = errors.New("eventgen: event cannot be enqueued")
)
