package kafka

import "github.com/IBM/sarama"

// nextBatch waits for the next record of claim, then adds the records that
// are already buffered, up to max in all, reusing batch's storage. It
// reports false when the session has ended or the claim is closed: a
// revoked partition starts nothing new.
func nextBatch(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, batch []*sarama.ConsumerMessage, max int) ([]*sarama.ConsumerMessage, bool) {
	if sess.Context().Err() != nil {
		return batch, false
	}
	select {
	case <-sess.Context().Done():
		return batch, false
	case m, ok := <-claim.Messages():
		if !ok {
			return batch, false
		}
		batch = append(batch[:0], m)
	}
	for len(batch) < max {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return batch, true
			}
			batch = append(batch, m)
		default:
			return batch, true
		}
	}
	return batch, true
}
