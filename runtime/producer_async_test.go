package runtime_test

import (
	"context"
	"sync"
	"testing"

	"github.com/eventgen/eventgen/runtime"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafkatest"
)

// TestAtLeastOnceAsyncUnderFaults is TestAtLeastOnceUnderFaults for
// SendAsync: one goroutine pipelines every record, faults fire midway, and
// every callback must report success with nothing lost or duplicated.
func TestAtLeastOnceAsyncUnderFaults(t *testing.T) {
	const n = 3000
	for _, tc := range []struct {
		name   string
		inject func(*kafkatest.Cluster) *kafkatest.Fault
	}{
		{"lost-acks", func(c *kafkatest.Cluster) *kafkatest.Fault { return c.LoseProduceAcks(3) }},
		{"killed-connections", func(c *kafkatest.Cluster) *kafkatest.Fault { return c.KillConnectionsOnProduce(3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.Start(t, kafkatest.Partitions(3))
			topic := "alo-async-" + tc.name
			c.CreateTopic(t, topic, 3)
			et := testevent.Type(topic, runtime.AtLeastOnce)
			var m runtime.Counters
			p, err := runtime.NewAtLeastOnceProducer(testConfig(c, &m))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var (
				pending sync.WaitGroup
				mu      sync.Mutex
				failed  []error
				calls   int
			)
			send := func(ctx context.Context, e runtime.Event) error {
				pending.Add(1)
				err := p.SendAsync(ctx, e, func(err error) {
					defer pending.Done()
					mu.Lock()
					defer mu.Unlock()
					calls++
					if err != nil {
						failed = append(failed, err)
					}
				})
				if err != nil {
					pending.Done()
				}
				return err
			}
			want := ids("async-"+tc.name, n)
			first := tc.inject(c)
			var second *kafkatest.Fault
			sendAll(t, et, want, 1, send, func() { second = tc.inject(c) })
			pending.Wait()
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if calls != n || len(failed) > 0 {
				t.Fatalf("%d callbacks for %d records, %d failures (first: %v)", calls, n, len(failed), first)
			}
			hits := faultCount(first) + faultCount(second)
			if hits == 0 {
				t.Fatalf("no fault fired: the test proves nothing")
			}
			lost, dups := tally(t, readAll(t, c.Brokers(), topic), want)
			t.Logf("%s: %d records, %d faults fired, retried=%d, lost=%d duplicated=%d", tc.name, n, hits, m.Get("Order", runtime.Retried), lost, dups)
			if lost != 0 || dups != 0 {
				t.Errorf("lost %d, duplicated %d; want 0 and 0", lost, dups)
			}
		})
	}
}
