package kafka_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

func runKcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kafkatest.Timeout(60*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, kafkatest.Kcat(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("customer-%d-%x", i, i*7919)
	}
	return out
}

// TestKcatReadsEventgenRecords checks that a non-Go client (librdkafka's
// kcat) reads eventgen's records with the documented key and headers.
func TestKcatReadsEventgenRecords(t *testing.T) {
	kafkatest.Kcat(t)
	c := kafkatest.Start(t, kafkatest.Options{})
	const topic, partitions = "kcat-read", 4
	c.CreateTopic(t, topic, partitions)
	et := testevent.Type(topic, event.AtLeastOnce)
	p, err := kafka.NewAtLeastOnceProducer(testConfig(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx := event.WithTraceparent(t.Context(), traceparent)
	ks := keys(40)
	for i, k := range ks {
		mustNil(t, p.Send(ctx, testevent.New(et, strconv.Itoa(i), k, int64(i))))
	}
	mustNil(t, p.Close())

	out := runKcat(t, "", "-C", "-q", "-e", "-b", strings.Join(c.Brokers(), ","), "-t", topic, "-f", "%p %k %h\n")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(ks) {
		t.Fatalf("kcat read %d records, want %d:\n%s", len(lines), len(ks), out)
	}
	part := sarama.NewMurmur2Partitioner(topic)
	seen := map[string]bool{}
	for _, line := range lines {
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 {
			t.Fatalf("kcat line %q: want partition, key, headers", line)
		}
		key := f[1]
		seen[key] = true
		want, _ := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, partitions)
		if f[0] != strconv.Itoa(int(want)) {
			t.Errorf("key %s on partition %s, want %d", key, f[0], want)
		}
		hs := map[string]string{}
		for _, kv := range strings.Split(f[2], ",") {
			k, v, _ := strings.Cut(kv, "=")
			hs[k] = v
		}
		for k, v := range map[string]string{
			"ce_specversion": "1.0", "ce_type": et.CEType, "ce_source": et.Source,
			"content-type": "application/json", "traceparent": traceparent,
		} {
			if hs[k] != v {
				t.Errorf("key %s: header %s = %q, want %q (line %q)", key, k, hs[k], v, line)
			}
		}
		if _, err := event.ParseUUID(hs["ce_id"]); err != nil {
			t.Errorf("key %s: ce_id %q: %v", key, hs["ce_id"], err)
		}
		if _, err := time.Parse(time.RFC3339Nano, hs["ce_time"]); err != nil {
			t.Errorf("key %s: ce_time %q: %v", key, hs["ce_time"], err)
		}
	}
	for _, k := range ks {
		if !seen[k] {
			t.Errorf("key %s not read by kcat", k)
		}
	}
}

// TestKcatMurmur2PartitionsMatch checks that librdkafka's murmur2_random
// partitioner (the Java client's default) and eventgen's producer put the
// same key on the same partition.
func TestKcatMurmur2PartitionsMatch(t *testing.T) {
	kafkatest.Kcat(t)
	c := kafkatest.Start(t, kafkatest.Options{})
	const partitions = 7
	c.CreateTopic(t, "murmur-kcat", partitions)
	c.CreateTopic(t, "murmur-eventgen", partitions)
	ks := keys(48)

	var in strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&in, "%s:v\n", k)
	}
	runKcat(t, in.String(), "-P", "-b", strings.Join(c.Brokers(), ","), "-t", "murmur-kcat",
		"-X", "partitioner=murmur2_random", "-K:")

	et := testevent.Type("murmur-eventgen", event.AtLeastOnce)
	p, err := kafka.NewAtLeastOnceProducer(testConfig(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range ks {
		mustNil(t, p.Send(t.Context(), testevent.New(et, strconv.Itoa(i), k, 1)))
	}
	mustNil(t, p.Close())

	where := func(topic string) map[string]int32 {
		m := map[string]int32{}
		for _, msg := range kafkatest.ReadAll(t, c.Brokers(), topic) {
			m[string(msg.Key)] = msg.Partition
		}
		return m
	}
	byKcat, byEventgen := where("murmur-kcat"), where("murmur-eventgen")
	used := map[int32]bool{}
	for _, k := range ks {
		pk, ok1 := byKcat[k]
		pe, ok2 := byEventgen[k]
		if !ok1 || !ok2 || pk != pe {
			t.Errorf("key %s: kcat partition %d (found %v), eventgen partition %d (found %v)", k, pk, ok1, pe, ok2)
		}
		used[pe] = true
	}
	if len(used) < partitions-1 {
		t.Errorf("keys used only %d of %d partitions: the comparison is too weak", len(used), partitions)
	}
	t.Logf("%d keys on %d partitions: kcat and eventgen agree on every key", len(ks), len(used))
}
