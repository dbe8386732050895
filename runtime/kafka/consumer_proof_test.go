package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group consumer's crash proofs (issue 7, Proof): at-least-once
// SIGKILLs placed after the group's committed offsets moved, with the
// redeliveries of each kill bounded per partition, and the controls that
// show each checker failing on the broken variant: commits that are
// acknowledged but never stored must break the redelivery bound, and a
// consumer that commits before handling must be reported losing records.

const (
	proofParts    = 3
	proofRecords  = 6000
	proofMaxBatch = 50
)

// redeliveryBound is the most records of one partition an at-least-once
// consumer can have handled without committing them when it dies, which
// is what a crash makes the partition redeliver: MaxBatch, since a batch
// takes no more records than MaxBatch minus those still uncommitted
// (TestConsumerCommitGapsWithinMaxBatch checks the gaps).
func redeliveryBound(maxBatch int) int { return maxBatch }

// runChildConsumerProof is the "consumer-proof" child: a consumer of
// CHILD_TOPIC that appends "h run partition offset seq" to CHILD_LOG for
// every record it handles (one write(2) per line, which survives SIGKILL).
// CHILD_GUARANTEE=at-most-once registers the event at most once (offsets
// committed before handling). With CHILD_KILL_COMMITTED=m it SIGKILLs
// itself in the first handler that starts after this process committed m
// records (the Committed counter: OffsetCommit answered without error),
// after logging that record, or before with CHILD_KILL_BEFORE_LOG=1; it
// first writes "kill run partition offset seq committed".
func runChildConsumerProof(ctx context.Context) error {
	logf, err := os.OpenFile(os.Getenv("CHILD_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	run := os.Getenv("CHILD_RUN")
	var committed atomic.Int64
	met := MetricsFunc(func(_ string, c Counter, n int64) {
		if c == Committed {
			committed.Add(n)
		}
	})
	guarantee := event.AtLeastOnce
	if os.Getenv("CHILD_GUARANTEE") == "at-most-once" {
		guarantee = event.AtMostOnce
	}
	et := testEventType("Input", os.Getenv("CHILD_TOPIC"), guarantee)
	c, err := NewConsumer(ConsumerConfig{
		Config:     Config{Brokers: childBrokers(), Tune: kafkatest.FastTune, Logger: childLogger(), Metrics: met},
		GroupID:    os.Getenv("CHILD_GROUP"),
		InstanceID: os.Getenv("CHILD_INSTANCE"),
		MaxBatch:   envInt("CHILD_MAX_BATCH"),
	})
	if err != nil {
		return err
	}
	killAt := int64(envInt("CHILD_KILL_COMMITTED"))
	beforeLog := os.Getenv("CHILD_KILL_BEFORE_LOG") != ""
	var killing atomic.Bool
	handle := func(r Record, e testEvent) error {
		kill := killAt > 0 && committed.Load() >= killAt && killing.CompareAndSwap(false, true)
		if !kill || !beforeLog {
			if _, err := fmt.Fprintf(logf, "h %s %d %d %d\n", run, r.Partition, r.Offset, e.Seq); err != nil {
				return err
			}
		}
		if kill {
			_, _ = fmt.Fprintf(logf, "kill %s %d %d %d %d\n", run, r.Partition, r.Offset, e.Seq, committed.Load())
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	if guarantee == event.AtMostOnce {
		HandleAtMostOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, r AtMostOnceRecord) error { return handle(r.Record, e) })
	} else {
		HandleAtLeastOnce(c, et, decodeTestEvent, func(_ context.Context, e testEvent, r AtLeastOnceRecord) error { return handle(r.Record, e) })
	}
	return c.Run(ctx)
}

// proofHandled is one "h" line of a consumer-proof child's log.
type proofHandled struct {
	run       int
	partition int32
	offset    int64
	seq       int64
}

// proofKill is the "kill" line a child writes just before its SIGKILL.
type proofKill struct {
	proofHandled
	committed int64 // records the process had committed
}

// readProofLog parses a consumer-proof log: handled records in log order,
// and the kill of each run that was killed. Only lines ended by a newline
// count: the log is read while a child appends to it, and a read can see
// part of a write.
func readProofLog(t testing.TB, path string) (handled []proofHandled, kills map[int]proofKill) {
	t.Helper()
	kills = map[int]proofKill{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, kills
	}
	if err != nil {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		fs := strings.Fields(line)
		var n []int64
		for _, s := range fs[1:] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("bad proof-log line %q", line)
			}
			n = append(n, v)
		}
		switch {
		case fs[0] == "h" && len(n) == 4:
			handled = append(handled, proofHandled{int(n[0]), int32(n[1]), n[2], n[3]})
		case fs[0] == "kill" && len(n) == 5:
			kills[int(n[0])] = proofKill{proofHandled{int(n[0]), int32(n[1]), n[2], n[3]}, n[4]}
		default:
			t.Fatalf("bad proof-log line %q", line)
		}
	}
	return handled, kills
}

