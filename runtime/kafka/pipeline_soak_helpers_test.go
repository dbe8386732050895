package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// Helpers of the pipeline soak tests (pipeline_soak_test.go): the member
// processes they SIGKILL, a producer that feeds inputs while the members
// run, and a checker that reads the outputs back.

// soakChildEnv selects TestEventgenSoakChild's mode in a re-executed test
// binary: "eos" or "alo" (a pipeline member), "lossy" (a loop that commits
// offsets before its outputs are durable, the loss control).
const soakChildEnv = "EVENTGEN_SOAK_CHILD"

// Exit codes of a soak child: 0 after a graceful stop, 3 for ErrFenced (as
// TestEventgenChild), 4 for ErrProducerFatal, 1 for anything else; a
// SIGKILL shows as -9 (exitCode).
const (
	exitFenced        = 3
	exitProducerFatal = 4
)

// The plans a soak member can be started with (SOAK_PLAN), each firing once
// at the SOAK_AT-th round or commit after it is armed, and only once the
// process has committed SOAK_MIN_INPUTS inputs. A plan is armed at start,
// or with SOAK_WAIT_ARM=1 when the process receives SIGUSR1 (after it
// printed childReady): the test arms it once the group's progress reached
// the point where the fault belongs.
//
//   - planKillInRound: SIGKILL in the beforeCommit hook. Exactly-once: the
//     round's outputs are written and its offsets added to the open
//     transaction, not committed. At-least-once: every output is
//     acknowledged, the offsets are not committed.
//   - planKillAfterCommit: SIGKILL as soon as a commit succeeded, before the
//     next round begins (Metrics.Count(Committed) runs right after the
//     commit returned).
//   - planStopInRound: SIGSTOP where planKillInRound kills (a zombie).
//
// Each prints one line saying where it fired, with the round's inputs and
// outputs; every commit prints "soak: commit <n>: <inputs> inputs (total
// <t>)".
const (
	planKillInRound     = "kill-in-round"
	planKillAfterCommit = "kill-after-commit"
	planStopInRound     = "stop-in-round"
)

// soakPlanLine matches the line a plan prints when it fires.
var soakPlanLine = regexp.MustCompile(`soak: (kill-in-round|kill-after-commit|stop-in-round) at (?:round|commit) \d+: (\d+) inputs, (\d+) outputs`)

// TestEventgenSoakChild is the entry point of the soak tests' child
// processes; it is skipped in a normal run.
func TestEventgenSoakChild(t *testing.T) {
	mode := os.Getenv(soakChildEnv)
	if mode == "" {
		t.Skip("child-process entry point of the soak tests; runs only when re-executed by one")
	}
	ctx, stop := signalContext()
	defer stop()
	arm, cont := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(arm, syscall.SIGUSR1)
	signal.Notify(cont, syscall.SIGCONT)
	fmt.Fprintln(os.Stderr, childReady)
	var err error
	switch mode {
	case "eos", "alo":
		err = runSoakMember(ctx, mode == "eos", arm, cont)
	case "lossy":
		err = runLossyLoop(ctx)
	default:
		err = fmt.Errorf("unknown soak child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child error:", err)
		switch {
		case errors.Is(err, ErrFenced):
			os.Exit(exitFenced)
		case errors.Is(err, ErrProducerFatal):
			os.Exit(exitProducerFatal)
		}
		os.Exit(1)
	}
	os.Exit(0)
}

