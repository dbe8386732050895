package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runChildPipeline runs the test pipeline: one Output (same key, Src =
// "partition/offset" of the input) per Input, none when Seq%CHILD_SKIP_MOD
// is 0. CHILD_KILL_AT_TXN=k SIGKILLs the process inside its k-th
// transaction (outputs written, offsets added, not committed);
// CHILD_STOP_AT_TXN=k SIGSTOPs it there instead.
func runChildPipeline(ctx context.Context) error {
	in := testEventType("Input", os.Getenv("CHILD_IN"), event.ExactlyOnce)
	out := testEventType("Output", os.Getenv("CHILD_OUT"), event.ExactlyOnce)
	killAt, stopAt, txns := envInt("CHILD_KILL_AT_TXN"), envInt("CHILD_STOP_AT_TXN"), 0
	hooks := &pipelineHooks{beforeCommit: func([]*sarama.ConsumerMessage) {
		txns++ // under the pipeline's transaction lock
		switch txns {
		case killAt:
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		case stopAt:
			fmt.Fprintln(os.Stderr, "child: stopping itself inside transaction", txns)
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			fmt.Fprintln(os.Stderr, "child: continued")
		}
	}}
	tune := func(sc *sarama.Config) {
		kafkatest.FastTune(sc)
		// Longer than a zombie stays stopped: its PRODUCER_FENCED must read
		// as a newer instance, not as its own transaction timing out.
		sc.Producer.Transaction.Timeout = 60 * time.Second
		if ms := envInt("CHILD_SESSION_MS"); ms > 0 {
			sc.Consumer.Group.Session.Timeout = time.Duration(ms) * time.Millisecond
			sc.Consumer.Group.Heartbeat.Interval = time.Duration(ms) * time.Millisecond / 5
		}
	}
	cfg := PipelineConfig{
		Config:          Config{Brokers: childBrokers(), Tune: tune, Logger: childLogger()},
		GroupID:         os.Getenv("CHILD_GROUP"),
		TransactionalID: os.Getenv("CHILD_TXN"),
		InstanceID:      os.Getenv("CHILD_INSTANCE"),
		BatchSize:       envInt("CHILD_BATCH"),
		hooks:           hooks,
	}
	return RunPipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, testTransform(out, envInt("CHILD_SKIP_MOD")))
}

func testTransform(out *event.Type, skipMod int) func(context.Context, testEvent, *Emitter) error {
	return func(ctx context.Context, e testEvent, em *Emitter) error {
		if e.Fail {
			return errors.New("input marked to fail")
		}
		if skipMod > 0 && e.Seq%int64(skipMod) == 0 {
			return nil
		}
		r := em.Record()
		return em.Emit(&testEvent{K: e.K, Seq: e.Seq, Src: fmt.Sprintf("%d/%d", r.Partition, r.Offset), et: out})
	}
}

// outputReport is what checkOutput found in a read_committed read of the
// output topic.
type outputReport struct {
	records, dups, lost, orderErrs, unexpected int
}

