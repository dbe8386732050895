package kafka

import (
	"context"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds how often a consumer or pipeline runs a failing handler
// for one record before it dead-letters the record. Waits grow exponentially
// with jitter and end early when the context is cancelled. A zero field
// means its default; a negative one is invalid.
type RetryPolicy struct {
	// MaxAttempts is how many times the handler runs for one record, the
	// first run included. Default 5. 1 disables retries.
	MaxAttempts int
	// Backoff is the wait before the second attempt; each later wait
	// doubles. Default 100ms.
	Backoff time.Duration
	// MaxBackoff caps one wait. Default 5s; raised to Backoff if lower.
	MaxBackoff time.Duration
}

// Default retry settings, see RetryPolicy.
const (
	DefaultMaxAttempts = 5
	DefaultBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// check records every negative field of p; field names p (e.g.
// "ConsumerConfig.Retry").
func (p RetryPolicy) check(ps *problems, field string) {
	notNegative(ps, field+".MaxAttempts", p.MaxAttempts)
	notNegative(ps, field+".Backoff", p.Backoff)
	notNegative(ps, field+".MaxBackoff", p.MaxBackoff)
}

// withDefaults returns p with the zero fields set to their defaults and
// MaxBackoff raised to Backoff if it is lower.
func (p RetryPolicy) withDefaults() RetryPolicy {
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
	return p
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
