package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// The raw side of the eos-loop scenario: the consume-transform-produce loop
// a service writes by hand on sarama to do what the generated
// RunIssueReceipts pipeline does. A consumer group reads the PaymentCaptured
// topic read_committed with auto-commit off; for each batch of up to
// txnBatch records of one partition it begins a transaction, produces one
// ReceiptIssued per input (the bytes and CloudEvents headers the generated
// side writes), adds the consumed offsets with the group's metadata
// (KIP-447) and commits. Without eventgen's routing by ce_type, validation,
// retries, dead letters and rebalance checks.

// payment and receipt are the hand-written equivalents of shop.PaymentCaptured
// and shop.ReceiptIssued for encoding/json, fields in the schema's order.
type payment struct {
	PaymentID  string `json:"payment_id"`
	OrderID    string `json:"order_id"`
	Amount     money  `json:"amount"`
	CapturedAt string `json:"captured_at"`
}

type receipt struct {
	PaymentID string   `json:"payment_id"`
	OrderID   string   `json:"order_id"`
	Amount    money    `json:"amount"`
	Lines     []string `json:"lines"`
}

const (
	paymentsTopic = "shop.payments.captured"
	receiptsTopic = "shop.receipts.issued"
)

// rawReceipt is the transformation: the receipt record of one consumed
// payment record.
func rawReceipt(m *sarama.ConsumerMessage) (*sarama.ProducerMessage, error) {
	var in payment
	if err := json.Unmarshal(m.Value, &in); err != nil {
		return nil, fmt.Errorf("decoding %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	v, err := json.Marshal(&receipt{PaymentID: in.PaymentID, OrderID: in.OrderID, Amount: in.Amount, Lines: []string{"espresso machine"}})
	if err != nil {
		return nil, err
	}
	return &sarama.ProducerMessage{Topic: receiptsTopic, Key: sarama.StringEncoder(in.OrderID), Value: sarama.ByteEncoder(v), Headers: ceHeaders("shop.ReceiptIssued.v1")}, nil
}

// rawLoop is the sarama.ConsumerGroupHandler of the loop. One producer
// serves every claim, and a producer runs one transaction at a time: txMu.
type rawLoop struct {
	prod   sarama.SyncProducer
	group  string
	txMu   sync.Mutex
	failed chan error // the first error of a claim: sarama only logs it
}

func (h *rawLoop) fail(err error) error {
	select {
	case h.failed <- err:
	default:
	}
	return err
}

func (h *rawLoop) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *rawLoop) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *rawLoop) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	batch := make([]*sarama.ConsumerMessage, 0, txnBatch)
	for {
		// Block for one record, then take what is buffered, up to txnBatch.
		select {
		case <-sess.Context().Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch = append(batch[:0], m)
		}
	fill:
		for len(batch) < txnBatch {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		outs := make([]*sarama.ProducerMessage, 0, len(batch))
		for _, m := range batch {
			pm, err := rawReceipt(m)
			if err != nil {
				return h.fail(err)
			}
			outs = append(outs, pm)
		}
		if err := h.commit(sess, batch, outs); err != nil {
			return h.fail(fmt.Errorf("transaction: %w", err))
		}
	}
}

// commit writes outs and the batch's offsets in one transaction.
func (h *rawLoop) commit(sess sarama.ConsumerGroupSession, batch []*sarama.ConsumerMessage, outs []*sarama.ProducerMessage) error {
	h.txMu.Lock()
	defer h.txMu.Unlock()
	if err := h.prod.BeginTxn(); err != nil {
		return err
	}
	if err := h.prod.SendMessages(outs); err != nil {
		_ = h.prod.AbortTxn()
		return err
	}
	if err := h.prod.AddMessageToTxnWithGroupMetadata(batch[len(batch)-1], sarama.NewConsumerGroupMetadataFromSession(sess, h.group, nil), nil); err != nil {
		_ = h.prod.AbortTxn()
		return err
	}
	return h.prod.CommitTxn()
}

// rawPipeline preloads n PaymentCaptured events as genPipeline does, then
// times the hand-written loop turning them into n committed receipts (from
// creating its clients to the counter's read_committed count reaching n,
// as genPipeline's clock runs from starting the pipeline).
func rawPipeline(ctx context.Context, brokers []string, n int) (time.Duration, error) {
	if err := preloadPayments(ctx, brokers, n); err != nil {
		return 0, err
	}
	counter, err := startCounter(ctx, brokers, receiptsTopic, n)
	if err != nil {
		return 0, err
	}
	defer counter.stop()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()

	pc := idempotentConfig()
	pc.Producer.Return.Errors = true
	pc.Producer.Transaction.ID = "bench-raw-receipts-1"
	prod, err := sarama.NewSyncProducer(brokers, pc)
	if err != nil {
		return 0, err
	}
	defer prod.Close()
	const group = "bench-raw-receipts"
	sc := baseConfig()
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	cg, err := sarama.NewConsumerGroup(brokers, group, sc)
	if err != nil {
		return 0, err
	}
	defer cg.Close()
	h := &rawLoop{prod: prod, group: group, failed: make(chan error, 1)}
	errc := make(chan error, 1)
	go func() {
		for runCtx.Err() == nil {
			if err := cg.Consume(runCtx, []string{paymentsTopic}, h); err != nil && runCtx.Err() == nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	select {
	case <-counter.done:
		elapsed := time.Since(start)
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return 0, err
		}
		return elapsed, nil
	case err := <-errc:
		return 0, fmt.Errorf("loop stopped early: %w", err)
	case err := <-h.failed:
		return 0, fmt.Errorf("loop failed: %w", err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