// checkOutput reads every committed output (up to a sentinel it appends to
// each partition once all writers have stopped) and compares it with the n
// inputs: one output per input except Seq%skipMod == 0 (and inputs listed
// in none), per-partition order kept, traceparent passed through.
func checkOutput(t *testing.T, client sarama.Client, brokers []string, out *event.Type, partitions, n, skipMod int, none map[int64]bool) outputReport {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(partitions) {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: out.Topic, Partition: p, Value: sarama.StringEncoder("SENTINEL")}); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()
	var rep outputReport
	count := map[int64]int{}
	for p := range int32(partitions) {
		msgs := kafkatest.ReadPartition(t, client, out.Topic, p, kafkatest.ReadOptions{Until: func(m *sarama.ConsumerMessage) bool { return string(m.Value) == "SENTINEL" }})
		msgs = msgs[:len(msgs)-1] // the sentinel
		lastSrc := int64(-1)
		for _, m := range msgs {
			rep.records++
			e, err := decodeTestEvent(m.Value)
			if err != nil {
				t.Errorf("output %d/%d: %v", p, m.Offset, err)
				continue
			}
			count[e.Seq]++
			srcP, srcOff, _ := strings.Cut(e.Src, "/")
			off, _ := strconv.ParseInt(srcOff, 10, 64)
			if srcP != strconv.Itoa(int(p)) || off <= lastSrc {
				rep.orderErrs++
			}
			lastSrc = off
			if tp, _ := HeaderValue(m.Headers, event.HeaderTraceparent); tp != testTraceparent && rep.orderErrs == 0 {
				t.Errorf("output seq %d: traceparent %q, want the input's", e.Seq, tp)
			}
			if typ, _ := HeaderValue(m.Headers, event.HeaderType); typ != out.CEType {
				t.Errorf("output seq %d: ce_type %q", e.Seq, typ)
			}
		}
	}
	for seq := range int64(n) {
		want := 1
		if (skipMod > 0 && seq%int64(skipMod) == 0) || none[seq] {
			want = 0
		}
		switch c := count[seq]; {
		case c < want:
			rep.lost++
		case c > want && want == 0:
			rep.unexpected += c
		case c > want:
			rep.dups += c - want
		}
	}
	return rep
}

// ok reports whether the output is exact: no duplicate, no lost input, no
// order violation, no output for an input that should have none.
func (r outputReport) ok() bool {
	return r.dups == 0 && r.lost == 0 && r.orderErrs == 0 && r.unexpected == 0
}

func (r outputReport) String() string {
	return fmt.Sprintf("%d records, %d duplicates, %d lost, %d order violations, %d unexpected", r.records, r.dups, r.lost, r.orderErrs, r.unexpected)
}

func (r outputReport) check(t *testing.T) {
	t.Helper()
	if !r.ok() {
		t.Errorf("output: %s", r)
	}
}

// processState returns the state letter of /proc/<pid>/stat ('T' when stopped).
func processState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// eosRun is the state of TestPipelineExactlyOnceUnderFaults: the inputs
// produced so far and how to observe the group's progress through them.
// Inputs are held back and produced step by step, so that every step has
// the work it needs by construction, whatever the speed of the children.
type eosRun struct {
	t        *testing.T
	cl       *kafkatest.Cluster
	client   sarama.Client
	in       *event.Type
	parts    int
	group    string
	batch    int // CHILD_BATCH: inputs of one partition per transaction, at most
	produced int // inputs produced: seq 0..produced-1
}

// progress is the sum of the group's committed input offsets: the number
// of inputs consumed exactly once so far (-1 when it cannot be read).
func (r *eosRun) progress() int64 {
	c, err := kafkatest.Committed(r.client, r.group, r.in.Topic, r.parts)
	if err != nil {
		return -1
	}
	return kafkatest.Sum(c)
}

// produce appends n inputs.
func (r *eosRun) produce(n int) {
	r.t.Helper()
	produceRange(r.t, r.cl.Brokers(), r.in, r.produced, n, 64, nil)
	r.produced += n
}

// backlog makes sure at least n inputs are not yet committed, so that a
// child reaches its (n/batch)-th transaction before it runs out of work:
// each transaction commits at most batch inputs.
func (r *eosRun) backlog(n int) {
	r.t.Helper()
	var p int64
	kafkatest.WaitFor(r.t, 30*time.Second, "the committed offsets to be readable", func() bool { p = r.progress(); return p >= 0 })
	if left := int64(r.produced) - p; left < int64(n) {
		r.produce(n - int(left))
	}
}

// waitConsumed waits until every input produced so far is committed,
// failing early, with its log, when one of the watched children exits.
func (r *eosRun) waitConsumed(what string, watch ...*child) {
	r.t.Helper()
	kafkatest.WaitFor(r.t, 120*time.Second, what, func() bool {
		for _, c := range watch {
			if c.exited() {
				r.t.Fatalf("%s: child exited: %v\n%s", what, c.err, c.log())
			}
		}
		return r.progress() == int64(r.produced)
	})
}