// startSoakChild starts TestEventgenSoakChild in mode with env (see
// startChild, whose child type it returns).
func startSoakChild(t testing.TB, mode string, env map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventgenSoakChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), soakChildEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f, err := os.CreateTemp(t.TempDir(), "soak-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), stderr: f.Name()}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// fullLog returns the child's whole log.
func (c *child) fullLog() string {
	b, _ := os.ReadFile(c.stderr)
	return string(b)
}

// planFired returns the inputs and outputs of the round in which the
// child's plan fired, and whether it fired.
func (c *child) planFired() (inputs, outputs int, ok bool) {
	m := soakPlanLine.FindStringSubmatch(c.fullLog())
	if m == nil {
		return 0, 0, false
	}
	inputs, _ = strconv.Atoi(m[2])
	outputs, _ = strconv.Atoi(m[3])
	return inputs, outputs, true
}

var soakCommitLine = regexp.MustCompile(`soak: commit \d+: \d+ inputs \(total (\d+)\)`)

// committedTotal returns the inputs the child committed so far, by its own
// count (its last "soak: commit" line).
func (c *child) committedTotal() int {
	ms := soakCommitLine.FindAllStringSubmatch(c.fullLog(), -1)
	if len(ms) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(ms[len(ms)-1][1])
	return n
}

// runSoakMember runs one pipeline member: RunPipeline (eos) or
// RunAtLeastOncePipeline over SOAK_IN → SOAK_OUT with testTransform (no
// output when Seq%SOAK_SKIP_MOD is 0), as SOAK_GROUP, SOAK_INSTANCE and,
// exactly-once, SOAK_TXN, with SOAK_BATCH and SOAK_INTERVAL_MS, and its
// SOAK_PLAN (see planKillInRound), armed by a signal on arm with
// SOAK_WAIT_ARM=1. planStopInRound waits for SIGCONT on cont: kill(2) of
// SIGSTOP to itself returns before every thread of a Go process has
// stopped, and a goroutine left running would go on to commit the round
// before the test sees the process stopped.
func runSoakMember(ctx context.Context, eos bool, arm, cont <-chan os.Signal) error {
	g := event.AtLeastOnce
	if eos {
		g = event.ExactlyOnce
	}
	in := testEventType("Input", os.Getenv("SOAK_IN"), g)
	out := testEventType("Output", os.Getenv("SOAK_OUT"), g)
	plan, at, minInputs, skipMod := os.Getenv("SOAK_PLAN"), envInt("SOAK_AT"), int64(envInt("SOAK_MIN_INPUTS")), envInt("SOAK_SKIP_MOD")
	// rounds and committed are touched by the committer goroutine and
	// Cleanup, one at a time; atomics keep the race detector informed.
	var rounds, commits, committed atomic.Int64
	var fired, armed atomic.Bool
	var armedRounds, armedCommits atomic.Int64 // the counts when armed
	if os.Getenv("SOAK_WAIT_ARM") == "1" {
		go func() {
			<-arm
			armedRounds.Store(rounds.Load())
			armedCommits.Store(commits.Load())
			armed.Store(true)
			fmt.Fprintln(os.Stderr, "soak: armed")
		}()
	} else {
		armed.Store(true)
	}
	fire := func(what string, n int64, batch []*sarama.ConsumerMessage) bool {
		base := armedRounds.Load()
		if what == planKillAfterCommit {
			base = armedCommits.Load()
		}
		if plan != what || !armed.Load() || n-base < int64(at) || committed.Load() < minInputs || !fired.CompareAndSwap(false, true) {
			return false
		}
		outs := 0
		for _, m := range batch {
			if e, err := decodeTestEvent(m.Value); err == nil && (skipMod <= 0 || e.Seq%int64(skipMod) != 0) {
				outs++
			}
		}
		kind := "round"
		if what == planKillAfterCommit {
			kind = "commit"
		}
		fmt.Fprintf(os.Stderr, "soak: %s at %s %d: %d inputs, %d outputs\n", what, kind, n, len(batch), outs)
		return true
	}
	var last []*sarama.ConsumerMessage // the round being committed, for planKillAfterCommit
	// Killed or stopped in a round, an exactly-once member must have
	// written the round's outputs (the test counts them as aborted
	// records): its rounds wait for acknowledgements. Other members run as
	// in production.
	hooks := &pipelineHooks{acks: plan == planKillInRound || plan == planStopInRound, beforeCommit: func(batch []*sarama.ConsumerMessage) {
		last = batch
		n := rounds.Add(1)
		if fire(planKillInRound, n, batch) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		if fire(planStopInRound, n, batch) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			<-cont
			fmt.Fprintln(os.Stderr, "soak: continued")
		}
	}}
	met := MetricsFunc(func(ev string, c Counter, n int64) {
		if c != Committed || ev != "Input" {
			return
		}
		k, total := commits.Add(1), committed.Add(n)
		fmt.Fprintf(os.Stderr, "soak: commit %d: %d inputs (total %d)\n", k, n, total)
		if fire(planKillAfterCommit, k, last) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	tune := func(sc *sarama.Config) {
		kafkatest.FastTune(sc)
		// Longer than a zombie stays stopped: its PRODUCER_FENCED must read
		// as a newer instance, not as its own transaction timing out.
		sc.Producer.Transaction.Timeout = 60 * time.Second
	}
	cfg := PipelineConfig{
		Config:         Config{Brokers: childBrokers(), Tune: tune, Logger: childLogger(), Metrics: met},
		GroupID:        os.Getenv("SOAK_GROUP"),
		InstanceID:     os.Getenv("SOAK_INSTANCE"),
		BatchSize:      envInt("SOAK_BATCH"),
		CommitInterval: time.Duration(envInt("SOAK_INTERVAL_MS")) * time.Millisecond,
		hooks:          hooks,
	}
	h := testTransform(out, skipMod)
	if eos {
		cfg.TransactionalID = os.Getenv("SOAK_TXN")
		return RunPipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, h)
	}
	return RunAtLeastOncePipeline(ctx, cfg, in, []*event.Type{out}, decodeTestEvent, h)
}

// runLossyLoop is the broken consumer of the loss control: it reads
// SOAK_IN's SOAK_PARTS partitions from SOAK_GROUP's committed offsets,
// SOAK_BATCH records at a time, commits each batch's offset and only then
// writes its outputs (one per input, as testTransform) to SOAK_OUT. With
// SOAK_AT=k it SIGKILLs itself after committing its k-th batch, before
// writing that batch's outputs, which are lost. It returns once every
// partition is read up to the high watermark it found at start.
func runLossyLoop(ctx context.Context) error {
	topic, outTopic, group := os.Getenv("SOAK_IN"), os.Getenv("SOAK_OUT"), os.Getenv("SOAK_GROUP")
	parts, batch, killAt := envInt("SOAK_PARTS"), envInt("SOAK_BATCH"), envInt("SOAK_AT")
	out := testEventType("Output", outTopic, event.AtLeastOnce)
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	kafkatest.FastTune(sc)
	client, err := sarama.NewClient(childBrokers(), sc)
	if err != nil {
		return err
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer cons.Close()
	prod, err := sarama.NewSyncProducer(childBrokers(), idempotentConfig())
	if err != nil {
		return err
	}
	defer prod.Close()
	hw := map[int32]int64{}
	for p := range int32(parts) {
		if hw[p], err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			return err
		}
	}
	pctx := event.WithTraceparent(ctx, testTraceparent)
	batches := 0
	for p := range int32(parts) {
		for ctx.Err() == nil {
			committed, err := kafkatest.Committed(client, group, topic, parts)
			if err != nil {
				return err
			}
			from := committed[p]
			if from >= hw[p] {
				break
			}
			pc, err := cons.ConsumePartition(topic, p, from)
			if err != nil {
				return err
			}
			var msgs []*sarama.ProducerMessage
			var last int64
			for range min(int64(batch), hw[p]-from) {
				var m *sarama.ConsumerMessage
				select {
				case m = <-pc.Messages():
				case <-ctx.Done():
					pc.Close()
					return nil
				}
				e, err := decodeTestEvent(m.Value)
				if err != nil {
					pc.Close()
					return err
				}
				o := &testEvent{K: e.K, Seq: e.Seq, Src: fmt.Sprintf("%d/%d", m.Partition, m.Offset)}
				msgs = append(msgs, &sarama.ProducerMessage{Topic: outTopic, Key: sarama.StringEncoder(o.K), Value: sarama.ByteEncoder(o.AppendJSON(nil)),
					Headers: CloudEventHeaders(pctx, out, event.NewUUID().String(), time.Now())})
				last = m.Offset
			}
			pc.Close()
			// The mistake: the offset first, the outputs after.
			if err := commitOffsetOutsideGroup(client, group, topic, p, last+1); err != nil {
				return err
			}
			batches++
			if batches == killAt {
				fmt.Fprintf(os.Stderr, "soak: lossy kill after committing batch %d: %d inputs, %d outputs\n", batches, len(msgs), len(msgs))
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			if err := prod.SendMessages(msgs); err != nil {
				return err
			}
		}
	}
	return nil
}

var lossyKillLine = regexp.MustCompile(`soak: lossy kill after committing batch \d+: (\d+) inputs`)

// commitOffsetOutsideGroup commits off for topic/p as a simple (memberless)
// commit of group.
func commitOffsetOutsideGroup(client sarama.Client, group, topic string, p int32, off int64) error {
	coord, err := client.Coordinator(group)
	if err != nil {
		return err
	}
	req := sarama.NewOffsetCommitRequest(client.Config(), group)
	req.Version = 2
	req.AddBlockWithLeaderEpoch(topic, p, off, -1, 0, "")
	resp, err := coord.CommitOffset(req)
	if err != nil {
		return err
	}
	if kerrBlock := resp.Errors[topic][p]; kerrBlock != sarama.ErrNoError {
		return fmt.Errorf("committing %s/%d at %d: %w", topic, p, off, kerrBlock)
	}
	return nil
}

// feeder produces inputs (seq 0, 1, 2, ..., key k<seq%keys>) while the
// members run, at about rate inputs per second, through one idempotent
// producer: per partition, inputs arrive in seq order. The pacing only
// shapes the load; no step of a test waits for a tick.
type feeder struct {
	produced atomic.Int64  // acknowledged inputs: seq 0..produced-1
	finish   chan struct{} // closed by stop
	once     sync.Once
	done     chan struct{}
	err      error
}

// startFeeder starts producing to et. Once finish is called it goes on up
// to at least min inputs, then stops.
func startFeeder(t *testing.T, brokers []string, et *event.Type, keys, rate, minInputs int) *feeder {
	t.Helper()
	pc := idempotentConfig()
	pc.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	f := &feeder{finish: make(chan struct{}), done: make(chan struct{})}
	const tick = 20 * time.Millisecond
	chunk := max(1, rate*int(tick/time.Millisecond)/1000)
	ctx := event.WithTraceparent(context.Background(), testTraceparent)
	go func() {
		defer close(f.done)
		defer p.Close()
		tk := time.NewTicker(tick)
		defer tk.Stop()
		finishing, fin := false, f.finish
		for {
			seq := int(f.produced.Load())
			if finishing && seq >= minInputs {
				return
			}
			select {
			case <-tk.C:
			case <-fin:
				finishing, fin = true, nil
			}
			n := chunk
			if finishing {
				n = max(0, min(minInputs-seq, 10*chunk))
			}
			for i := seq; i < seq+n; i++ {
				e := &testEvent{K: "k" + strconv.Itoa(i%keys), Seq: int64(i), et: et}
				p.Input() <- &sarama.ProducerMessage{Topic: et.Topic, Key: sarama.StringEncoder(e.K), Value: sarama.ByteEncoder(e.AppendJSON(nil)),
					Headers: CloudEventHeaders(ctx, et, event.NewUUID().String(), time.Now())}
			}
			for range n {
				select {
				case <-p.Successes():
				case pe := <-p.Errors():
					f.err = fmt.Errorf("producing inputs: %w", pe)
					return
				}
			}
			f.produced.Add(int64(n))
		}
	}()
	t.Cleanup(func() { f.stop(t) })
	return f
}

// stop makes the feeder produce up to its minimum and waits for it; it
// returns the inputs produced.
func (f *feeder) stop(t *testing.T) int {
	t.Helper()
	f.once.Do(func() { close(f.finish) })
	select {
	case <-f.done:
	case <-time.After(kafkatest.Timeout(120 * time.Second)):
		t.Fatalf("the input feeder did not finish within 120 s (scaled)")
	}
	if f.err != nil {
		t.Fatal(f.err)
	}
	return int(f.produced.Load())
}

// soakReport is what checkSoakOutput found in the outputs of n inputs (seq
// 0..n-1, one output each except Seq%skipMod == 0).
type soakReport struct {
	records    int // committed output records
	lost, dups int
	unexpected int // outputs of inputs that emit none
	// orderErrs counts outputs whose source offset is not after the
	// previous output's in its partition (or that come from another
	// partition); keyOrderErrs outputs whose seq is not after the previous
	// output of their key. With firstOnly, only each seq's first output
	// counts: repeats are the dups.
	orderErrs, keyOrderErrs int
	dupsByPartition         map[int32]int
	// aborted counts output records in the log that a read_committed
	// reader does not see (written in transactions that aborted).
	aborted int
}

func (r soakReport) exact() bool {
	return r.lost == 0 && r.dups == 0 && r.unexpected == 0 && r.orderErrs == 0 && r.keyOrderErrs == 0
}

func (r soakReport) String() string {
	return fmt.Sprintf("%d records, %d lost, %d duplicates %v, %d unexpected, %d partition-order and %d key-order violations, %d aborted records in the log",
		r.records, r.lost, r.dups, r.dupsByPartition, r.unexpected, r.orderErrs, r.keyOrderErrs, r.aborted)
}

// redeliveryBound returns an error when the duplicates exceed what
// at-least-once allows: at most one round (batch inputs, one output each)
// repeated per event that can drop a round (a SIGKILL, a fenced zombie, a
// round the pipeline logged as dropped), in every partition and in all.
func (r soakReport) redeliveryBound(events, batch int) error {
	bound := events * batch
	var errs []error
	if r.dups > bound {
		errs = append(errs, fmt.Errorf("%d duplicates in all, more than %d events × BatchSize %d", r.dups, events, batch))
	}
	for p, d := range r.dupsByPartition {
		if d > bound {
			errs = append(errs, fmt.Errorf("partition %d: %d duplicates, more than %d events × BatchSize %d", p, d, events, batch))
		}
	}
	return errors.Join(errs...)
}

// writeSentinels appends a fresh sentinel record to each partition of
// topic, once every writer has stopped, and returns its value: a read up
// to it (readToSentinel) has seen everything written before.
func writeSentinels(t *testing.T, brokers []string, topic string, parts int) string {
	t.Helper()
	prod, err := sarama.NewSyncProducer(brokers, sentinelConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	v := "SENTINEL " + event.NewUUID().String()
	for p := range int32(parts) {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// readToSentinel reads topic/p with client (whose isolation level decides
// whether aborted records are seen) up to the sentinel, and returns the
// records before it, earlier sentinels left out.
func readToSentinel(t *testing.T, client sarama.Client, topic string, p int32, sentinel string) []*sarama.ConsumerMessage {
	t.Helper()
	msgs := kafkatest.ReadPartition(t, client, topic, p, kafkatest.ReadOptions{
		Until: func(m *sarama.ConsumerMessage) bool { return string(m.Value) == sentinel }, Timeout: 120 * time.Second,
	})
	return slices.DeleteFunc(msgs, func(m *sarama.ConsumerMessage) bool { return strings.HasPrefix(string(m.Value), "SENTINEL") })
}

// checkSoakOutput reads the committed outputs (every writer must have
// stopped) and compares them with the n inputs. It also reads the log
// read_uncommitted and counts the aborted records.
func checkSoakOutput(t *testing.T, brokers []string, out string, parts, n, skipMod int, firstOnly bool) soakReport {
	t.Helper()
	sentinel := writeSentinels(t, brokers, out, parts)
	committed := kafkatest.NewClient(t, brokers, kafkatest.ClientOptions{})
	all := kafkatest.NewClient(t, brokers, kafkatest.ClientOptions{ReadUncommitted: true})
	rep := soakReport{dupsByPartition: map[int32]int{}}
	count := map[int64]int{}
	lastSeq := map[string]int64{}
	for p := range int32(parts) {
		msgs := readToSentinel(t, committed, out, p, sentinel)
		rep.aborted += len(readToSentinel(t, all, out, p, sentinel)) - len(msgs)
		lastSrc := int64(-1)
		for _, m := range msgs {
			rep.records++
			e, err := decodeTestEvent(m.Value)
			if err != nil {
				t.Errorf("output %d/%d: %v", p, m.Offset, err)
				continue
			}
			count[e.Seq]++
			if count[e.Seq] > 1 {
				rep.dupsByPartition[p]++
				if firstOnly {
					continue
				}
			}
			srcP, srcOff, _ := strings.Cut(e.Src, "/")
			off, _ := strconv.ParseInt(srcOff, 10, 64)
			if srcP != strconv.Itoa(int(p)) || off <= lastSrc {
				rep.orderErrs++
			}
			lastSrc = off
			if prev, ok := lastSeq[e.K]; ok && e.Seq <= prev {
				rep.keyOrderErrs++
			}
			lastSeq[e.K] = e.Seq
		}
	}
	for seq := range int64(n) {
		want := 1
		if skipMod > 0 && seq%int64(skipMod) == 0 {
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
	for seq := range count {
		if seq < 0 || seq >= int64(n) {
			rep.unexpected += count[seq]
		}
	}
	return rep
}

// sentinelConfig is a plain producer that writes to the partition a
// message names.
func sentinelConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion()
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	return sc
}
