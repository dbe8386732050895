package kafka

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// The errors of package kafka. Returned errors wrap them (and the cause from
// sarama, where there is one) with %w: match them with errors.Is, and read
// the message for the details.
var (
	// ErrInvalidConfig is matched by the error of a constructor (or of
	// RunPipeline) given a configuration with a missing, negative or
	// otherwise invalid field. The error names every such field at once,
	// one per line, e.g. "ConsumerConfig.GroupID is required".
	ErrInvalidConfig = errors.New("eventgen: invalid configuration")

	// ErrConflictingConfig is matched when Config.Tune (or another setting)
	// changed a sarama setting that the guarantee depends on. Every such
	// setting is named, with what is required and what was found, e.g.
	// "at-least-once requires acks=all (Producer.RequiredAcks=WaitForAll),
	// got 1".
	ErrConflictingConfig = errors.New("eventgen: configuration conflicts with the guarantee")

	// ErrClosed is returned by a producer's methods after Close, and by an
	// at-least-once Send still waiting for its acknowledgement when Close
	// gave up (the record may have been written).
	ErrClosed = errors.New("eventgen: producer is closed")

	// ErrWrongGuarantee is returned when an event is sent through a producer
	// weaker than its schema requires (an at-least-once event through an
	// at-most-once producer, an exactly-once event outside a transaction).
	ErrWrongGuarantee = errors.New("eventgen: event sent through a producer weaker than its guarantee")

	// ErrGuaranteeMismatch is returned by Consumer.Run when a handler was
	// registered for an event type of another guarantee, and by RunPipeline
	// when its input or an output is not an exactly-once event.
	ErrGuaranteeMismatch = errors.New("eventgen: handler guarantee does not match the event type")

	// ErrFenced means that a newer instance took over this one's identity:
	// its TransactionalID (a transactional producer or a pipeline) or its
	// InstanceID (a static group member). This instance is a zombie and has
	// stopped writing. A fenced TransactionalProducer is closed and returns
	// ErrFenced from every later call; Consumer.Run and RunPipeline return
	// it and stop. Do not restart blindly: the newer instance owns the
	// identity. INVALID_PRODUCER_EPOCH and a transaction timed out by the
	// coordinator are not fencing (see RunPipeline and docs/producers.md).
	ErrFenced = errors.New("eventgen: fenced by a newer instance")

	// ErrProducerFatal means that a transactional producer hit an error
	// after which it cannot continue (for example UNKNOWN_SERVER_ERROR on
	// EndTxn, or an abort that failed, leaving the outcome of the
	// transaction unknown). A TransactionalProducer is closed and returns
	// it from every later call; RunPipeline returns it and stops rather
	// than keep writing. Creating a new producer, or restarting the
	// pipeline, with the same TransactionalID is safe: it aborts whatever
	// the failed one left open.
	ErrProducerFatal = errors.New("eventgen: fatal transaction error, the transactional producer was closed")

	// ErrTxnAborted is returned by Tx.Commit when the transaction was
	// aborted after an abortable error: none of its records are visible to
	// read_committed consumers and the producer is usable, so the caller may
	// run the transaction again.
	ErrTxnAborted = errors.New("eventgen: transaction aborted")

	// ErrTxnDone is returned by Tx.Send, Tx.Commit and Tx.Abort on a
	// transaction that is already committed or aborted.
	ErrTxnDone = errors.New("eventgen: transaction already finished")

	// ErrDeadLetter is returned by Consumer.Run when a record could be
	// neither handled nor dead-lettered because
	// ConsumerConfig.DisableDeadLetter is set; its offset was not
	// committed. (A failed dead-letter write is retried, not returned.)
	ErrDeadLetter = errors.New("eventgen: record could not be dead-lettered")

	// ErrHandlerPanic is matched by the error a panicking handler is
	// recovered into: it counts as a handler error (it spends an attempt,
	// then the record is dead-lettered, or dropped at most once) and its
	// text, "eventgen: handler panicked: <value>", is the dead letter's
	// reason. The stack is logged at Error level.
	ErrHandlerPanic = errors.New("eventgen: handler panicked")

	// ErrNotProduced is returned by Emitter.Emit for an event type that is
	// not among the pipeline's produces.
	ErrNotProduced = errors.New("eventgen: event type is not produced by this pipeline")

	// ErrDroppedAtClose is matched by the error AtMostOnceProducer.Close
	// returns when Config.CloseTimeout ended before every record was
	// written: records still queued are counted as Dropped at once, records
	// the client still holds when it gives up on them.
	ErrDroppedAtClose = errors.New("eventgen: at-most-once producer closed with records not sent")
)

