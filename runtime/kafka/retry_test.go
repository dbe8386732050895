package kafka

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetryPolicy(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	if p.MaxAttempts != DefaultMaxAttempts || p.Backoff != DefaultBackoff || p.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("defaults: %+v", p)
	}
	p = RetryPolicy{MaxAttempts: 10, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 9: time.Second} {
		for range 50 {
			if d := p.delay(attempt); d < want/2 || d > want {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
	var ps problems
	if (RetryPolicy{Backoff: -1}).check(&ps, "Retry"); ps.err() == nil {
		t.Fatal("negative Backoff accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	// An hour against a minute: a loaded machine cannot blur the two.
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Minute {
		t.Fatalf("sleepCtx ignored cancellation: %v after %v", err, time.Since(start))
	}
}
