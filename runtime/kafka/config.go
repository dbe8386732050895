package kafka

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// ProtocolVersion returns the protocol version eventgen asks sarama to speak.
// It is at least 2.5 for KIP-447 (consumer group metadata in transactions)
// and is accepted by Kafka 3.x/4.x brokers and by kfake. Hand-written sarama
// clients that talk to the same topics (tests, benchmarks) use it too.
func ProtocolVersion() sarama.KafkaVersion { return sarama.V3_6_0_0 }

// Config holds what every eventgen producer and consumer needs. The zero value
// is not usable: Brokers is required.
type Config struct {
	// Brokers lists the bootstrap brokers as host:port. Required.
	Brokers []string
	// ClientID is the Kafka client.id. Default "eventgen".
	ClientID string
	// Logger receives diagnostics. Default: a logger that discards.
	Logger *slog.Logger
	// Metrics receives counters. Default: a no-op implementation.
	Metrics Metrics
	// Tune, when set, adjusts the sarama configuration after eventgen has
	// applied its defaults and the guarantee's settings. It is for timeouts,
	// batching, TLS, SASL and the like; settings that would weaken the
	// guarantee are rejected by name after Tune runs (for example
	// "at-least-once requires acks=all"). Default: nil.
	Tune func(*sarama.Config)
	// CloseTimeout bounds how long a producer's Close waits for queued and
	// in-flight records (a dead broker would otherwise hold it for sarama's
	// retry and dial timeouts per batch). Records still pending then are
	// abandoned: dropped (at-most-once) or failed (at-least-once Sends get
	// an error). Default 10 s.
	CloseTimeout time.Duration
}

func (c Config) closeTimeout() time.Duration {
	if c.CloseTimeout > 0 {
		return c.CloseTimeout
	}
	return 10 * time.Second
}

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// logger returns cfg.Logger or a logger that discards.
func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return discardLogger
}

// metrics returns cfg.Metrics or a no-op implementation.
func (c Config) metrics() Metrics {
	if c.Metrics != nil {
		return c.Metrics
	}
	return nopMetrics{}
}

// saramaConfig returns eventgen's base sarama configuration: version, client
// ID and the Java-compatible murmur2 partitioner. Callers set the guarantee's
// settings next, then call tune, then check that the guarantee still holds.
func (c Config) saramaConfig() (*sarama.Config, error) {
	if len(c.Brokers) == 0 {
		return nil, fmt.Errorf("eventgen: Config.Brokers is empty")
	}
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.ClientID = c.ClientID
	if sc.ClientID == "" {
		sc.ClientID = "eventgen"
	}
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
