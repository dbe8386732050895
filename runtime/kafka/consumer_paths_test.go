package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Paths of the group consumer that docs/consumers.md describes and that no
// other test ran (issue 7, Proof): static-membership fencing,
// DisableDeadLetter while the dead-letter topic refuses writes, a
// dead-letter outage ended by a shutdown, the caller's context ending while
// a commit is in flight, failed commits, the at-most-once grace period
// dropping the rest of a committed batch, a retry wait ended by shutdown,
// and Tune conflicts named.

// seqCounts returns a copy of what c counted, for lostAndDuplicated.
func (c *counter) seqCounts() map[int64]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int64]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// TestConsumerStaticMembershipFenced: consumer A (InstanceID "csm") handles
// and commits the first records; consumer B starts with the same
// InstanceID. Once the group shows B in A's place, A's Run must return
// ErrFenced (FENCED_INSTANCE_ID) instead of rejoining and fencing B in
// turn; B handles the records produced after that; nothing is lost.
func TestConsumerStaticMembershipFenced(t *testing.T) {
	const parts, n1, n2 = 2, 200, 200
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts})
	et := testEventType("Order", "csm-in", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, parts)
	produceInputs(t, cl.Brokers(), et, n1, 6, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var runs counter
	member := func(id string, handled *atomic.Int64) *Consumer {
		c, err := NewConsumer(ConsumerConfig{
			Config:  Config{Brokers: cl.Brokers(), ClientID: id, Tune: kafkatest.FastTune},
			GroupID: "csm", InstanceID: "csm",
		})
		if err != nil {
			t.Fatal(err)
		}
		HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, _ AtLeastOnceRecord) error {
			runs.add(e.Seq)
			handled.Add(1)
			return nil
		})
		return c
	}
	var handledA, handledB atomic.Int64
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	doneA := make(chan error, 1)
	a := member("csm-a", &handledA)
	go func() { doneA <- a.Run(ctxA) }()
	kafkatest.WaitCommitted(t, client, "csm", et.Topic, parts, 30*time.Second)
	stopB := runConsumer(t, member("csm-b", &handledB))
	kafkatest.WaitFor(t, 30*time.Second, "B to take A's place in the group", func() bool {
		return describeStatic(t, cl.Brokers(), "csm", "csm") == "csm-b"
	})
	var errA error
	select {
	case errA = <-doneA:
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("consumer A's Run did not return after B took its InstanceID")
	}
	if !errors.Is(errA, ErrFenced) || !strings.Contains(errA.Error(), "group.instance.id") {
		t.Fatalf("consumer A: Run = %v, want ErrFenced by the group (FENCED_INSTANCE_ID)", errA)
	}
	atFence := handledA.Load()
	produceRange(t, cl.Brokers(), et, n1, n2, 6, nil)
	kafkatest.WaitCommitted(t, client, "csm", et.Topic, parts, 30*time.Second)
	if err := stopB(); err != nil {
		t.Fatalf("consumer B: %v", err)
	}
	lost, dups := lostAndDuplicated(runs.seqCounts(), n1+n2)
	if lost != 0 || handledA.Load() != atFence || handledB.Load() < n2 {
		t.Errorf("lost %d; A handled %d after its Run returned; B handled %d, want >= %d", lost, handledA.Load()-atFence, handledB.Load(), n2)
	}
	t.Logf("A handled %d records, then B joined with its InstanceID: A's Run returned %v; B handled %d; %d records, lost %d, duplicates %d",
		atFence, errA, handledB.Load(), n1+n2, lost, dups)
}