// waitStopped waits until a child stopped itself (CHILD_STOP_AT_TXN).
func waitStopped(t *testing.T, c *child, what string) {
	t.Helper()
	kafkatest.WaitFor(t, 60*time.Second, what+" to stop itself in a transaction", func() bool {
		return c.exited() || processState(c.cmd.Process.Pid) == 'T'
	})
	if c.exited() {
		t.Fatalf("%s exited instead of stopping: %v\n%s", what, c.err, c.log())
	}
}

// TestPipelineExactlyOnceUnderFaults runs inputs through pipeline processes
// that are SIGKILLed inside transactions and at random points, receive
// TxnOffsetCommit and EndTxn errors, and are cloned while stopped (the
// stopped one, a zombie, must be fenced). The committed output must be
// exactly one record per input, in order. Every step waits for a condition
// it observes (a committed offset, an exit, a stopped process, a fault's
// hit count), and inputs are produced before each step in the amount it
// needs, so a fast or a slow child cannot run the next step out of work.
// The random choices come from kafkatest.Seed (EVENTGEN_TEST_SEED replays
// them). TestPipelineCheckerDetectsDuplicates shows that the checker fails
// a pipeline that commits offsets outside its transactions.
func TestPipelineExactlyOnceUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault-injection test")
	}
	const parts, skipMod, batch = 4, 7, 50
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true,
		Kfake: []kfake.Opt{kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "500"})}})
	in := testEventType("Input", "eos-in", event.ExactlyOnce)
	out := testEventType("Output", "eos-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, out.Topic, parts)
	cl.CreateTopic(t, DeadLetterTopic(in.Topic), parts)
	start := time.Now()
	rng := rand.New(rand.NewPCG(kafkatest.Seed(t), 1))
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	r := &eosRun{t: t, cl: cl, client: client, in: in, parts: parts, group: "eos", batch: batch}
	env := map[string]string{
		"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "CHILD_IN": in.Topic, "CHILD_OUT": out.Topic,
		"CHILD_GROUP": r.group, "CHILD_TXN": "eos-tx-0", "CHILD_INSTANCE": "eos-0", "CHILD_BATCH": strconv.Itoa(batch),
		"CHILD_SKIP_MOD": strconv.Itoa(skipMod),
	}
	kills, restarts := 0, 0

	// 1. SIGKILL inside an open transaction (outputs written, offsets
	// added, not committed). With more than k transactions' worth of
	// uncommitted input, the child reaches its k-th transaction.
	for range 2 {
		k := 2 + rng.IntN(12)
		r.backlog((k + 1) * batch)
		env["CHILD_KILL_AT_TXN"] = strconv.Itoa(k)
		ch := startChild(t, "pipeline", env)
		restarts++
		if err := ch.wait(t, 60*time.Second); exitCode(err) != -9 {
			t.Fatalf("child: %v, want SIGKILL in transaction %d; log:\n%s", err, k, ch.log())
		}
		kills++
		t.Logf("killed inside transaction %d; committed %d of %d", k, r.progress(), r.produced)
	}
	env["CHILD_KILL_AT_TXN"] = "0"

	// 2. SIGKILL from outside at random progress points. The backlog
	// exceeds the target by far more than a child commits between two
	// polls, so the kill lands while it works (logged, not asserted: a
	// kill of an idle child is not wrong, only less interesting).
	for range 2 {
		d := 500 + rng.IntN(2000)
		r.backlog(d + 4000)
		target := r.progress() + int64(d)
		ch := startChild(t, "pipeline", env)
		restarts++
		kafkatest.WaitFor(t, 60*time.Second, "pipeline progress", func() bool { return ch.exited() || r.progress() >= target })
		if ch.exited() {
			t.Fatalf("child exited early: %v\n%s", ch.err, ch.log())
		}
		ch.kill(t)
		kills++
		p := r.progress()
		t.Logf("killed from outside at committed %d of %d (target %d; mid-stream %v)", p, r.produced, target, p < int64(r.produced))
	}

	// 3. Injected transaction errors: TxnOffsetCommit ILLEGAL_GENERATION
	// (abortable: abort, rejoin, re-read), EndTxn CONCURRENT_TRANSACTIONS
	// (retried by sarama) and UNKNOWN_SERVER_ERROR (fatal: the pipeline
	// stops with ErrProducerFatal; the test restarts it like a supervisor).
	// Every transaction attempt sends one TxnOffsetCommit and at least one
	// EndTxn, and a failed attempt commits nothing, so the six faults fire
	// within six attempts, at most six successful transactions in between:
	// a backlog of 2000 cannot run dry first.
	r.backlog(2000)
	kf := cl.Kfake()
	fTOC := kf.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.IllegalGeneration, Count: 3})
	fEnd := kf.Fault(
		kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.ConcurrentTransactions, Count: 2},
		kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.UnknownServerError, Count: 1},
	)
	fatalExits := 0
	ch := startChild(t, "pipeline", env)
	restarts++
	kafkatest.WaitFor(t, 60*time.Second, "all injected faults to fire", func() bool {
		if ch.exited() {
			if code := exitCode(ch.err); code != 1 || !ch.logContains("fatal transaction error") {
				t.Fatalf("child exited with %d, want 1 after the fatal EndTxn error; log:\n%s", code, ch.log())
			}
			fatalExits++
			ch = startChild(t, "pipeline", env)
			restarts++
		}
		return fTOC.Hits() >= 3 && fEnd.Hits() >= 3
	})
	if err := ch.terminate(t); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, ch.log())
	}
	if fatalExits != 1 {
		t.Errorf("fatal exits %d, want 1 (one UNKNOWN_SERVER_ERROR on EndTxn)", fatalExits)
	}
	t.Logf("faults fired: TxnOffsetCommit %d, EndTxn %d; fatal exits %d; committed %d of %d", fTOC.Hits(), fEnd.Hits(), fatalExits, r.progress(), r.produced)

	// 4. Zombie with a successor: the process stops itself inside its k-th
	// transaction; only then are the replacement's inputs produced, and a
	// replacement with the same InstanceID and TransactionalID takes over
	// (aborting the open transaction) and commits everything. More inputs
	// follow, so that a zombie that escaped fencing would find work; the
	// zombie is continued and must be fenced without committing anything.
	k := 2 + rng.IntN(5)
	r.backlog((k + 1) * batch)
	env["CHILD_STOP_AT_TXN"] = strconv.Itoa(k)
	zombie := startChild(t, "pipeline", env)
	restarts++
	waitStopped(t, zombie, "the zombie")
	before := r.progress()
	r.produce(1000)
	env["CHILD_STOP_AT_TXN"] = "0"
	repl := startChild(t, "pipeline", env)
	restarts++
	r.waitConsumed("the replacement to commit every input", repl)
	r.produce(500)
	_ = zombie.cmd.Process.Signal(syscall.SIGCONT)
	zerr := zombie.wait(t, 60*time.Second)
	if exitCode(zerr) != 3 {
		t.Errorf("zombie exit: %v, want code 3 (ErrFenced); log:\n%s", zerr, zombie.log())
	}
	r.waitConsumed("the replacement to commit the inputs produced while the zombie was continued", repl)
	if err := repl.terminate(t); err != nil {
		t.Fatalf("replacement: %v\n%s", err, repl.log())
	}
	t.Logf("zombie stopped in transaction %d at committed %d; replacement with its identity ran to %d; zombie exit %d: %s",
		k, before, r.progress(), exitCode(zerr), lastLine(zombie.log()))

	// 5. Zombie past its session timeout: a process with its own identity
	// stops itself inside a transaction; its 1.5s session expires, and
	// another member, started once inputs for it exist, takes its
	// partitions and commits everything. More inputs follow; continued,
	// the zombie's TxnOffsetCommit carries a stale member/generation
	// (KIP-447), so its transaction is rejected and aborted; it rejoins as
	// a new member and the two finish the input together.
	zenv := maps.Clone(env)
	zenv["CHILD_TXN"], zenv["CHILD_INSTANCE"], zenv["CHILD_SESSION_MS"] = "eos-tx-z", "eos-z", "1500"
	k = 2 + rng.IntN(4)
	zenv["CHILD_STOP_AT_TXN"] = strconv.Itoa(k)
	r.backlog((k + 1) * batch)
	zombie2 := startChild(t, "pipeline", zenv)
	restarts++
	waitStopped(t, zombie2, "the second zombie")
	before = r.progress()
	r.produce(1000)
	other := startChild(t, "pipeline", env)
	restarts++
	stoppedAt := time.Now()
	r.waitConsumed("the other member to take over and commit every input", other)
	takeover := time.Since(stoppedAt)
	r.produce(1000)
	_ = zombie2.cmd.Process.Signal(syscall.SIGCONT)
	if !kafkatest.Eventually(60*time.Second, func() bool { return zombie2.exited() || zombie2.logContains("transaction aborted") }) {
		t.Fatalf("timed out waiting for the second zombie's transaction to be rejected; state %c; log:\n%s\nother member's log:\n%s",
			processState(zombie2.cmd.Process.Pid), zombie2.log(), other.log())
	}

	// 6. Both finish and shut down gracefully.
	r.waitConsumed("both members to commit every input", other)
	zlog := zombie2.log()
	if err := zombie2.terminate(t); err != nil && exitCode(err) != 3 {
		t.Errorf("session-timeout zombie exit %d (%v), want 0 (aborted, rejoined) or 3 (fenced); log:\n%s", exitCode(err), err, zlog)
	}
	if err := other.terminate(t); err != nil {
		t.Fatalf("other member: %v\n%s", err, other.log())
	}
	t.Logf("session-timeout zombie stopped in transaction %d at committed %d; the other member took over and caught up in %v; zombie: %s",
		k, before, takeover.Round(time.Millisecond), firstMatch(zlog, "transaction aborted", "fenced"))
	rep := checkOutput(t, client, cl.Brokers(), out, parts, r.produced, skipMod, nil)
	if !rep.ok() {
		t.Errorf("output: %s", rep)
	}
	t.Logf("inputs %d, outputs %d (every %dth input emits nothing), process starts %d, SIGKILLs %d, zombie fenced %v: %s; %v",
		r.produced, rep.records, skipMod, restarts, kills, exitCode(zerr) == 3, rep, time.Since(start).Round(time.Millisecond))
}

