package kafkatest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// EnvTimeoutScale is the environment variable that multiplies every
// deadline the helpers of this package apply (see Timeout): set it to 3 on
// a slow or shared machine. It never shortens a deadline.
const EnvTimeoutScale = "EVENTGEN_TEST_TIMEOUT_SCALE"

// EnvSeed is the environment variable that fixes the seed returned by Seed,
// to replay a failed randomized run.
const EnvSeed = "EVENTGEN_TEST_SEED"

// Timeout returns d multiplied by EVENTGEN_TEST_TIMEOUT_SCALE (a number >= 1;
// default 1). Tests use it for every wall-clock limit they assert or wait
// for, so that a loaded machine can be given more time without editing the
// tests. Limits that a test asserts as an upper bound of its own (for
// example "Send must not block for 1 s") scale too.
func Timeout(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(EnvTimeoutScale), 64)
	if err != nil || f <= 1 || math.IsInf(f, 0) || math.IsNaN(f) {
		return d
	}
	return time.Duration(float64(d) * f)
}

// Seed returns the seed for t's random choices: EVENTGEN_TEST_SEED when set,
// else a fresh one. It logs the seed and how to replay it, so that a failure
// in a log can be run again with the same choices.
func Seed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv(EnvSeed); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("kafkatest: %s=%q: %v", EnvSeed, s, err)
		}
		t.Logf("random seed %d (from %s)", seed, EnvSeed)
		return seed
	}
	seed := rand.Uint64()
	t.Logf("random seed %d (replay with %s=%d)", seed, EnvSeed, seed)
	return seed
}

// FastTune is a Config.Tune for tests: it lowers sarama's backoffs and fetch
// waits so that clients recover from injected faults and rebalances within
// tens of milliseconds instead of seconds. Session and transaction timeouts
// stay long enough for a loaded 2-core machine.
func FastTune(sc *sarama.Config) {
	sc.Metadata.Retry.Backoff = 20 * time.Millisecond
	sc.Producer.Retry.Backoff = 20 * time.Millisecond
	sc.Producer.Transaction.Retry.Backoff = 20 * time.Millisecond
	sc.Producer.Transaction.Timeout = 10 * time.Second
	sc.Consumer.Retry.Backoff = 50 * time.Millisecond
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Group.Rebalance.Retry.Backoff = 50 * time.Millisecond
	sc.Consumer.Group.Session.Timeout = 6 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	sc.Net.DialTimeout = 3 * time.Second
}

// ClientOptions configures NewClient.
type ClientOptions struct {
	// ReadUncommitted makes consumers built on the client read records of
	// open and aborted transactions. Default false: read_committed, what a
	// check of exactly-once output needs.
	ReadUncommitted bool
}

// NewClient returns a sarama client for checks (reading topics, committed
// offsets, high watermarks), tuned with FastTune and closed at t's cleanup.
func NewClient(t testing.TB, brokers []string, o ClientOptions) sarama.Client {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = protocolVersion
	sc.ClientID = "kafkatest-check"
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	if o.ReadUncommitted {
		sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	}
	FastTune(sc)
	c, err := sarama.NewClient(brokers, sc)
	if err != nil {
		t.Fatalf("kafkatest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// protocolVersion is what the runtime speaks (kafka.ProtocolVersion): this
// package cannot import runtime/kafka, whose in-package tests import it.
var protocolVersion = sarama.V3_6_0_0

// ReadOptions configures ReadPartition.
type ReadOptions struct {
	// Until ends the read at the first record for which it returns true;
	// that record is the last one returned. Required.
	Until func(*sarama.ConsumerMessage) bool
	// Timeout fails the test when Until has not returned true by then
	// (scaled by Timeout). Default 60 s.
	Timeout time.Duration
}

// ReadPartition reads topic/partition from the oldest offset until o.Until
// returns true and returns the records read, that one included. The
// client's isolation level decides whether aborted records are seen.
func ReadPartition(t testing.TB, client sarama.Client, topic string, partition int32, o ReadOptions) []*sarama.ConsumerMessage {
	t.Helper()
	if o.Until == nil {
		t.Fatal("kafkatest: ReadPartition needs ReadOptions.Until")
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	d := Timeout(o.Timeout)
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("kafkatest: consumer: %v", err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, partition, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("kafkatest: consuming %s/%d: %v", topic, partition, err)
	}
	defer pc.Close()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var out []*sarama.ConsumerMessage
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
			if o.Until(m) {
				return out
			}
		case err := <-pc.Errors():
			// sarama retries these itself; the deadline catches a read
			// that never recovers.
			t.Logf("kafkatest: reading %s/%d: %v", topic, partition, err)
		case <-deadline.C:
			t.Fatalf("kafkatest: reading %s/%d: timed out after %v and %d records", topic, partition, d, len(out))
		}
	}
}

// ReadAll reads every record of topic, aborted ones included (it reads
// read_uncommitted: a read_committed read cannot tell when it has reached
// a high watermark that sits behind a transaction marker), up to the high
// watermarks taken when it starts.
func ReadAll(t testing.TB, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	client := NewClient(t, brokers, ClientOptions{ReadUncommitted: true})
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatalf("kafkatest: metadata of %s: %v", topic, err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("kafkatest: partitions of %s: %v", topic, err)
	}
	var out []*sarama.ConsumerMessage
	for p, hwm := range HighWater(t, client, topic, len(parts)) {
		if hwm == 0 {
			continue
		}
		out = append(out, ReadPartition(t, client, topic, p, ReadOptions{Until: func(m *sarama.ConsumerMessage) bool { return m.Offset >= hwm-1 }})...)
	}
	return out
}

// ReadN reads partitions 0..partitions-1 of topic from the oldest offset
// until n records arrived, failing after d (scaled by Timeout).
func ReadN(t testing.TB, client sarama.Client, topic string, partitions, n int, d time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	d = Timeout(d)
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("kafkatest: consumer: %v", err)
	}
	defer cons.Close()
	ch := make(chan *sarama.ConsumerMessage, 1024)
	for p := range int32(partitions) {
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("kafkatest: consuming %s/%d: %v", topic, p, err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				ch <- m
			}
		}()
	}
	var out []*sarama.ConsumerMessage
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for len(out) < n {
		select {
		case m := <-ch:
			out = append(out, m)
		case <-deadline.C:
			t.Fatalf("kafkatest: reading %s: %d of %d records after %v", topic, len(out), n, d)
		}
	}
	return out
}

