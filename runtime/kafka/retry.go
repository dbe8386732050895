package kafka

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds how often a consumer or pipeline runs a failing handler
// for one record before it dead-letters the record. Waits grow exponentially
// with jitter and end early when the context is cancelled.
type RetryPolicy struct {
	// MaxAttempts is how many times the handler runs for one record, the
	// first run included. Default 5. 1 disables retries.
	MaxAttempts int
	// Backoff is the wait before the second attempt; each later wait
	// doubles. Default 100ms.
	Backoff time.Duration
	// MaxBackoff caps one wait. Default 5s.
	MaxBackoff time.Duration
}

// Default retry settings, see RetryPolicy.
const (
	DefaultMaxAttempts = 5
	DefaultBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// withDefaults fills zero fields and rejects negative ones by name.
func (p RetryPolicy) withDefaults() (RetryPolicy, error) {
	if p.MaxAttempts < 0 || p.Backoff < 0 || p.MaxBackoff < 0 {
		return p, errors.New("eventgen: Retry.MaxAttempts, Retry.Backoff and Retry.MaxBackoff must not be negative")
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.Backoff == 0 {
		p.Backoff = DefaultBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	if p.MaxBackoff < p.Backoff {
		p.MaxBackoff = p.Backoff
	}
	return p, nil
}

// delay returns the wait after the given failed attempt (1-based): Backoff
// doubled attempt-1 times, capped at MaxBackoff, then drawn uniformly from
// [d/2, d] so that consumers failing together do not retry in lockstep.
func (p RetryPolicy) delay(attempt int) time.Duration {
	d := p.Backoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	return d
}

// sleepCtx waits for d or until ctx is done, whichever is first, and returns
// ctx.Err() in the second case.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
