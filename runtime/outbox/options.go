package outbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/eventgen/eventgen/runtime/kafka"
)

// Defaults of the Options fields.
const (
	DefaultBatchSize         = 1000
	DefaultPollInterval      = time.Second
	DefaultMaxAttempts       = 5
	DefaultRetryBackoff      = time.Second
	DefaultMaxRetryBackoff   = time.Minute
	DefaultCleanupBatch      = 1000
	DefaultRebalanceInterval = time.Second
	DefaultStatsInterval     = 5 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
)

// Options configures a Relay. A zero field means its default, stated on
// the field; NewRelay reports every invalid field at once, in one error
// matching ErrInvalidOptions.
type Options struct {
	// Table is the outbox table. Default: "eventgen_outbox", found through
	// the search_path of the pool's connections.
	Table Table
	// Kafka configures the idempotent producer the relay publishes with
	// (kafka.NewAtLeastOnceProducer: acks=all, retries without
	// duplicates). Kafka.Brokers is required. Kafka.Logger, when nil, is
	// Logger.
	Kafka kafka.Config
	// BatchSize caps the rows read, published and deleted together.
	// Default 1000 (DefaultBatchSize); must not be negative.
	BatchSize int
	// PollInterval is how long an idle relay waits before it looks for rows
	// again without being woken by a notification: the latency when
	// notifications are off or lost. Default 1 s (DefaultPollInterval);
	// must not be negative.
	PollInterval time.Duration
	// DisableNotify makes the relay poll only, without LISTEN. Enqueue
	// notifies either way. Default false: the relay listens and wakes on
	// each committed enqueue.
	DisableNotify bool
	// MaxAttempts is how many failed publications of a row quarantine it:
	// it is no longer published, and its key's later rows wait behind it
	// until Retry releases it. Failures when no record of the batch went
	// through (Kafka unreachable) do not count. Default 5
	// (DefaultMaxAttempts); must not be negative.
	MaxAttempts int
	// RetryBackoff is how long a row that failed waits before its next
	// attempt (its key waits with it); each later failure doubles it. It
	// is also the first pause after a batch of which nothing went through.
	// Default 1 s (DefaultRetryBackoff); must not be negative.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps those waits. Default 1 min
	// (DefaultMaxRetryBackoff); must not be negative; raised to
	// RetryBackoff if lower.
	MaxRetryBackoff time.Duration
	// Retention keeps published rows for this long (marked published_at)
	// before they are deleted, CleanupBatch rows per statement. Default 0:
	// a batch's rows are deleted as soon as Kafka acknowledged them. Must
	// not be negative.
	Retention time.Duration
	// CleanupBatch caps the published rows one statement deletes when
	// Retention is set. Default 1000 (DefaultCleanupBatch); must not be
	// negative.
	CleanupBatch int
	// RebalanceInterval is how often the relay counts the live relays of
	// the table and takes or releases shards to own its fair share of them.
	// Default 1 s (DefaultRebalanceInterval); must not be negative.
	RebalanceInterval time.Duration
	// StatsInterval is how often the relay refreshes Stats (backlog,
	// oldest unpublished age, quarantined rows: one query on the table).
	// Default 5 s (DefaultStatsInterval); must not be negative.
	StatsInterval time.Duration
	// OnStats, when set, receives each refreshed Stats, from the relay's
	// statistics goroutine. Default nil.
	OnStats func(Stats)
	// ShutdownTimeout bounds, after Run's context is done, the wait for the
	// acknowledgements of records already handed to Kafka and the deletion
	// of the acknowledged rows. Rows not deleted then are published again
	// by the next relay (duplicates with the same ce_id). Default 10 s
	// (DefaultShutdownTimeout); must not be negative.
	ShutdownTimeout time.Duration
	// Logger receives the relay's diagnostics: quarantined rows, lost
	// connections, outages. Default: a logger that discards.
	Logger *slog.Logger

	hooks *hooks // tests only
}

// hooks let tests observe a relay's steps (child processes log batches to
// explain duplicates after a SIGKILL) and break it on purpose (controls).
type hooks struct {
	// publishing is called with a batch's rows before any is sent.
	publishing func(rows []row)
	// failed is called for each record Kafka did not acknowledge.
	failed func(rw *row, err error)
	// finished is called after the batch's acknowledged rows were deleted.
	finished func()
	// loseDeleteEvery > 0 skips the deletion of every n-th batch while
	// the relay goes on as if it had deleted it: the broken variant the
	// duplicate check must catch.
	loseDeleteEvery int
	batches         int
	// allInFlight sends a whole batch at once, a key's rows included: the
	// broken variant that the ordering tests must catch.
	allInFlight bool
}

// problems collects what is wrong with the options, each naming its field.
type problems []error

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, fmt.Errorf("%w: %s %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...)))
}

func notNegative[T int | time.Duration](ps *problems, field string, v T) {
	if v < 0 {
		ps.add(field, "must not be negative, got %v", v)
	}
}

// validate reports every invalid field of o.
func (o Options) validate() error {
	var ps problems
	if err := o.Table.validateAs("Options.Table"); err != nil {
		ps = append(ps, fmt.Errorf("%w: %w", ErrInvalidOptions, err))
	}
	if len(o.Kafka.Brokers) == 0 {
		ps.add("Options.Kafka.Brokers", "is empty: at least one host:port is required")
	}
	notNegative(&ps, "Options.Kafka.CloseTimeout", o.Kafka.CloseTimeout)
	notNegative(&ps, "Options.BatchSize", o.BatchSize)
	notNegative(&ps, "Options.PollInterval", o.PollInterval)
	notNegative(&ps, "Options.MaxAttempts", o.MaxAttempts)
	notNegative(&ps, "Options.RetryBackoff", o.RetryBackoff)
	notNegative(&ps, "Options.MaxRetryBackoff", o.MaxRetryBackoff)
	notNegative(&ps, "Options.Retention", o.Retention)
	notNegative(&ps, "Options.CleanupBatch", o.CleanupBatch)
	notNegative(&ps, "Options.RebalanceInterval", o.RebalanceInterval)
	notNegative(&ps, "Options.StatsInterval", o.StatsInterval)
	notNegative(&ps, "Options.ShutdownTimeout", o.ShutdownTimeout)
	return errors.Join(ps...)
}

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	o.Table = o.Table.withDefaults()
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	if o.Kafka.Logger == nil {
		o.Kafka.Logger = o.Logger
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.BatchSize, DefaultBatchSize)
	def(&o.MaxAttempts, DefaultMaxAttempts)
	def(&o.CleanupBatch, DefaultCleanupBatch)
	defDur(&o.PollInterval, DefaultPollInterval)
	defDur(&o.RetryBackoff, DefaultRetryBackoff)
	defDur(&o.MaxRetryBackoff, DefaultMaxRetryBackoff)
	defDur(&o.RebalanceInterval, DefaultRebalanceInterval)
	defDur(&o.StatsInterval, DefaultStatsInterval)
	defDur(&o.ShutdownTimeout, DefaultShutdownTimeout)
	o.MaxRetryBackoff = max(o.MaxRetryBackoff, o.RetryBackoff)
	return o
}

// backoff returns the wait after the n-th consecutive failure (1-based):
// RetryBackoff doubled n-1 times, capped at MaxRetryBackoff.
func (o Options) backoff(n int) time.Duration {
	d := o.RetryBackoff
	for i := 1; i < n && d < o.MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, o.MaxRetryBackoff)
}
