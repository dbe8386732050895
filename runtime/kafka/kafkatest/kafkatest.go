// Package kafkatest starts Kafka for tests and demos: an in-process kfake
// cluster on 127.0.0.1, or the external cluster named by the
// EVENTGEN_KAFKA_BROKERS environment variable, plus fault injection helpers
// that need kfake, and the checks tests share (reading partitions,
// committed offsets, group state, waiting for a condition).
//
//	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
//	c.LoseProduceAcks(2) // the next two produce responses carry REQUEST_TIMED_OUT
//	cfg := kafka.Config{Brokers: c.Brokers(), Tune: kafkatest.FastTune}
//
// Every deadline the helpers apply is scaled by EVENTGEN_TEST_TIMEOUT_SCALE
// (see Timeout); randomized tests take their seed from Seed, which logs it
// and replays EVENTGEN_TEST_SEED.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// EnvBrokers is the environment variable that points tests at an external
// cluster: comma-separated host:port pairs.
const EnvBrokers = "EVENTGEN_KAFKA_BROKERS"

// ErrNeedsKfake is returned (by Fault.Err) when a fault is requested on an
// external cluster outside a test; in a test the test is skipped instead.
var ErrNeedsKfake = errors.New("kafkatest: fault injection needs the in-process kfake cluster (unset " + EnvBrokers + ")")

// Options configures Start and New. The zero value is a cluster with the
// defaults stated on each field.
type Options struct {
	// Partitions is the partition count of auto-created topics, of Topics
	// and of topics created by CreateTopic with partitions <= 0. Default 3.
	Partitions int
	// NumBrokers is how many kfake brokers to start. Default 1. Ignored for an
	// external cluster.
	NumBrokers int
	// Topics are created up front with Partitions partitions (kfake only;
	// on an external cluster use CreateTopic). Default none.
	Topics []string
	// Kfake holds extra options for kfake.NewCluster. Default none.
	Kfake []kfake.Opt
	// InProcess forces an in-process kfake cluster even when
	// EVENTGEN_KAFKA_BROKERS is set, for tests that exist to inject faults.
	// Default false: the external cluster wins when it is set.
	InProcess bool
}

func (o Options) withDefaults() Options {
	if o.Partitions <= 0 {
		o.Partitions = 3
	}
	if o.NumBrokers <= 0 {
		o.NumBrokers = 1
	}
	return o
}

// Cluster is a running test cluster. Its methods are safe for concurrent use.
type Cluster struct {
	t        testing.TB // nil when made by New
	brokers  []string
	kf       *kfake.Cluster // nil for an external cluster
	opts     Options
	killLeft atomic.Int64 // kills pending over all faults: a fast check for the connections
	killMu   sync.Mutex
	kills    []*killFault // KillConnectionsOnProduce faults with kills left
}

// Start returns a cluster for t, closed by t.Cleanup: the external cluster
// named by EVENTGEN_KAFKA_BROKERS if set, else a new kfake cluster listening
// on 127.0.0.1 on free ports with automatic topic creation. It fails the
// test if the cluster cannot start.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	c.t = t
	t.Cleanup(c.Close)
	return c
}

// New is Start for programs (demos, benchmarks' main functions): the caller
// must Close the cluster.
func New(o Options) (*Cluster, error) {
	o = o.withDefaults()
	c := &Cluster{opts: o}
	env := strings.TrimSpace(os.Getenv(EnvBrokers))
	if env != "" && !o.InProcess {
		for _, b := range strings.Split(env, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.brokers = append(c.brokers, b)
			}
		}
		return c, nil
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(o.NumBrokers),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(o.Partitions),
		kfake.ListenFn(c.listen),
	}
	if len(o.Topics) > 0 {
		kopts = append(kopts, kfake.SeedTopics(int32(o.Partitions), o.Topics...))
	}
	kopts = append(kopts, o.Kfake...)
	kf, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: starting kfake: %w", err)
	}
	c.kf = kf
	c.brokers = kf.ListenAddrs()
	return c, nil
}

// Brokers returns the bootstrap addresses.
func (c *Cluster) Brokers() []string { return append([]string(nil), c.brokers...) }

// External reports whether the cluster is an external one from
// EVENTGEN_KAFKA_BROKERS.
func (c *Cluster) External() bool { return c.kf == nil }

// Kfake returns the in-process cluster for custom control functions, or nil
// for an external cluster.
func (c *Cluster) Kfake() *kfake.Cluster { return c.kf }

// Close stops an in-process cluster; it does nothing for an external one.
// It is safe to call more than once.
func (c *Cluster) Close() {
	if c.kf != nil {
		c.kf.Close()
	}
}

// CreateTopic creates a topic with the given partition count (<= 0: the
// cluster default) and replication factor 1, failing the test on error. An
// existing topic is not an error.
func (c *Cluster) CreateTopic(t testing.TB, name string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout(30*time.Second))
	defer cancel()
	if err := c.EnsureTopic(ctx, name, partitions); err != nil {
		t.Fatal(err)
	}
}

// EnsureTopic is CreateTopic for programs.
func (c *Cluster) EnsureTopic(ctx context.Context, name string, partitions int) error {
	if partitions <= 0 {
		partitions = c.opts.Partitions
	}
	sc := sarama.NewConfig()
	sc.Version = protocolVersion
	sc.ClientID = "kafkatest-admin"
	if dl, ok := ctx.Deadline(); ok {
		sc.Admin.Timeout = time.Until(dl)
	}
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		admin, err := sarama.NewClusterAdmin(c.brokers, sc)
		if err != nil {
			done <- result{err}
			return
		}
		defer admin.Close()
		err = admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}, false)
		if errors.Is(err, sarama.ErrTopicAlreadyExists) {
			err = nil
		}
		done <- result{err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return fmt.Errorf("kafkatest: creating topic %q: %w", name, r.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafkatest: creating topic %q: %w", name, ctx.Err())
	}
}