// firstMatch returns the first log line containing one of subs.
func firstMatch(log string, subs ...string) string {
	for _, l := range strings.Split(log, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				return l
			}
		}
	}
	return "(no line matches)"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// runPipelineInProcess runs a pipeline in a goroutine; the returned function
// cancels it and returns RunPipeline's error.
func runPipelineInProcess(t *testing.T, cfg PipelineConfig, in, out *event.Type, h func(context.Context, testEvent, *Emitter) error) func() error {
	t.Helper()
	return runInBackground(t, "RunPipeline", func(ctx context.Context) error {
		return RunPipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, h)
	})
}

func TestPipelineEmptyOutputCommitsOffsets(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	in := testEventType("Input", "empty-in", event.ExactlyOnce)
	out := testEventType("Output", "empty-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, 3)
	cl.CreateTopic(t, out.Topic, 3)
	produceInputs(t, cl.Brokers(), in, 500, 10, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var met Counters
	stop := runPipelineInProcess(t, PipelineConfig{
		Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "empty", TransactionalID: "empty-tx", BatchSize: 40,
	}, in, out, func(context.Context, testEvent, *Emitter) error { return nil })
	kafkatest.WaitCommitted(t, client, "empty", in.Topic, 3, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, 3, 500, 1, nil)
	if rep.records != 0 || met.Get("Input", Committed) != 500 {
		t.Fatalf("outputs %d, committed %d: want 0 and 500", rep.records, met.Get("Input", Committed))
	}
	t.Logf("500 inputs, handler emits nothing: all offsets committed through offsets-only transactions, 0 outputs")
}

func TestPipelineDeadLetter(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2})
	in := testEventType("Input", "pdlq-in", event.ExactlyOnce)
	out := testEventType("Output", "pdlq-out", event.ExactlyOnce)
	for _, tp := range []string{in.Topic, out.Topic, DeadLetterTopic(in.Topic)} {
		cl.CreateTopic(t, tp, 2)
	}
	const n = 200
	raw := map[int64][]byte{17: []byte("{broken")}
	for _, s := range []int64{3, 50, 120} {
		raw[s] = (&testEvent{K: "k" + strconv.Itoa(int(s)%5), Seq: s, Fail: true}).AppendJSON(nil)
	}
	produceInputs(t, cl.Brokers(), in, n, 5, raw)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	var met Counters
	stop := runPipelineInProcess(t, PipelineConfig{
		Config: Config{Brokers: cl.Brokers(), Metrics: &met, Tune: kafkatest.FastTune}, GroupID: "pdlq", TransactionalID: "pdlq-tx",
		Retry: RetryPolicy{MaxAttempts: 2, Backoff: time.Millisecond},
	}, in, out, testTransform(out, 0))
	kafkatest.WaitCommitted(t, client, "pdlq", in.Topic, 2, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, 2, n, 0, map[int64]bool{3: true, 17: true, 50: true, 120: true})
	rep.check(t)
	dead := kafkatest.ReadN(t, client, DeadLetterTopic(in.Topic), 2, 4, 20*time.Second)
	for _, m := range dead {
		att, _ := HeaderValue(m.Headers, HeaderDLQAttempts)
		msg, _ := HeaderValue(m.Headers, HeaderDLQError)
		if (string(m.Value) == "{broken") != (att == "0") || (att != "0" && (att != "2" || msg != "input marked to fail")) {
			t.Errorf("dead letter %q: attempts %q error %q", m.Value, att, msg)
		}
	}
	if met.Get("Input", DeadLettered) != 4 || met.Get("Input", Committed) != n {
		t.Errorf("dead-lettered %d, committed %d", met.Get("Input", DeadLettered), met.Get("Input", Committed))
	}
	t.Logf("%d inputs: 3 failing handlers dead-lettered after 2 attempts, 1 undecodable at once, in the transactions; outputs exact (%d)", n, rep.records)
}

