package kafka

import (
	"context"
	"errors"
	"sync"

	"github.com/IBM/sarama"
)

// outputs is a pipeline's producer: a sarama AsyncProducer (transactional
// for exactly-once pipelines, idempotent for at-least-once ones) whose
// results are drained by one goroutine, so that a commit can learn which
// records failed and why. Records are sent as they are emitted, while
// handlers go on with the next inputs: the broker acknowledges a round's
// outputs during the round, not at its end.
//
// With acks, every record's acknowledgement comes back (sarama's
// Successes) and wait blocks until each record sent has its answer: an
// at-least-once round needs that before it commits offsets, and so does
// isolating a poison output (round.resend). Without acks (exactly-once
// rounds otherwise), only failures come back: the transaction's commit is
// the acknowledgement (CommitTxn waits for every record in flight and fails
// if one failed), and settle collects the failures once sarama has
// answered everything. That spares sarama's producer a channel send per
// record on its response path, and the pipeline a wakeup per record.
type outputs struct {
	prod   sarama.AsyncProducer
	client sarama.Client // closed after prod (see startProducer)
	acks   bool          // Producer.Return.Successes
	// barrier asks the drain goroutine to take every failure sarama has
	// already returned (see settle).
	barrier chan chan struct{}

	// closeMu: sends hold it shared, close exclusively, so that nothing is
	// sent to a closed producer (sarama would panic).
	closeMu sync.RWMutex
	closed  bool

	mu      sync.Mutex
	settled *sync.Cond // signalled once every record sent has its answer
	sent    int        // records sent since the last reset
	done    int        // records answered since the last reset
	failed  []sendFailure
	drained chan struct{} // closed when the drain goroutine has seen both channels close
}

// sendFailure is one record the producer could not write.
type sendFailure struct {
	in  *input // the input that emitted the record (its Metadata)
	msg *sarama.ProducerMessage
	err error
}

// newOutputs starts the producer of a pipeline, with or without acks (the
// Producer.Return.Successes of a copy of sc): for a transactional
// configuration, InitProducerID runs here, aborting what a predecessor with
// the same TransactionalID left open and fencing it.
func newOutputs(brokers []string, sc *sarama.Config, acks bool) (*outputs, error) {
	c := *sc
	c.Producer.Return.Successes = acks
	prod, client, err := startProducer(brokers, &c)
	if err != nil {
		return nil, err
	}
	o := &outputs{prod: prod, client: client, acks: acks, barrier: make(chan chan struct{}), drained: make(chan struct{})}
	o.settled = sync.NewCond(&o.mu)
	go o.drain()
	return o, nil
}

// drain reads every answer of the producer until Close closes its channels.
func (o *outputs) drain() {
	defer close(o.drained)
	successes, errs := o.prod.Successes(), o.prod.Errors()
	for successes != nil || errs != nil {
		select {
		case _, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			o.answer(nil)
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			o.answer(pe)
		case done := <-o.barrier:
			// Every failure settle waits for is already in the channel's
			// buffer (sarama returns it before the record leaves its
			// in-flight count): take them all, then release it.
			for len(errs) > 0 {
				o.answer(<-errs)
			}
			close(done)
		}
	}
	// Nothing answers any more: release whoever still waits.
	o.mu.Lock()
	o.done = o.sent
	o.settled.Broadcast()
	o.mu.Unlock()
}

func (o *outputs) answer(pe *sarama.ProducerError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done++
	if pe != nil && pe.Msg != nil {
		in, _ := pe.Msg.Metadata.(*input)
		o.failed = append(o.failed, sendFailure{in: in, msg: pe.Msg, err: pe.Err})
	}
	// Waiters wait for every record to be answered: waking them for each
	// answer would cost a context switch per record.
	if o.done >= o.sent {
		o.settled.Broadcast()
	}
}

// send hands each record to the producer, tagged with the input that
// emitted it. sarama keeps per-send state in a ProducerMessage (partition,
// sequence number, retries), so a record sent again (a replay: again) goes
// as a new copy of the record as emitted; sarama does not touch the fields
// copied (Topic, Key, Value, Headers), and a replay starts only once every
// earlier send has its answer.
func (o *outputs) send(in *input, msgs []*sarama.ProducerMessage, again bool) {
	if len(msgs) == 0 {
		return
	}
	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	if o.closed {
		return
	}
	o.mu.Lock()
	o.sent += len(msgs)
	o.mu.Unlock()
	for _, pm := range msgs {
		if again {
			pm = &sarama.ProducerMessage{Topic: pm.Topic, Key: pm.Key, Value: pm.Value, Headers: pm.Headers}
		}
		pm.Metadata = in
		o.prod.Input() <- pm
	}
}

// wait blocks until every record sent so far has its answer, or ctx is done.
// It returns the failures since the last reset. Only with acks: without,
// successes are never counted (errNoAcks).
func (o *outputs) wait(ctx context.Context) ([]sendFailure, error) {
	if !o.acks {
		return nil, errNoAcks
	}
	stop := context.AfterFunc(ctx, func() {
		o.mu.Lock()
		o.settled.Broadcast()
		o.mu.Unlock()
	})
	defer stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.done < o.sent {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o.settled.Wait()
	}
	return o.failed, nil
}

// settle returns the failures since the last reset of a producer that has
// answered every record sent: after CommitTxn or AbortTxn returned (sarama
// waits for every record in flight first) or after close. It is how a
// producer without acks learns its failures.
func (o *outputs) settle() []sendFailure {
	done := make(chan struct{})
	select {
	case o.barrier <- done:
		<-done
	case <-o.drained: // closed: the drain goroutine took everything
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed
}

// failures returns the failures since the last reset once every record sent
// has its answer: wait with acks, settle without (the caller has ended the
// transaction or closed the producer).
func (o *outputs) failures(ctx context.Context) ([]sendFailure, error) {
	if o.acks {
		return o.wait(ctx)
	}
	return o.settle(), nil
}

// reset starts a new round: the counts and failures of the last one are
// forgotten. Call it only once every record sent has its answer.
func (o *outputs) reset() {
	o.mu.Lock()
	o.sent, o.done, o.failed = 0, 0, nil
	o.mu.Unlock()
}

// close closes the producer and waits for the drain goroutine. Closing
// twice is a no-op.
func (o *outputs) close() error {
	o.closeMu.Lock()
	defer o.closeMu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	err := o.prod.Close()
	<-o.drained
	_ = o.client.Close()
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) && len(pes) == 0 {
		return nil
	}
	return err
}

// failuresError makes one error of failed sends, as sarama's
// ProducerErrors, so that the classifiers (fenced, epochError, ...) and
// flattenProducerErrors see every cause.
func failuresError(fs []sendFailure) error {
	pes := make(sarama.ProducerErrors, 0, len(fs))
	for _, f := range fs {
		pes = append(pes, &sarama.ProducerError{Msg: f.msg, Err: f.err})
	}
	return pes
}

// errNoAcks is wait's error on a producer without acks: a bug in the
// pipeline's choice of producer (see engine.setAcks).
var errNoAcks = errors.New("eventgen: internal error: waiting for acknowledgements of a producer that does not return them")
