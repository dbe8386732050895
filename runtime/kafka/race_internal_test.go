//go:build race

package kafka

// raceBuild is raceEnabled of package kafka_test for the internal tests:
// sarama v1.61.1 races on the transactional error path (IBM/sarama#2913).
const raceBuild = true
