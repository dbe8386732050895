package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/IBM/sarama"
)

// Error classes of a handler (see docs/consumers.md, "Error classes"):
//
//   - an error returned by a handler spends one of the record's attempts
//     (RetryPolicy.MaxAttempts); after the last one the record is
//     dead-lettered;
//   - an error marked with Permanent dead-letters the record at once;
//   - a panic is recovered into an error matching ErrHandlerPanic (the stack
//     goes to the log at Error level) and spends an attempt like any error;
//   - an error of the runtime's own dependencies (the dead-letter write,
//     a dedup store, a key busy in another worker) is not the record's
//     fault: it is retried with backoff, without spending attempts, pausing
//     only the record's partition, and counted as InfraRetried.

// Permanent marks err as permanent: retrying cannot help (the event is
// invalid for this service, a referenced entity does not exist, ...). An
// at-least-once consumer or a pipeline dead-letters the record at once,
// without retries; an at-most-once consumer drops it, as any error.
// Permanent(nil) is nil. The returned error's text is err's, and errors.Is
// and errors.As see through it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// panicError is a recovered handler panic. It matches ErrHandlerPanic and,
// when the panic value is an error, unwraps to it.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("%v: %v", ErrHandlerPanic, e.v) }
func (e *panicError) Is(target error) bool {
	return target == ErrHandlerPanic
}
func (e *panicError) Unwrap() error {
	if err, ok := e.v.(error); ok {
		return err
	}
	return nil
}

// safely runs fn and turns a panic into a *panicError, logging the value and
// the stack of the panicking goroutine at Error level.
// where locates the record in the log (key-value pairs).
func safely(log *slog.Logger, where []any, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = recovered(log, v, where...)
		}
	}()
	return fn()
}

// recovered logs a recovered panic value v with the panicking goroutine's
// stack (call it from the deferred function) and returns it as a
// *panicError.
func recovered(log *slog.Logger, v any, where ...any) error {
	log.Error("eventgen: handler panicked; recovered as a handler error",
		append(where[:len(where):len(where)], "panic", fmt.Sprint(v), "stack", string(debug.Stack()))...)
	return &panicError{v}
}

// claimGuard runs the handler calls of one claim (one partition in one
// session). Handlers get its ctx: it carries the values of the caller's
// context and is not cancelled when the session ends (shutdown or
// revocation), but grace later; a handler that has not returned grace after
// that is abandoned (see call).
type claimGuard struct {
	ctx     context.Context
	abandon chan struct{} // closed when in-flight handlers are abandoned
	done    chan struct{} // closed by release
	log     *slog.Logger
}

// errGraceExpired is the cause of a handler context cancelled by a claim's
// end plus the grace period.
var errGraceExpired = errors.New("eventgen: partition revoked or consumer shutting down, and the shutdown grace period expired")

// newClaimGuard returns the guard of a claim of sess; release it when the
// claim ends.
func newClaimGuard(st *runState, sess sarama.ConsumerGroupSession, grace time.Duration, log *slog.Logger) *claimGuard {
	ctx, cancel := context.WithCancelCause(st.handlerCtx)
	g := &claimGuard{ctx: ctx, abandon: make(chan struct{}), done: make(chan struct{}), log: log}
	go func() {
		defer cancel(errGraceExpired)
		select {
		case <-sess.Context().Done():
		case <-g.done:
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-g.done:
			return
		}
		cancel(errGraceExpired)
		t.Reset(grace)
		select {
		case <-t.C:
			close(g.abandon)
		case <-g.done:
		}
	}()
	return g
}

// release ends the guard: a handler still running (abandoned) sees its
// context cancelled.
func (g *claimGuard) release() { close(g.done) }

// call runs fn (one handler attempt, or a dedup store call running some) in its
// own goroutine with g.ctx, recovering a panic into an error. It returns
// fn's error, or an error matching errStopped when the record must be left
// uncommitted for redelivery: fn failed after g.ctx was cancelled (the error
// is the cancellation's, not the record's), or fn was abandoned. Go cannot
// stop a goroutine: an abandoned handler keeps running until it returns, and
// its result is ignored.
// where locates the record in the log (key-value pairs).
func (g *claimGuard) call(fn func(context.Context) error, where ...any) error {
	res := make(chan error, 1)
	go func() { res <- safely(g.log, where, func() error { return fn(g.ctx) }) }()
	select {
	case err := <-res:
		if err != nil && g.ctx.Err() != nil {
			return fmt.Errorf("%w: handler returned after its context was cancelled: %v", errStopped, err)
		}
		return err
	case <-g.abandon:
		g.log.Error("eventgen: handler ignored its cancelled context past the shutdown grace period; abandoned (its goroutine keeps running), record left uncommitted", where...)
		return fmt.Errorf("%w: handler abandoned", errStopped)
	}
}

// detach runs loop, a claim's whole processing loop that calls handlers
// with inline, in a goroutine of its own, and waits until loop returns or
// the guard abandons it (a handler that ignored its cancelled context one
// more grace period). It reports whether loop returned. An abandoned loop
// keeps running until its handler returns; it must then add nothing (see
// abandoned). One goroutine per claim rather than one per handler call:
// handing every record to another goroutine cost a quarter of a
// pipeline's throughput.
func (g *claimGuard) detach(loop func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop()
	}()
	select {
	case <-done:
		return true
	case <-g.abandon:
		g.log.Error("eventgen: handler ignored its cancelled context past the shutdown grace period; abandoned (its goroutine keeps running), record left uncommitted")
		return false
	}
}

// abandoned reports whether the guard gave up on its claim's loop.
func (g *claimGuard) abandoned() bool {
	select {
	case <-g.abandon:
		return true
	default:
		return false
	}
}

// inline runs fn (attempt of the handler of record m) in the calling
// goroutine with g.ctx, recovering a panic into an error. It returns fn's
// error, or an error matching errStopped when fn failed after g.ctx was
// cancelled (the error is the cancellation's, not the record's) or the loop
// was abandoned meanwhile. The record's place is put into words only for
// a panic's log: this runs once per record of a pipeline.
func (g *claimGuard) inline(fn func(context.Context) error, m *sarama.ConsumerMessage, attempt int) (err error) {
	func() {
		defer func() {
			if v := recover(); v != nil {
				err = recovered(g.log, v, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "attempt", attempt)
			}
		}()
		err = fn(g.ctx)
	}()
	if g.abandoned() {
		return fmt.Errorf("%w: handler abandoned", errStopped)
	}
	if err != nil && g.ctx.Err() != nil {
		return fmt.Errorf("%w: handler returned after its context was cancelled: %v", errStopped, err)
	}
	return err
}