// Committed returns the group's committed offsets of partitions
// 0..partitions-1 of topic: 0 for a partition without one, and for a group
// that never committed (kfake answers GROUP_ID_NOT_FOUND where Kafka answers
// -1).
func Committed(client sarama.Client, group, topic string, partitions int) (map[int32]int64, error) {
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	if err := client.RefreshCoordinator(group); err != nil {
		return nil, err
	}
	broker, err := client.Coordinator(group)
	if err != nil {
		return nil, err
	}
	resp, err := broker.FetchOffset(sarama.NewOffsetFetchRequest(protocolVersion, group, map[string][]int32{topic: ps}))
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, p := range ps {
		b := resp.GetBlock(topic, p)
		switch {
		case b == nil:
			out[p] = 0
		case b.Err == sarama.ErrGroupIDNotFound || b.Err == sarama.ErrNoError:
			out[p] = max(b.Offset, 0)
		default:
			return nil, fmt.Errorf("offset of %s/%d for group %s: %w", topic, p, group, b.Err)
		}
	}
	return out, nil
}

// HighWater returns the next offset of partitions 0..partitions-1 of topic.
func HighWater(t testing.TB, client sarama.Client, topic string, partitions int) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for p := range int32(partitions) {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("kafkatest: high watermark of %s/%d: %v", topic, p, err)
		}
		out[p] = off
	}
	return out
}

// Sum adds up per-partition offsets.
func Sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// WaitFor polls cond every 20 ms until it holds, failing the test when d
// (scaled by Timeout) has passed first. It is for conditions another
// process or goroutine makes true; it decides no interleaving.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", Timeout(d), what)
	}
}

// Eventually is WaitFor for callers that report a timeout themselves (with
// a child's log, say): it returns whether cond held within d (scaled).
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(Timeout(d))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// WaitCommitted waits until the group has committed every record of
// partitions 0..partitions-1 of topic written so far, failing after d
// (scaled by Timeout).
func WaitCommitted(t testing.TB, client sarama.Client, group, topic string, partitions int, d time.Duration) {
	t.Helper()
	hw := HighWater(t, client, topic, partitions)
	WaitFor(t, d, "group "+group+" to commit "+topic, func() bool {
		c, err := Committed(client, group, topic, partitions)
		if err != nil {
			return false
		}
		for p, h := range hw {
			if c[p] < h {
				return false
			}
		}
		return true
	})
}

// Group describes a consumer group as its coordinator reports it.
type Group struct {
	// State is the group's state: "Empty", "PreparingRebalance",
	// "CompletingRebalance", "Stable" or "Dead".
	State string
	// Members is the number of members of the current generation.
	Members int
}

// DescribeGroup returns the group's state and member count, for tests that
// wait until a member has joined or a rebalance has begun.
func DescribeGroup(client sarama.Client, group string) (Group, error) {
	if err := client.RefreshCoordinator(group); err != nil {
		return Group{}, err
	}
	broker, err := client.Coordinator(group)
	if err != nil {
		return Group{}, err
	}
	resp, err := broker.DescribeGroups(&sarama.DescribeGroupsRequest{Groups: []string{group}})
	if err != nil {
		return Group{}, err
	}
	if len(resp.Groups) != 1 {
		return Group{}, fmt.Errorf("describing group %s: %d groups in the answer", group, len(resp.Groups))
	}
	g := resp.Groups[0]
	if g.Err != sarama.ErrNoError {
		return Group{}, fmt.Errorf("describing group %s: %w", group, g.Err)
	}
	return Group{State: g.State, Members: len(g.Members)}, nil
}

// Kcat returns the path of kcat, the librdkafka command-line client that
// interoperability tests use as a producer and consumer that is not
// eventgen. Without it the test fails in CI (CI set) and is skipped
// elsewhere, saying how to install it.
func Kcat(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err == nil {
		return p
	}
	const msg = "kcat not found on PATH: install it with `apt-get install -y kcat` (Debian/Ubuntu) or `brew install kcat`"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