// killPlan describes one crash run of consumer-proof children on one
// group: a child per threshold, each SIGKILLed once it committed that many
// records, then one that runs to the end.
type killPlan struct {
	group      string
	guarantee  string  // "" (at least once) or "at-most-once"
	thresholds []int64 // CHILD_KILL_COMMITTED of each killed child
	beforeLog  bool    // CHILD_KILL_BEFORE_LOG
	// dropCommits makes the broker answer the group's OffsetCommits
	// without storing them: the consumer believes it committed.
	dropCommits bool
}

// killReport is what the checkers read from a crash run.
type killReport struct {
	lost, dups int
	seen       map[int64]int // handled count by seq
	kills      []proofKill   // by run
	// redelivered[k][p]: records of partition p that run k handled at or
	// past the group's committed offset left after its kill, which the next
	// owner of p reads again.
	redelivered []map[int32]int
	// advanced[k]: the group's stored offsets moved during run k, before
	// its kill.
	advanced []bool
	dropped  int64 // OffsetCommits answered without storing
	took     time.Duration
}

// totalRedelivered sums redelivered over kills and partitions.
func (r killReport) totalRedelivered() int {
	n := 0
	for _, ps := range r.redelivered {
		for _, c := range ps {
			n += c
		}
	}
	return n
}

// boundViolations is the redelivery checker: every kill's redeliveries of
// every partition within bound.
func (r killReport) boundViolations(bound int) []string {
	var out []string
	for k, ps := range r.redelivered {
		parts := make([]int32, 0, len(ps))
		for p := range ps {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		for _, p := range parts {
			if ps[p] > bound {
				out = append(out, fmt.Sprintf("kill %d: partition %d redelivered %d > %d", k, p, ps[p], bound))
			}
		}
	}
	return out
}

// maxRedelivered is the largest redelivery of one partition by one kill.
func (r killReport) maxRedelivered() int {
	m := 0
	for _, ps := range r.redelivered {
		for _, c := range ps {
			m = max(m, c)
		}
	}
	return m
}

// dropOffsetCommits makes the broker answer group's OffsetCommit requests
// with success without storing anything, counting them.
func dropOffsetCommits(t *testing.T, cl *kafkatest.Cluster, group string) *atomic.Int64 {
	t.Helper()
	kf := cl.Kfake()
	if kf == nil {
		t.Fatal("needs the in-process kfake cluster")
	}
	var n atomic.Int64
	kf.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		req := kr.(*kmsg.OffsetCommitRequest)
		if req.Group != group {
			return nil, nil, false
		}
		n.Add(1)
		return offsetCommitResponse(req, 0), nil, true
	})
	return &n
}

