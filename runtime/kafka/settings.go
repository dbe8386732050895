package kafka

import (
	"fmt"

	"github.com/IBM/sarama"
)

// saramaConfig returns eventgen's base sarama configuration: version, client
// ID and the Java-compatible murmur2 partitioner. Callers set the guarantee's
// settings next, then call tune, then check that the guarantee still holds.
func (c Config) saramaConfig() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.ClientID = c.ClientID
	// Same partition as the Java client and librdkafka's murmur2_random for
	// the same key, so producers in other languages agree on ordering.
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	return sc, nil
}

// tune runs c.Tune, if any, and sarama's own validation.
func (c Config) tune(sc *sarama.Config) error { return c.tuneCheck(sc, nil) }

// tuneCheck runs c.Tune, then check (the guarantee's own rules, so that a
// conflict is reported by eventgen's name for it rather than sarama's), then
// sarama's validation.
func (c Config) tuneCheck(sc *sarama.Config, check func(*sarama.Config) error) error {
	if c.Tune != nil {
		c.Tune(sc)
	}
	if check != nil {
		if err := check(sc); err != nil {
			return err
		}
	}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("eventgen: invalid sarama configuration: %w", err)
	}
	return nil
}