// TestConsumerDisableDeadLetterWritesNothing: with DisableDeadLetter, and
// the dead-letter topic refusing every write, a record out of attempts (or
// undecodable) stops Run with ErrDeadLetter naming it, uncommitted, without
// a single produce request to the dead-letter topic and without handling
// anything after it: the consumer neither waits for the outage nor skips
// the record. (An undecodable record is found while its batch is prepared,
// before any of the batch runs: the records before it in the batch are
// neither handled nor committed, so the committed offset may stay below
// it.)
func TestConsumerDisableDeadLetterWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		raw    []byte // replaces the value of seq 4
		runs   int    // handler runs of seq 4
		reason string
	}{
		{"handler", nil, 2, "poison"},
		{"undecodable", []byte("not json"), 0, "decoding Payment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const poison = 4
			cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1, InProcess: true})
			et := testEventType("Payment", "nodlq-"+tc.name, event.AtLeastOnce)
			cl.CreateTopic(t, et.Topic, 1)
			cl.CreateTopic(t, DeadLetterTopic(et.Topic), 1)
			var raw map[int64][]byte
			if tc.raw != nil {
				raw = map[int64][]byte{poison: tc.raw}
			}
			produceInputs(t, cl.Brokers(), et, 10, 1, raw) // one key, one partition: offset = seq
			var failing atomic.Bool
			failing.Store(true)
			hits := failDeadLetterProduce(t, cl, DeadLetterTopic(et.Topic), &failing)
			c, err := NewConsumer(ConsumerConfig{
				Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "nodlq", DisableDeadLetter: true,
				Retry: RetryPolicy{MaxAttempts: 2, Backoff: time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			var runs counter
			HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, _ AtLeastOnceRecord) error {
				runs.add(e.Seq)
				if e.Seq == poison {
					return errors.New("poison")
				}
				return nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			select {
			case err = <-done:
			case <-time.After(kafkatest.Timeout(30 * time.Second)):
				t.Fatal("Run did not stop")
			}
			where := fmt.Sprintf("%s/0@%d", et.Topic, poison)
			if !errors.Is(err, ErrDeadLetter) || !strings.Contains(err.Error(), where) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Run = %v, want ErrDeadLetter naming %s and %q", err, where, tc.reason)
			}
			off, cerr := kafkatest.Committed(kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{}), "nodlq", et.Topic, 1)
			if cerr != nil {
				t.Fatal(cerr)
			}
			if hits.Load() != 0 || off[0] > poison || runs.get(poison) != tc.runs {
				t.Errorf("dead-letter produce requests %d (want 0); committed %d (want <= %d); seq %d ran %d times (want %d)",
					hits.Load(), off[0], poison, poison, runs.get(poison), tc.runs)
			}
			for seq := range int64(10) {
				if seq < off[0] && runs.get(seq) != 1 || seq > poison && runs.get(seq) != 0 {
					t.Errorf("seq %d ran %d times with %d committed: a committed record must have run once, none after seq %d", seq, runs.get(seq), off[0], poison)
				}
			}
			t.Logf("DisableDeadLetter, dead-letter topic refusing writes: Run = %v; %d dead-letter writes tried, committed %d", err, hits.Load(), off[0])
		})
	}
}

