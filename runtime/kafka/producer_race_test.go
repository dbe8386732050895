//go:build race

package kafka_test

// raceEnabled reports a -race build: sarama v1.61.1 has a known data race on
// the transactional error path (IBM/sarama#2913: transitionTo holds
// statusLock while publishTxnPartitions reads the status under another
// lock), which the race detector reports in the fencing and injected-error
// tests. Both run in the plain `go test ./...` pass.
const raceEnabled = true