// errStopped reports that processing of a record or batch was interrupted
// because its session ended (rebalance or shutdown); the record stays
// uncommitted. It never leaves the package.
var errStopped = errors.New("eventgen: session ended")

// conflict reports a setting that role (e.g. "at-least-once") requires and
// that the configuration does not have.
func conflict(role, format string, args ...any) error {
	return fmt.Errorf("%w: %s requires %s", ErrConflictingConfig, role, fmt.Sprintf(format, args...))
}

// fenced reports whether err says that another instance took over this
// one's TransactionalID or InstanceID: PRODUCER_FENCED or
// FENCED_INSTANCE_ID. INVALID_PRODUCER_EPOCH does not count (epochError):
// it follows an epoch bump by the coordinator, e.g. after a transaction
// timeout, and the producer can recover. A coordinator that timed out a
// transaction also answers PRODUCER_FENCED to the old epoch; callers that
// know the transaction outlived its timeout treat it as a timeout. It looks
// inside sarama.ProducerErrors, which does not unwrap.
func fenced(err error) bool {
	return anyProducerError(err, func(err error) bool {
		return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrFencedInstancedId)
	})
}

// producerFenced reports whether err is PRODUCER_FENCED: a newer producer
// with this TransactionalID, or the coordinator's answer to the old epoch
// after it timed a transaction out.
func producerFenced(err error) bool {
	return anyProducerError(err, func(err error) bool { return errors.Is(err, sarama.ErrProducerFenced) })
}

// epochError reports whether err is INVALID_PRODUCER_EPOCH: the producer's
// epoch is stale (the coordinator bumped it, e.g. after aborting a timed-out
// transaction). Recoverable: abort, or re-initialise the producer.
func epochError(err error) bool {
	return anyProducerError(err, func(err error) bool { return errors.Is(err, sarama.ErrInvalidProducerEpoch) })
}

// anyProducerError reports whether is holds for err or for one of the
// errors inside a sarama.ProducerErrors.
func anyProducerError(err error, is func(error) bool) bool {
	if is(err) {
		return true
	}
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) {
		for _, pe := range pes {
			if pe != nil && is(pe.Err) {
				return true
			}
		}
	}
	return false
}

// permanentOutputError reports whether err rejects a record for good:
// larger than Producer.MaxMessageBytes (sarama fails it in the client with a
// ConfigurationError), MESSAGE_TOO_LARGE, INVALID_RECORD, and CORRUPT_MESSAGE
// or RECORD_LIST_TOO_LARGE once sarama's own retries are spent. Sending
// such a record again fails again.
func permanentOutputError(err error) bool {
	var ce sarama.ConfigurationError
	if errors.As(err, &ce) {
		return true // e.g. "Attempt to produce message larger than configured Producer.MaxMessageBytes"
	}
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrInvalidRecord) ||
		errors.Is(err, sarama.ErrInvalidMessage) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge)
}

// flattenProducerErrors flattens sarama's ProducerErrors, which does not
// implement Unwrap, so that errors.Is finds the causes.
func flattenProducerErrors(err error) error {
	var pes sarama.ProducerErrors
	if !errors.As(err, &pes) {
		return err
	}
	errs := make([]error, 0, len(pes)+1)
	seen := map[string]bool{}
	for _, pe := range pes {
		if pe == nil || pe.Err == nil || seen[pe.Err.Error()] {
			continue
		}
		seen[pe.Err.Error()] = true
		errs = append(errs, pe.Err)
	}
	return fmt.Errorf("%d records failed: %w", len(pes), errors.Join(errs...))
}

// wrapf wraps err with a prefix, flattening sarama.ProducerErrors.
func wrapf(err error, prefix string) error {
	return fmt.Errorf("%s: %w", prefix, flattenProducerErrors(err))
}