// TestConsumerDeadLetterOutageShutdown: the dead-letter topic refuses
// writes while a record is out of attempts; Run's context is cancelled
// while the write is being retried. Run returns nil (the retry ends with
// the session), the record is not committed, not dead-lettered and not
// skipped; once the topic takes writes again, the next run gets the
// record, spends its attempts again, and dead-letters it once.
func TestConsumerDeadLetterOutageShutdown(t *testing.T) {
	const n, poison = 20, 5
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1, InProcess: true})
	et := testEventType("Payment", "dlqstop", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 1)
	produceInputs(t, cl.Brokers(), et, n, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var failing atomic.Bool
	failing.Store(true)
	hits := failDeadLetterProduce(t, cl, DeadLetterTopic(et.Topic), &failing)
	cfg := ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
		GroupID: "dlqstop",
		Retry:   RetryPolicy{MaxAttempts: 2, Backoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond},
	}
	consumer := func(met *Counters, runs *counter) *Consumer {
		cfg.Metrics = met
		c, err := NewConsumer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, _ AtLeastOnceRecord) error {
			runs.add(e.Seq)
			if e.Seq == poison {
				return errors.New("poison")
			}
			return nil
		})
		return c
	}
	var met1, met2 Counters
	var runs1, runs2 counter
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	c1 := consumer(&met1, &runs1)
	go func() { done <- c1.Run(ctx) }()
	kafkatest.WaitFor(t, 30*time.Second, "the dead-letter write to be retried", func() bool { return met1.Get("Payment", InfraRetried) >= 2 })
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run cancelled during a dead-letter outage: %v, want nil", err)
		}
	case <-time.After(kafkatest.Timeout(30 * time.Second)):
		t.Fatal("Run did not return after the cancel while a dead-letter write was being retried")
	}
	took := time.Since(cancelled)
	off, err := kafkatest.Committed(client, "dlqstop", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if off[0] != poison || met1.Get("Payment", DeadLettered) != 0 || runs1.get(poison) != 2 || runs1.get(poison+1) != 0 {
		t.Fatalf("after the shutdown: committed %d (want %d), dead-lettered %d (want 0), seq %d ran %d times (want 2), seq %d ran %d (want 0)",
			off[0], poison, met1.Get("Payment", DeadLettered), poison, runs1.get(poison), poison+1, runs1.get(poison+1))
	}
	refused := hits.Load()
	failing.Store(false)
	stop := runConsumer(t, consumer(&met2, &runs2))
	kafkatest.WaitCommitted(t, client, "dlqstop", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dead := deadLetters(t, cl.Brokers(), et)
	if len(dead) != 1 || len(dead[poison]) != 1 || header(dead[poison][0], HeaderDLQAttempts) != "2" {
		t.Fatalf("dead letters by seq: %v, want one for seq %d with attempts 2", dead, poison)
	}
	for seq := range int64(n) {
		want := 0
		switch {
		case seq == poison:
			want = 2
		case seq > poison:
			want = 1
		}
		if runs2.get(seq) != want {
			t.Errorf("second run: seq %d ran %d times, want %d", seq, runs2.get(seq), want)
		}
	}
	t.Logf("dead-letter topic refused %d produce requests (%d write retries); Run returned nil %v after the cancel with the record uncommitted; the next run dead-lettered it once",
		refused, met1.Get("Payment", InfraRetried), took.Round(time.Millisecond))
}

// TestConsumerContextEndsDuringCommit cancels Run's context from inside
// the broker while it holds the consumer's third OffsetCommit, which it then
// answers (or fails). Run must return nil; a second run of the group gets
// the rest; at least once nothing is lost, and at most once, with no
// crash, nothing is lost or handled twice either (a committed batch is
// handled to its end during shutdown; a batch whose commit failed is left
// to the next run).
func TestConsumerContextEndsDuringCommit(t *testing.T) {
	for _, g := range []event.Guarantee{event.AtLeastOnce, event.AtMostOnce} {
		for _, fail := range []bool{false, true} {
			outcome := "answered"
			if fail {
				outcome = "failed"
			}
			t.Run(g.String()+"/"+outcome, func(t *testing.T) {
				const parts, n, nth = 2, 400, 3
				cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
				group := fmt.Sprintf("ctxcommit-%s-%s", g, outcome)
				et := testEventType("Input", group+"-in", g)
				cl.CreateTopic(t, et.Topic, parts)
				produceInputs(t, cl.Brokers(), et, n, 8, nil)
				client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var commits atomic.Int64
				var held map[int32]int64 // the offsets of the commit the cancel came in
				kf := cl.Kfake()
				kf.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
					kf.KeepControl()
					req := kr.(*kmsg.OffsetCommitRequest)
					if req.Group != group || commits.Add(1) != nth {
						return nil, nil, false
					}
					held = map[int32]int64{}
					for _, rt := range req.Topics {
						for _, rp := range rt.Partitions {
							held[rp.Partition] = rp.Offset
						}
					}
					cancel() // the commit is in flight: the consumer has no answer yet
					if fail {
						return offsetCommitResponse(req, kerr.UnknownServerError.Code), nil, true
					}
					return nil, nil, false
				})
				var runs counter
				var mu sync.Mutex
				first := map[int32]map[int64]bool{} // partition → offsets handled by the first run
				newConsumer := func(met *Counters, inFirst bool) *Consumer {
					c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Metrics: met, Tune: kafkatest.FastTune}, GroupID: group, MaxBatch: 20})
					if err != nil {
						t.Fatal(err)
					}
					h := func(e testEvent, r Record) {
						runs.add(e.Seq)
						if inFirst {
							mu.Lock()
							if first[r.Partition] == nil {
								first[r.Partition] = map[int64]bool{}
							}
							first[r.Partition][r.Offset] = true
							mu.Unlock()
						}
					}
					if g == event.AtMostOnce {
						HandleAtMostOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, r AtMostOnceRecord) error { h(e, r.Record); return nil })
					} else {
						HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, r AtLeastOnceRecord) error { h(e, r.Record); return nil })
					}
					return c
				}
				var met1, met2 Counters
				c1 := newConsumer(&met1, true)
				done := make(chan error, 1)
				go func() { done <- c1.Run(ctx) }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("Run cancelled during a commit: %v, want nil", err)
					}
				case <-time.After(kafkatest.Timeout(30 * time.Second)):
					t.Fatalf("Run did not return after a cancel during its commit %d (commits seen %d)", nth, commits.Load())
				}
				off, err := kafkatest.Committed(client, group, et.Topic, parts)
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				for p, next := range off {
					for o := range next {
						if !first[p][o] {
							t.Errorf("partition %d offset %d committed by the first run but not handled by it", p, o)
							break
						}
					}
				}
				mu.Unlock()
				stop := runConsumer(t, newConsumer(&met2, false))
				kafkatest.WaitCommitted(t, client, group, et.Topic, parts, 30*time.Second)
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				lost, dups := lostAndDuplicated(runs.seqCounts(), n)
				if lost != 0 {
					t.Errorf("%d records lost", lost)
				}
				dropped := met1.Get("Input", Dropped) + met2.Get("Input", Dropped)
				if g == event.AtMostOnce && (dups != 0 || dropped != 0) {
					t.Errorf("at most once, graceful shutdown: %d duplicates, %d dropped; want 0 and 0", dups, dropped)
				}
				t.Logf("cancelled while OffsetCommit %d (%v) was unanswered, then %s: Run returned nil, the group had committed %v; after a second run: %d records, lost %d, duplicates %d",
					nth, held, outcome, off, n, lost, dups)
			})
		}
	}
}

