package kafka

import (
	"log"
	"os"

	"github.com/IBM/sarama"
)

// EVENTGEN_TEST_SARAMA_LOG=1 sends sarama's own log (connection state
// changes, retries, metadata refreshes) to stderr, with microsecond times,
// to diagnose a failure of a fault-injection test.
func init() {
	if os.Getenv("EVENTGEN_TEST_SARAMA_LOG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
}