// offsetCommitResponse answers every partition of req with code.
func offsetCommitResponse(req *kmsg.OffsetCommitRequest, code int16) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// runKillPlan produces proofRecords records on proofParts partitions, runs
// the plan's children one after the other (each must die of its SIGKILL
// in a handler), then a last child until every record is handled (or, with
// commits kept, committed), and reads the log.
func runKillPlan(t *testing.T, plan killPlan) killReport {
	t.Helper()
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: proofParts, InProcess: true})
	topic := plan.group + "-in"
	et := testEventType("Input", topic, event.AtLeastOnce)
	cl.CreateTopic(t, topic, proofParts)
	produceInputs(t, cl.Brokers(), et, proofRecords, 30, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var dropped *atomic.Int64
	if plan.dropCommits {
		dropped = dropOffsetCommits(t, cl, plan.group)
	}
	logPath := tempPath(t, "handled.log")
	env := map[string]string{
		"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "CHILD_TOPIC": topic, "CHILD_GROUP": plan.group,
		"CHILD_INSTANCE": plan.group + "-0", "CHILD_LOG": logPath, "CHILD_MAX_BATCH": strconv.Itoa(proofMaxBatch),
		"CHILD_GUARANTEE": plan.guarantee,
	}
	if plan.beforeLog {
		env["CHILD_KILL_BEFORE_LOG"] = "1"
	}
	committed := func() map[int32]int64 {
		off, err := kafkatest.Committed(client, plan.group, topic, proofParts)
		if err != nil {
			t.Fatal(err)
		}
		return off
	}
	start := time.Now()
	var rep killReport
	after := make([]map[int32]int64, len(plan.thresholds))
	for k, threshold := range plan.thresholds {
		before := committed()
		env["CHILD_RUN"], env["CHILD_KILL_COMMITTED"] = strconv.Itoa(k), strconv.FormatInt(threshold, 10)
		ch := startChild(t, "consumer-proof", env)
		if !kafkatest.Eventually(60*time.Second, ch.exited) {
			t.Fatalf("child %d is still running, %v after it started: it never committed the %d records that arm its kill; log:\n%s",
				k, kafkatest.Timeout(60*time.Second), threshold, ch.log())
		}
		if err := ch.wait(t, time.Second); exitCode(err) != -int(syscall.SIGKILL) {
			t.Fatalf("child %d: %v, want SIGKILL; log:\n%s", k, err, ch.log())
		}
		after[k] = committed()
		rep.advanced = append(rep.advanced, kafkatest.Sum(after[k]) > kafkatest.Sum(before))
	}
	env["CHILD_RUN"], env["CHILD_KILL_COMMITTED"] = strconv.Itoa(len(plan.thresholds)), "0"
	last := startChild(t, "consumer-proof", env)
	// Every record handled, or (commits kept) committed: a consumer that
	// commits before handling has lost some for good.
	hw := kafkatest.HighWater(t, client, topic, proofParts)
	kafkatest.WaitFor(t, 60*time.Second, "every record handled or committed", func() bool {
		if last.exited() || (!plan.dropCommits && kafkatest.Sum(committed()) == kafkatest.Sum(hw)) {
			return true
		}
		handled, _ := readProofLog(t, logPath)
		seen := map[int64]bool{}
		for _, h := range handled {
			seen[h.seq] = true
		}
		return len(seen) == proofRecords
	})
	if err := last.terminate(t); err != nil {
		t.Fatalf("last child: %v\n%s", err, last.log())
	}
	if !plan.dropCommits {
		// A graceful shutdown commits what was handled.
		if c := committed(); kafkatest.Sum(c) != kafkatest.Sum(hw) {
			t.Errorf("after the last child's shutdown the group committed %v, want the high watermarks %v", c, hw)
		}
	}
	rep.took = time.Since(start)
	handled, kills := readProofLog(t, logPath)
	rep.seen = map[int64]int{}
	rep.redelivered = make([]map[int32]int, len(plan.thresholds))
	for k := range plan.thresholds {
		rep.redelivered[k] = map[int32]int{}
		kl, ok := kills[k]
		if !ok {
			t.Fatalf("child %d died without its kill line: the SIGKILL did not come from a handler", k)
		}
		rep.kills = append(rep.kills, kl)
	}
	for _, h := range handled {
		rep.seen[h.seq]++
		if h.run < len(plan.thresholds) && h.offset >= after[h.run][h.partition] {
			rep.redelivered[h.run][h.partition]++
		}
	}
	rep.lost, rep.dups = lostAndDuplicated(rep.seen, proofRecords)
	if dropped != nil {
		rep.dropped = dropped.Load()
	}
	return rep
}