// TestConsumerCommitFailures: the broker fails the consumer's first two
// OffsetCommits (UNKNOWN_SERVER_ERROR). At most once, a batch whose commit
// failed is not handled: the session ends and the partition is read again
// from its committed offset, so every record is handled exactly once and
// none is dropped. At least once, the failure is covered by the next
// (cumulative) commit: every record handled exactly once, all committed.
func TestConsumerCommitFailures(t *testing.T) {
	for _, g := range []event.Guarantee{event.AtMostOnce, event.AtLeastOnce} {
		t.Run(g.String(), func(t *testing.T) {
			const parts, n = 2, 300
			cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
			group := "commitfail-" + g.String()
			et := testEventType("Input", group+"-in", g)
			cl.CreateTopic(t, et.Topic, parts)
			produceInputs(t, cl.Brokers(), et, n, 8, nil)
			client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
			fault := cl.FailRequests(kmsg.OffsetCommit, kerr.UnknownServerError, 2)
			var met Counters
			c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: group, MaxBatch: 20})
			if err != nil {
				t.Fatal(err)
			}
			var runs counter
			if g == event.AtMostOnce {
				HandleAtMostOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, _ AtMostOnceRecord) error { runs.add(e.Seq); return nil })
			} else {
				HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, _ AtLeastOnceRecord) error { runs.add(e.Seq); return nil })
			}
			stop := runConsumer(t, c)
			kafkatest.WaitCommitted(t, client, group, et.Topic, parts, 30*time.Second)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			lost, dups := lostAndDuplicated(runs.seqCounts(), n)
			if fault.Hits() != 2 || lost != 0 || dups != 0 || met.Get("Input", Dropped) != 0 {
				t.Errorf("%d commits failed (want 2): lost %d, duplicates %d, dropped %d; want 0, 0, 0", fault.Hits(), lost, dups, met.Get("Input", Dropped))
			}
			t.Logf("%s: %d OffsetCommits failed; %d records, lost %d, duplicates %d, dropped %d", g, fault.Hits(), n, lost, dups, met.Get("Input", Dropped))
		})
	}
}

// TestConsumerAtMostOnceGraceDropsRestOfBatch: at most once, a shutdown
// while a handler waits on its context. The handler is the first one whose
// batch, already committed, has at least five records after it (read from
// the group's committed offset inside the handler). After ShutdownGrace
// its context is cancelled, it fails, and the rest of its committed batch
// is dropped without running, each counted Dropped; Run returns nil.
func TestConsumerAtMostOnceGraceDropsRestOfBatch(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Click", "amograce", event.AtMostOnce)
	cl.CreateTopic(t, et.Topic, 1)
	produceInputs(t, cl.Brokers(), et, 200, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	const grace = 200 * time.Millisecond
	var met Counters
	var logs logBuffer
	c, err := NewConsumer(ConsumerConfig{
		Config:  Config{Brokers: cl.Brokers(), Metrics: &met, Logger: logs.logger(), Tune: kafkatest.FastTune},
		GroupID: "amograce", MaxBatch: 50, ShutdownGrace: grace,
	})
	if err != nil {
		t.Fatal(err)
	}
	var ran counter // by offset
	var blocked atomic.Bool
	var batchEnd atomic.Int64
	entered := make(chan int64, 1)
	HandleAtMostOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtMostOnceRecord) error {
		ran.add(r.Offset)
		if blocked.Load() {
			return nil
		}
		off, err := kafkatest.Committed(client, "amograce", et.Topic, 1)
		if err != nil || off[0] < r.Offset+6 {
			return nil
		}
		blocked.Store(true)
		batchEnd.Store(off[0])
		entered <- r.Offset
		<-ctx.Done()
		return ctx.Err()
	})
	at, _, returned := shutDownInHandler(t, c, entered, 2*grace+kafkatest.Timeout(10*time.Second), "twice the grace period + 10 s")
	off, err := kafkatest.Committed(client, "amograce", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	end := batchEnd.Load()
	if off[0] != end {
		t.Errorf("committed %d after the shutdown, want %d (the end of the blocked handler's batch)", off[0], end)
	}
	for o := at + 1; o < end; o++ {
		if ran.get(o) != 0 {
			t.Errorf("offset %d, after the cancelled handler in its committed batch, ran after the grace period", o)
		}
	}
	if d, h := met.Get("Click", Dropped), met.Get("Click", Handled); d != end-at || h != at {
		t.Errorf("dropped %d (want %d: the cancelled record and the %d after it), handled %d (want %d)", d, end-at, end-at-1, h, at)
	}
	if !strings.Contains(logs.String(), "shutdown grace period over") {
		t.Error("the dropped records were not logged")
	}
	t.Logf("grace %v: the handler of offset %d cancelled; the %d records after it in its committed batch (up to %d) dropped without running; Run returned %v after the cancel",
		grace, at, end-at-1, end, returned.Round(time.Millisecond))
}

