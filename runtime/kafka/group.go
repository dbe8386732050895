package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// groupRun is what a Consumer or a pipeline gives runGroup: who joins which
// group for which topics, and how one claim is handled.
type groupRun struct {
	kind       string // "consumer" or "pipeline": in logs and errors
	brokers    []string
	config     *sarama.Config // from Config.saramaConfig
	groupID    string
	instanceID string // "" for dynamic membership
	topics     []string
	log        *slog.Logger // carries the run's identity (group, transactional ID, ...)
	// rejoinBackoff is the wait before rejoining after a failed session.
	rejoinBackoff time.Duration
	// start is called once, after the client connected and before the
	// first session, and returns how every session of the run is handled.
	start func(*runState) sessionHooks
}

// sessionHooks is how a Consumer or a pipeline handles the sessions of its
// group, as sarama.ConsumerGroupHandler does: setup runs when a session
// starts (partitions assigned), consume once per claim, and cleanup after
// every claim of the session has returned, before the member rejoins or
// leaves (the partitions are still this member's: a pipeline commits its
// open transaction there). setup and cleanup may be nil.
type sessionHooks struct {
	setup   func(sarama.ConsumerGroupSession) error
	consume func(sarama.ConsumerGroupSession, sarama.ConsumerGroupClaim) error
	cleanup func(sarama.ConsumerGroupSession) error
}

// runState is what runGroup shares with a claim handler while it runs.
type runState struct {
	client sarama.Client // the group's client (commits go to its coordinator)
	// userCtx is the caller's context: done means shut down gracefully.
	userCtx context.Context
	// handlerCtx survives shutdown; each claim's handlers run under a
	// child of it that a claimGuard cancels after the grace period.
	handlerCtx context.Context
	stop       context.CancelCauseFunc // ends the run

	mu    sync.Mutex
	fatal error
}

// fail records err as the run's error, unless an earlier one is recorded,
// and ends the run: runGroup returns the first recorded error.
func (s *runState) fail(err error) {
	s.mu.Lock()
	if s.fatal == nil {
		s.fatal = err
	}
	s.mu.Unlock()
	s.stop(err)
}

// err returns the first error passed to fail, nil if none.
func (s *runState) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// runGroup joins g's group and runs sessions until ctx is done or a handler
// calls fail: it connects, logs the group's errors, rejoins after a failed
// session (after g.rejoinBackoff), turns FENCED_INSTANCE_ID into ErrFenced,
// and on the way out leaves the group and closes the client. It returns the
// first error passed to fail, or nil after a shutdown caused by ctx.
func runGroup(ctx context.Context, g groupRun) error {
	client, err := sarama.NewClient(g.brokers, g.config)
	if err != nil {
		return fmt.Errorf("eventgen: %s %s: %w", g.kind, g.groupID, err)
	}
	defer client.Close()
	group, err := sarama.NewConsumerGroupFromClient(g.groupID, client)
	if err != nil {
		return fmt.Errorf("eventgen: %s %s: %w", g.kind, g.groupID, err)
	}
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	st := &runState{client: client, userCtx: ctx, handlerCtx: context.WithoutCancel(ctx), stop: stop}
	h := sessionHandler{log: g.log, kind: g.kind, hooks: g.start(st)}

	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range group.Errors() {
			g.log.Warn("eventgen: "+g.kind+" group error", "error", err)
		}
	}()
	g.log.Info("eventgen: "+g.kind+" starting", "topics", g.topics)
	for runCtx.Err() == nil {
		err := group.Consume(runCtx, g.topics, h)
		switch {
		case err == nil:
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			stop(err)
		case errors.Is(err, sarama.ErrFencedInstancedId):
			st.fail(fmt.Errorf("%w: %s %s instance %q: %w", ErrFenced, g.kind, g.groupID, g.instanceID, err))
		default:
			g.log.Warn("eventgen: "+g.kind+" session failed; rejoining", "error", err)
			_ = sleepCtx(runCtx, g.rejoinBackoff)
		}
	}
	closeErr := group.Close()
	<-errsDone
	if err := st.err(); err != nil {
		g.log.Error("eventgen: "+g.kind+" stopped", "error", err)
		return err
	}
	if closeErr != nil {
		g.log.Warn("eventgen: closing "+g.kind+" group", "error", closeErr)
	}
	g.log.Info("eventgen: " + g.kind + " stopped")
	return nil
}

// sessionHandler is the sarama.ConsumerGroupHandler of runGroup: it logs
// each assignment and calls the run's hooks.
type sessionHandler struct {
	log   *slog.Logger
	kind  string
	hooks sessionHooks
}

func (h sessionHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.log.Info("eventgen: "+h.kind+" partitions assigned", "generation", sess.GenerationID(), "claims", sess.Claims())
	if h.hooks.setup == nil {
		return nil
	}
	return h.hooks.setup(sess)
}

func (h sessionHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	if h.hooks.cleanup == nil {
		return nil
	}
	return h.hooks.cleanup(sess)
}

func (h sessionHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	return h.hooks.consume(sess, claim)
}