// killThresholds returns n kill points, each a number of records the child
// must have committed before it kills itself: from 2 to 6 batches' worth,
// so that kills land at different places of the stream.
func killThresholds(n int) []int64 {
	out := make([]int64, n)
	for k := range out {
		out[k] = int64(proofMaxBatch * (2 + k%5))
	}
	return out
}

// TestConsumerAtLeastOnceSIGKILLPastCommit SIGKILLs an at-least-once
// consumer process ten times, each time in a handler (the record logged as
// handled, not committed) after the group's stored offsets moved during
// that process's life: the kill lands past a commit. Each kill must
// redeliver (its record at least) and, in every partition, at most what
// the commit cadence leaves uncommitted; nothing is lost, and every
// duplicate is one of the counted redeliveries.
func TestConsumerAtLeastOnceSIGKILLPastCommit(t *testing.T) {
	rep := runKillPlan(t, killPlan{group: "alo-past", thresholds: killThresholds(10)})
	bound := redeliveryBound(proofMaxBatch)
	for k, kl := range rep.kills {
		if !rep.advanced[k] {
			t.Errorf("kill %d: the group's offsets did not move during the run (%d committed by the child): the kill is not past a commit", k, kl.committed)
		}
		n := 0
		for _, c := range rep.redelivered[k] {
			n += c
		}
		if n == 0 || rep.seen[kl.seq] < 2 {
			t.Errorf("kill %d (in the handler of seq %d at %d/%d): %d redeliveries, the killed record handled %d times; want > 0 and >= 2",
				k, kl.seq, kl.partition, kl.offset, n, rep.seen[kl.seq])
		}
	}
	if v := rep.boundViolations(bound); len(v) > 0 {
		t.Errorf("redeliveries over the bound of %d per partition and kill: %v", bound, v)
	}
	if rep.lost != 0 {
		t.Errorf("%d records never handled", rep.lost)
	}
	if rep.dups != rep.totalRedelivered() {
		t.Errorf("%d duplicates, but the kills redelivered %d: a record was handled twice outside a redelivery", rep.dups, rep.totalRedelivered())
	}
	t.Logf("%d records, %d partitions, MaxBatch %d: %d SIGKILLs past a commit; redelivered %d (per kill and partition at most %d, bound %d); lost %d, duplicates %d; %v",
		proofRecords, proofParts, proofMaxBatch, len(rep.kills), rep.totalRedelivered(), rep.maxRedelivered(), bound, rep.lost, rep.dups, rep.took.Round(time.Millisecond))
}

// TestConsumerRedeliveryBoundDetectsDroppedCommits is the control of the
// redelivery checker: the same crash run with the group's commits answered
// but never stored (the consumer believes it committed; every restart
// starts over) must break the bound, while the at-least-once loss checker
// still finds nothing lost.
func TestConsumerRedeliveryBoundDetectsDroppedCommits(t *testing.T) {
	// 12 batches committed before each kill: ≈ 4 per partition, all
	// redelivered, well over the bound of 2 batches.
	rep := runKillPlan(t, killPlan{group: "alo-dropped", thresholds: []int64{12 * proofMaxBatch, 12 * proofMaxBatch, 12 * proofMaxBatch}, dropCommits: true})
	bound := redeliveryBound(proofMaxBatch)
	v := rep.boundViolations(bound)
	if len(v) == 0 {
		t.Errorf("the redelivery checker found no kill over the bound of %d with commits dropped (max %d): it cannot fail", bound, rep.maxRedelivered())
	}
	for k, adv := range rep.advanced {
		if adv {
			t.Errorf("run %d: the group's offsets moved although commits were dropped", k)
		}
	}
	if rep.dropped == 0 || rep.lost != 0 {
		t.Errorf("%d OffsetCommits dropped, %d records lost; want > 0 and 0", rep.dropped, rep.lost)
	}
	t.Logf("commits dropped (%d OffsetCommits answered, not stored), %d SIGKILLs: %d of %d partition-kills over the bound of %d (max %d redelivered), lost %d, duplicates %d",
		rep.dropped, len(rep.kills), len(v), len(rep.kills)*proofParts, bound, rep.maxRedelivered(), rep.lost, rep.dups)
}