// TestConsumerRetryWaitEndsAtShutdown: a failing handler's record waits
// out its retry backoff (an hour here); a shutdown ends the wait at once.
// Run returns nil, the record is neither committed nor dead-lettered nor
// retried, and the next run handles it.
func TestConsumerRetryWaitEndsAtShutdown(t *testing.T) {
	const poison = 3
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testEventType("Payment", "retrystop", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), 1)
	produceInputs(t, cl.Brokers(), et, 10, 1, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	cfg := ConsumerConfig{
		Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "retrystop",
		Retry: RetryPolicy{MaxAttempts: 5, Backoff: time.Hour, MaxBackoff: time.Hour},
	}
	var met Counters
	cfg.Metrics = &met
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var runs counter
	HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, _ AtLeastOnceRecord) error {
		runs.add(e.Seq)
		if e.Seq == poison {
			return errors.New("failing")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	kafkatest.WaitFor(t, 30*time.Second, "the failed record to wait for its retry", func() bool { return met.Get("Payment", Retried) == 1 })
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(kafkatest.Timeout(10 * time.Second)):
		t.Fatal("Run did not return within 10 s (scaled) of the cancel: the retry wait (≥ 30 min) did not end with the session")
	}
	took := time.Since(cancelled)
	off, err := kafkatest.Committed(client, "retrystop", et.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if off[0] != poison || runs.get(poison) != 1 || runs.get(poison+1) != 0 || met.Get("Payment", DeadLettered) != 0 {
		t.Fatalf("committed %d (want %d); seq %d ran %d times (want 1); seq %d ran %d times (want 0); dead-lettered %d",
			off[0], poison, poison, runs.get(poison), poison+1, runs.get(poison+1), met.Get("Payment", DeadLettered))
	}
	cfg.Metrics = nil
	c2, err := NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var attempt atomic.Int64
	HandleAtLeastOnce(c2, et, decodeTestEvent, func(_ context.Context, e testEvent, r AtLeastOnceRecord) error {
		if e.Seq == poison {
			attempt.Store(int64(r.Attempt))
		}
		return nil
	})
	stop := runConsumer(t, c2)
	kafkatest.WaitCommitted(t, client, "retrystop", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if attempt.Load() != 1 {
		t.Errorf("the next run handled seq %d with Attempt %d, want 1", poison, attempt.Load())
	}
	t.Logf("record in its retry backoff (1 h): Run returned %v after the cancel, the record uncommitted; the next run handled it (attempt 1)", took.Round(time.Millisecond))
}

// TestConsumerTuneConflictsNamed: a Tune that turns on auto-commit, sets
// its own static membership and reads uncommitted has each change named
// in one ErrConflictingConfig, before Run connects.
func TestConsumerTuneConflictsNamed(t *testing.T) {
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}, Tune: func(sc *sarama.Config) {
		sc.Consumer.Offsets.AutoCommit.Enable = true
		sc.Consumer.Group.InstanceId = "other"
		sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	}}, GroupID: "tune", InstanceID: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	HandleAtLeastOnce(c, testEventType("Paid", "tune", event.AtLeastOnce), decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout(10*time.Second))
	defer cancel()
	err = c.Run(ctx)
	if !errors.Is(err, ErrConflictingConfig) {
		t.Fatalf("Run = %v, want ErrConflictingConfig", err)
	}
	for _, want := range []string{
		"the consumer requires Consumer.Offsets.AutoCommit.Enable=false",
		`the consumer requires Consumer.Group.InstanceId="mine" (set static membership with ConsumerConfig.InstanceID), got "other"`,
		"the consumer requires Consumer.IsolationLevel=ReadCommitted",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}