// TestPipelineRebalance adds a second member while the first is in the
// middle of a batch, by construction: member A's handler blocks on one
// record (its batch read, not committed) until B's join has started a
// rebalance, which waits for A. The rest of the inputs are produced only
// once both members hold partitions, so both commit some.
func TestPipelineRebalance(t *testing.T) {
	const parts, n1, n2, pivot = 6, 3000, 5000, 1500
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts})
	in := testEventType("Input", "rb-in", event.ExactlyOnce)
	out := testEventType("Output", "rb-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, out.Topic, parts)
	produceRange(t, cl.Brokers(), in, 0, n1, 48, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	start := time.Now()
	var metA, metB Counters
	var (
		once             sync.Once
		entered, release = make(chan struct{}), make(chan struct{})
	)
	h := func(ctx context.Context, e testEvent, em *Emitter) error {
		if e.Seq == pivot {
			once.Do(func() { close(entered); <-release })
		}
		return testTransform(out, 0)(ctx, e, em)
	}
	cfg := func(id string, met *Counters) PipelineConfig {
		return PipelineConfig{Config: Config{Brokers: cl.Brokers(), Metrics: met, Tune: kafkatest.FastTune}, GroupID: "rb", TransactionalID: id, BatchSize: 50}
	}
	group := func() kafkatest.Group {
		g, err := kafkatest.DescribeGroup(client, "rb")
		if err != nil {
			return kafkatest.Group{}
		}
		return g
	}
	stopA := runPipelineInProcess(t, cfg("rb-a", &metA), in, out, h)
	select {
	case <-entered:
	case <-time.After(kafkatest.Timeout(60 * time.Second)):
		t.Fatalf("member A never reached input %d", pivot)
	}
	committedA := metA.Get("Input", Committed)
	stopB := runPipelineInProcess(t, cfg("rb-b", &metB), in, out, h)
	kafkatest.WaitFor(t, 60*time.Second, "member B's join to start a rebalance", func() bool {
		s := group().State
		return s == "PreparingRebalance" || s == "CompletingRebalance"
	})
	close(release)
	kafkatest.WaitFor(t, 60*time.Second, "both members in a stable group", func() bool {
		g := group()
		return g.State == "Stable" && g.Members == 2
	})
	produceRange(t, cl.Brokers(), in, n1, n2, 48, nil)
	kafkatest.WaitCommitted(t, client, "rb", in.Topic, parts, 60*time.Second)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	rep := checkOutput(t, client, cl.Brokers(), out, parts, n1+n2, 0, nil)
	rep.check(t)
	if metA.Get("Input", Committed) == 0 || metB.Get("Input", Committed) == 0 {
		t.Errorf("committed: A %d, B %d; want both > 0", metA.Get("Input", Committed), metB.Get("Input", Committed))
	}
	t.Logf("%d inputs, member B joined while A held input %d in a batch (A had committed %d): A committed %d, B %d; %s; %v",
		n1+n2, pivot, committedA, metA.Get("Input", Committed), metB.Get("Input", Committed), rep, time.Since(start).Round(time.Millisecond))
}

func TestPipelineConfigAndEmitter(t *testing.T) {
	in := testEventType("Input", "in", event.ExactlyOnce)
	out := testEventType("Output", "out", event.ExactlyOnce)
	alo := testEventType("Loose", "loose", event.AtLeastOnce)
	h := testTransform(out, 0)
	cfg := PipelineConfig{Config: Config{Brokers: []string{"127.0.0.1:1"}}, GroupID: "g", TransactionalID: "tx"}
	if err := RunPipeline(context.Background(), cfg, alo, []*event.Type{out}, decodeTestEvent, h); !errors.Is(err, ErrGuaranteeMismatch) {
		t.Fatalf("at-least-once input: %v, want ErrGuaranteeMismatch", err)
	}
	if err := RunPipeline(context.Background(), cfg, in, []*event.Type{alo}, decodeTestEvent, h); !errors.Is(err, ErrGuaranteeMismatch) {
		t.Fatalf("at-least-once output: %v, want ErrGuaranteeMismatch", err)
	}
	noTx := cfg
	noTx.TransactionalID = ""
	if err := RunPipeline(context.Background(), noTx, in, []*event.Type{out}, decodeTestEvent, h); err == nil || !strings.Contains(err.Error(), "TransactionalID") {
		t.Fatalf("missing TransactionalID: %v", err)
	}
	weak := cfg
	weak.Tune = func(sc *sarama.Config) { sc.Consumer.IsolationLevel = sarama.ReadUncommitted }
	p, err := newPipeline(weak, event.ExactlyOnce, in, []*event.Type{out}, decodeTestEvent, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.saramaConfigs(); !errors.Is(err, ErrConflictingConfig) || !strings.Contains(err.Error(), "ReadCommitted") {
		t.Fatalf("read_uncommitted via Tune: %v, want ErrConflictingConfig naming ReadCommitted", err)
	}

	ctx := event.WithTraceparent(context.Background(), testTraceparent)
	em := &Emitter{ctx: ctx, allowed: map[*event.Type]bool{out: true}}
	if err := em.Emit(&testEvent{K: "a", et: alo}); !errors.Is(err, ErrNotProduced) {
		t.Fatalf("Emit of a type outside produces: %v", err)
	}
	if err := em.Emit(&testEvent{et: out}); err == nil {
		t.Fatal("Emit of an invalid event succeeded")
	}
	if err := em.Emit(&testEvent{K: "a", Seq: 1, et: out}); err != nil || len(em.msgs) != 1 {
		t.Fatalf("Emit: %v (%d queued)", err, len(em.msgs))
	}
	hs := map[string]string{}
	for _, h := range em.msgs[0].Headers {
		hs[string(h.Key)] = string(h.Value)
	}
	if hs[event.HeaderTraceparent] != testTraceparent || hs[event.HeaderType] != out.CEType || hs[event.HeaderID] == "" {
		t.Fatalf("output headers %v", hs)
	}
}

// TestPipelineCheckerDetectsDuplicates is the control for
// TestPipelineExactlyOnceUnderFaults: a consume-transform-produce loop that
// commits its outputs in a transaction but its input offsets outside it
// (the mistake exactly-once exists to prevent), and "crashes" between the
// two every fourth batch, redoes those batches. checkOutput must count
// every redone output as a duplicate and an order violation; if it did
// not, the fault test's "0 duplicates" would prove nothing.
func TestPipelineCheckerDetectsDuplicates(t *testing.T) {
	const parts, n, batch, group = 2, 600, 50, "ctl"
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts})
	in := testEventType("Input", "ctl-in", event.ExactlyOnce)
	out := testEventType("Output", "ctl-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, parts)
	cl.CreateTopic(t, out.Topic, parts)
	produceInputs(t, cl.Brokers(), in, n, 8, nil)
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})

	prod, err := sarama.NewSyncProducer(cl.Brokers(), txnConfig("ctl-tx"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx := event.WithTraceparent(context.Background(), testTraceparent)
	hw := kafkatest.HighWater(t, client, in.Topic, parts)
	redone, batches := 0, 0
	for p := range int32(parts) {
		for {
			off, err := kafkatest.Committed(client, group, in.Topic, parts)
			if err != nil {
				t.Fatal(err)
			}
			from := off[p]
			if from >= hw[p] {
				break
			}
			pcons, err := cons.ConsumePartition(in.Topic, p, from)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []*sarama.ProducerMessage
			var last int64
			for range min(int64(batch), hw[p]-from) {
				var m *sarama.ConsumerMessage
				select {
				case m = <-pcons.Messages():
				case <-time.After(kafkatest.Timeout(30 * time.Second)):
					t.Fatalf("reading %s/%d from %d: timed out", in.Topic, p, from)
				}
				e, err := decodeTestEvent(m.Value)
				if err != nil {
					t.Fatal(err)
				}
				o := &testEvent{K: e.K, Seq: e.Seq, Src: fmt.Sprintf("%d/%d", m.Partition, m.Offset)}
				msgs = append(msgs, &sarama.ProducerMessage{Topic: out.Topic, Key: sarama.StringEncoder(o.K), Value: sarama.ByteEncoder(o.AppendJSON(nil)),
					Headers: CloudEventHeaders(ctx, out, event.NewUUID().String(), time.Now())})
				last = m.Offset
			}
			pcons.Close()
			mustTxn(t, prod.BeginTxn(), prod.SendMessages(msgs), prod.CommitTxn())
			batches++
			if batches%4 == 0 {
				redone += len(msgs) // crash: outputs committed, offset not
				continue
			}
			coord, err := client.Coordinator(group)
			if err != nil {
				t.Fatal(err)
			}
			req := sarama.NewOffsetCommitRequest(client.Config(), group)
			req.Version = 2
			req.AddBlockWithLeaderEpoch(in.Topic, p, last+1, -1, 0, "")
			resp, err := coord.CommitOffset(req)
			if err == nil {
				if kerrBlock := resp.Errors[in.Topic][p]; kerrBlock != sarama.ErrNoError {
					err = kerrBlock
				}
			}
			if err != nil {
				t.Fatalf("committing offset %d of %s/%d outside the transaction: %v", last+1, in.Topic, p, err)
			}
		}
	}
	rep := checkOutput(t, client, cl.Brokers(), out, parts, n, 0, nil)
	t.Logf("offsets outside the transaction, %d of %d batches redone after a crash: %s", batches/4, batches, rep)
	if rep.ok() || rep.dups != redone || rep.orderErrs == 0 || rep.lost != 0 {
		t.Errorf("checker: %s; want exactly %d duplicates (the redone outputs), order violations, 0 lost", rep, redone)
	}
}

func mustTxn(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("transaction: %v", err)
		}
	}
}