// TestConsumerLossCheckerDetectsCommitBeforeHandling is the control of the
// at-least-once loss checker: the same crash run with a consumer that
// commits before handling (the at-most-once registration), killed in a
// handler before the record is handled, must be reported losing records:
// at least the killed record of each kill, which was committed.
func TestConsumerLossCheckerDetectsCommitBeforeHandling(t *testing.T) {
	rep := runKillPlan(t, killPlan{group: "commit-first", guarantee: "at-most-once", thresholds: killThresholds(3), beforeLog: true})
	if rep.lost < len(rep.kills) {
		t.Errorf("the loss checker reports %d lost records after %d kills of a consumer that commits before handling; want >= %d", rep.lost, len(rep.kills), len(rep.kills))
	}
	for k, kl := range rep.kills {
		if rep.seen[kl.seq] != 0 {
			t.Errorf("kill %d: the record killed in its handler (seq %d) was handled %d times later; committed before handling, it must be lost", k, kl.seq, rep.seen[kl.seq])
		}
	}
	if rep.dups != 0 {
		t.Errorf("%d duplicates from a consumer that commits before handling", rep.dups)
	}
	t.Logf("commit before handling, %d SIGKILLs: the checker reports %d lost, %d duplicates", len(rep.kills), rep.lost, rep.dups)
}

// TestConsumerCommitGapsWithinMaxBatch checks the bound that
// ConsumerConfig.MaxBatch documents for at-least-once ("how many records of
// one partition are handled between two commits, the most a crash makes a
// partition redeliver"), by reading the offset of every OffsetCommit the
// consumer sends for one busy partition: two consecutive commits may be at
// most MaxBatch records apart. At the defaults (MaxBatch 500, sarama's
// ChannelBufferSize 256), a batch held what was buffered (≤ 257 records)
// whatever was already uncommitted, and the partition committed after a
// batch only once MaxBatch records were uncommitted, so commits landed 514
// records apart while records kept arriving (the defect this test found; a
// batch now takes at most MaxBatch minus the uncommitted records).
// CommitInterval is an hour so that only MaxBatch and idle moments trigger
// commits.
func TestConsumerCommitGapsWithinMaxBatch(t *testing.T) {
	const n = 10000
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1, InProcess: true})
	et := testEventType("Input", "gaps-in", event.AtLeastOnce)
	cl.CreateTopic(t, et.Topic, 1)
	produceInputs(t, cl.Brokers(), et, n, 5, nil)
	kf := cl.Kfake()
	var mu sync.Mutex
	var commits []int64
	kf.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		req := kr.(*kmsg.OffsetCommitRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				commits = append(commits, rp.Offset)
			}
		}
		return nil, nil, false // observed, then handled by kfake
	})
	c, err := NewConsumer(ConsumerConfig{Config: Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune}, GroupID: "gaps", CommitInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	HandleAtLeastOnce(c, et, decodeTestEvent, func(context.Context, testEvent, AtLeastOnceRecord) error { return nil })
	stop := runConsumer(t, c)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	kafkatest.WaitCommitted(t, client, "gaps", et.Topic, 1, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var prev, widest int64
	over := 0
	for _, off := range commits {
		gap := off - prev
		widest = max(widest, gap)
		if gap > DefaultMaxBatch {
			over++
		}
		prev = max(prev, off)
	}
	if over > 0 {
		t.Errorf("%d of %d commits came more than MaxBatch=%d records after the previous one (widest gap %d): a crash before them redelivers more than MaxBatch records of the partition",
			over, len(commits), DefaultMaxBatch, widest)
	}
	t.Logf("%d records, one partition: %d commits, widest gap %d records (MaxBatch %d), %d over", n, len(commits), widest, DefaultMaxBatch, over)
}
