package kafka

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// Counter names one thing producers and consumers count.
type Counter int

const (
	// Sent counts records handed to Kafka by a producer (attempts, not
	// acknowledgements; an at-most-once record is Sent even if later lost).
	Sent Counter = iota + 1
	// Acked counts records the broker acknowledged (at-least-once and
	// exactly-once producers; for a transaction, when it committed).
	Acked
	// Dropped counts records given up on: an at-most-once producer whose
	// queue was full or whose send failed, an at-most-once handler error,
	// records of an aborted transaction.
	Dropped
	// Retried counts records the producer sent again after a failure.
	Retried
	// DeadLettered counts records a consumer moved to the dead-letter topic.
	DeadLettered
	// Duplicates counts redeliveries a consumer's dedup store absorbed.
	Duplicates
	// Handled counts records a consumer's handler processed successfully.
	Handled
	// Committed counts records whose offsets a consumer committed.
	Committed
	// Skipped counts records a consumer or pipeline committed without
	// handling because they are of another event of the schema, one with
	// no handler there (routing is by ce_type).
	Skipped
	// InfraRetried counts failed calls to the runtime's own dependencies
	// (the dead-letter write, a dedup store, a key busy in another
	// worker) that were retried with backoff: they pause the record's
	// partition and do not spend the record's attempts.
	InfraRetried
)

// String returns the counter's snake_case name, e.g. "dead_lettered". (A
// switch rather than a lookup table: the package has no mutable globals.)
func (c Counter) String() string {
	switch c {
	case Sent:
		return "sent"
	case Acked:
		return "acked"
	case Dropped:
		return "dropped"
	case Retried:
		return "retried"
	case DeadLettered:
		return "dead_lettered"
	case Duplicates:
		return "duplicates"
	case Handled:
		return "handled"
	case Committed:
		return "committed"
	case Skipped:
		return "skipped"
	case InfraRetried:
		return "infra_retried"
	}
	return "counter(" + strconv.Itoa(int(c)) + ")"
}

// Metrics receives counter increments. event is the schema name of the event
// (EventType.Name), or a topic name where no event type is known. Count is
// called on hot paths and from several goroutines: implementations must be
// safe for concurrent use and must not block.
type Metrics interface {
	Count(event string, c Counter, n int64)
}

// MetricsFunc adapts a function to Metrics.
type MetricsFunc func(event string, c Counter, n int64)

// Count calls f.
func (f MetricsFunc) Count(event string, c Counter, n int64) { f(event, c, n) }

type nopMetrics struct{}

func (nopMetrics) Count(string, Counter, int64) {}

// CounterKey identifies one counter of one event in a Snapshot.
type CounterKey struct {
	Event   string
	Counter Counter
}

// Counters is a concurrency-safe, in-memory Metrics for tests and examples.
// The zero value is ready to use.
type Counters struct {
	mu sync.RWMutex
	m  map[CounterKey]*atomic.Int64
}

// Count implements Metrics.
func (cs *Counters) Count(event string, c Counter, n int64) {
	k := CounterKey{event, c}
	cs.mu.RLock()
	v := cs.m[k]
	cs.mu.RUnlock()
	if v == nil {
		cs.mu.Lock()
		if cs.m == nil {
			cs.m = make(map[CounterKey]*atomic.Int64)
		}
		if v = cs.m[k]; v == nil {
			v = new(atomic.Int64)
			cs.m[k] = v
		}
		cs.mu.Unlock()
	}
	v.Add(n)
}

// Get returns the current value of one counter of one event.
func (cs *Counters) Get(event string, c Counter) int64 {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	if v := cs.m[CounterKey{event, c}]; v != nil {
		return v.Load()
	}
	return 0
}

// Snapshot returns a copy of every counter.
func (cs *Counters) Snapshot() map[CounterKey]int64 {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	out := make(map[CounterKey]int64, len(cs.m))
	for k, v := range cs.m {
		out[k] = v.Load()
	}
	return out
}
