package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The pipeline crash tests at scale (issue 7, Proof): two members of one
// group, each a child process with its own TransactionalID and InstanceID,
// consume inputs produced while they run and are SIGKILLed at random
// points (inside an open round, right after a commit, from outside at a
// random progress point) and restarted, and zombies are fenced. The
// exactly-once run must lose and repeat nothing and keep per-partition and
// per-key order; the at-least-once run must lose nothing and repeat at
// most one round per kill. Controls in this file show that each checker
// fails the broken variant. EVENTGEN_SOAK=1 runs the full scale.

// soakScale is the size of a soak run.
type soakScale struct {
	inputs  int // at least this many inputs
	kills   int // SIGKILLs, a third of each kind
	zombies int // members stopped in a round, replaced and continued
	rate    int // inputs per second produced while the members run
}

// envSoak selects the full-scale soak runs.
const envSoak = "EVENTGEN_SOAK"

func soakScaleOf() soakScale {
	if os.Getenv(envSoak) == "1" {
		return soakScale{inputs: 100_000, kills: 60, zombies: 3, rate: 2500}
	}
	return soakScale{inputs: 3000, kills: 12, zombies: 1, rate: 400}
}

// killOutside is a soak step that is not a child's own plan: the test
// SIGKILLs the member once the group's committed progress passed a point.
const killOutside = "kill-outside"

// soakStep is one fault a member undergoes: kind is killOutside or one of
// the plans (planKillInRound, ...), at the plan's at-th round or commit
// after it is armed. A step happens once the group has committed pos
// inputs: a killOutside kills then, a plan is armed then.
type soakStep struct {
	kind string
	at   int
	pos  int64
}

// soakRun is a running soak test.
type soakRun struct {
	t                   *testing.T
	mode                string // "eos" or "alo"
	client              sarama.Client
	brokers             []string
	in, out, group      string
	parts, batch, skips int
	feed                *feeder

	ctx    context.Context // cancelled on the first failure
	cancel context.CancelFunc

	mu       sync.Mutex
	failure  error
	children []*child
	killed   map[string]int // SIGKILLs by kind
	fenced   int
	// roundOutputs adds up the outputs of the rounds that were open when a
	// member was killed or stopped in them: written (exactly-once: in a
	// transaction that must abort) or acknowledged (at-least-once: to be
	// repeated), never committed.
	roundOutputs int
	starts       atomic.Int64
}

func (s *soakRun) fail(format string, args ...any) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = fmt.Errorf(format, args...)
	}
	s.mu.Unlock()
	s.cancel()
}

// progress is the sum of the group's committed input offsets (-1 when it
// cannot be read).
func (s *soakRun) progress() int64 {
	c, err := kafkatest.Committed(s.client, s.group, s.in, s.parts)
	if err != nil {
		return -1
	}
	return kafkatest.Sum(c)
}

// start starts member i with the plan of step (none for killOutside or a
// nil step).
func (s *soakRun) start(i int, step *soakStep) *child {
	env := map[string]string{
		"CHILD_BROKERS": strings.Join(s.brokers, ","), "SOAK_IN": s.in, "SOAK_OUT": s.out, "SOAK_GROUP": s.group,
		"SOAK_TXN": fmt.Sprintf("%s-tx-%d", s.group, i), "SOAK_INSTANCE": fmt.Sprintf("%s-%d", s.group, i),
		"SOAK_BATCH": strconv.Itoa(s.batch), "SOAK_SKIP_MOD": strconv.Itoa(s.skips),
	}
	if step != nil && step.kind != killOutside {
		env["SOAK_PLAN"], env["SOAK_AT"], env["SOAK_WAIT_ARM"] = step.kind, strconv.Itoa(step.at), "1"
	}
	c := startSoakChild(s.t, s.mode, env)
	s.starts.Add(1)
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	return c
}

// waitFor is kafkatest.Eventually for the members' goroutines: false (and
// the run failed) when cond did not hold in time or the run failed.
func (s *soakRun) waitFor(what string, cond func() bool) bool {
	if !kafkatest.Eventually(120*time.Second, func() bool { return s.ctx.Err() != nil || cond() }) {
		s.fail("timed out waiting for %s", what)
		return false
	}
	return s.ctx.Err() == nil
}

func (s *soakRun) record(kind string, outputs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch kind {
	case planStopInRound:
		s.fenced++
	default:
		s.killed[kind]++
	}
	if kind == planKillInRound || kind == planStopInRound {
		s.roundOutputs += outputs
	}
}

// member runs member i through its steps and returns the process left
// running after the last one (nil after a failure).
func (s *soakRun) member(i int, steps []soakStep) *child {
	step := func(j int) *soakStep {
		if j < len(steps) {
			return &steps[j]
		}
		return nil
	}
	cur := s.start(i, step(0))
	for j, st := range steps {
		who := fmt.Sprintf("member %d, step %d (%s at %d)", i, j, st.kind, st.pos)
		if !s.waitFor(who+": the group's progress", func() bool { return cur.exited() || s.progress() >= st.pos }) {
			return nil
		}
		if cur.exited() {
			s.fail("%s: the member exited by itself: %v; log:\n%s", who, cur.err, cur.log())
			return nil
		}
		if st.kind != killOutside {
			if !s.waitFor(who+": the member to be ready", func() bool { return cur.exited() || cur.ready() }) {
				return nil
			}
			_ = cur.cmd.Process.Signal(syscall.SIGUSR1)
		}
		switch st.kind {
		case planKillInRound, planKillAfterCommit:
			if !s.waitFor(who+": the member to kill itself", cur.exited) {
				return nil
			}
			_, outs, fired := cur.planFired()
			if code := exitCode(cur.err); code != -int(syscall.SIGKILL) || !fired {
				s.fail("%s: exit %d (plan fired: %v), want SIGKILL by the plan; log:\n%s", who, code, fired, cur.log())
				return nil
			}
			s.record(st.kind, outs)
		case killOutside:
			_ = cur.cmd.Process.Signal(syscall.SIGKILL)
			if !s.waitFor(who+": the killed member to exit", cur.exited) {
				return nil
			}
			if code := exitCode(cur.err); code != -int(syscall.SIGKILL) {
				s.fail("%s: exit %d, want SIGKILL; log:\n%s", who, code, cur.log())
				return nil
			}
			s.record(st.kind, 0)
		case planStopInRound:
			if !s.waitFor(who+": the member to stop itself in a round", func() bool {
				return cur.exited() || processState(cur.cmd.Process.Pid) == 'T'
			}) {
				return nil
			}
			_, outs, fired := cur.planFired()
			if cur.exited() || !fired {
				s.fail("%s: the member did not stop in a round: exited %v (%v); log:\n%s", who, cur.exited(), cur.err, cur.log())
				return nil
			}
			// A replacement with the zombie's identity takes over; the
			// zombie is continued once the replacement has committed.
			repl := s.start(i, step(j+1))
			if !s.waitFor(who+": the replacement's first commit", func() bool {
				return strings.Contains(repl.fullLog(), "soak: commit 1:") || repl.exited()
			}) {
				return nil
			}
			if !strings.Contains(repl.fullLog(), "soak: commit 1:") {
				s.fail("%s: the replacement exited before committing: %v; log:\n%s", who, repl.err, repl.log())
				return nil
			}
			_ = cur.cmd.Process.Signal(syscall.SIGCONT)
			if !s.waitFor(who+": the continued zombie to exit", cur.exited) {
				return nil
			}
			if code := exitCode(cur.err); code != exitFenced {
				s.fail("%s: zombie exit %d, want %d (ErrFenced); log:\n%s", who, code, exitFenced, cur.log())
				return nil
			}
			s.record(st.kind, outs)
			cur = repl
			continue
		}
		cur = s.start(i, step(j+1))
	}
	return cur
}

// soakSteps draws the faults of a run: kills SIGKILLs, a third of each
// kind, and zombies, in random order at random points spread over the
// inputs, dealt alternately to the two members.
func soakSteps(rng *rand.Rand, sc soakScale) [2][]soakStep {
	var all []soakStep
	kinds := []string{planKillInRound, planKillAfterCommit, killOutside}
	for i := range sc.kills {
		all = append(all, soakStep{kind: kinds[i%3], at: 2 + rng.IntN(5)})
	}
	for range sc.zombies {
		all = append(all, soakStep{kind: planStopInRound, at: 2 + rng.IntN(5)})
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	pos := make([]int64, len(all))
	for i := range pos {
		pos[i] = int64(sc.inputs/20 + rng.IntN(sc.inputs*9/10))
	}
	slices.Sort(pos)
	var steps [2][]soakStep
	for i, st := range all {
		st.pos = pos[i]
		steps[i%2] = append(steps[i%2], st)
	}
	return steps
}

// soakResult is what runSoak measured.
type soakResult struct {
	inputs       int
	rep          soakReport
	killed       map[string]int
	fenced       int
	starts       int
	roundOutputs int
	dropped      int // rounds the members logged as failed or dropped (at-least-once: repeated)
	batch        int // the members' BatchSize
	took         time.Duration
}

// runSoak runs a soak test of mode ("eos" or "alo") at scale sc and
// checks what both modes promise: every planned fault happened, members
// that were not killed stop cleanly, and no output is lost.
func runSoak(t *testing.T, mode string, sc soakScale) soakResult {
	const parts, batch, keys = 6, 100, 64
	skips := 0
	if mode == "eos" {
		skips = 7 // offsets-only inputs too
	}
	start := time.Now()
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
	group := "soak-" + mode
	in, out := group+"-in", group+"-out"
	cl.CreateTopic(t, in, parts)
	cl.CreateTopic(t, out, parts)
	rng := rand.New(rand.NewPCG(kafkatest.Seed(t), 7))
	steps := soakSteps(rng, sc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &soakRun{
		t: t, mode: mode, client: kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{}), brokers: cl.Brokers(),
		in: in, out: out, group: group, parts: parts, batch: batch, skips: skips,
		ctx: ctx, cancel: cancel, killed: map[string]int{},
	}
	s.feed = startFeeder(t, cl.Brokers(), testEventType("Input", in, 0), keys, sc.rate, sc.inputs)

	var final [2]*child
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { final[i] = s.member(i, steps[i]) })
	}
	wg.Wait()
	if s.failure != nil {
		t.Fatal(s.failure)
	}
	n := s.feed.stop(t)
	kafkatest.WaitFor(t, 120*time.Second, "every input committed", func() bool {
		for i, c := range final {
			if c.exited() {
				t.Fatalf("member %d exited: %v\n%s", i, c.err, c.log())
			}
		}
		return s.progress() == int64(n)
	})
	for i, c := range final {
		if err := c.terminate(t); err != nil {
			t.Fatalf("member %d, graceful stop: %v\n%s", i, err, c.log())
		}
	}
	res := soakResult{inputs: n, killed: s.killed, fenced: s.fenced, starts: int(s.starts.Load()), roundOutputs: s.roundOutputs, batch: batch}
	for _, c := range s.children {
		for _, l := range strings.Split(c.fullLog(), "\n") {
			// A failed commit may drop its round (a rebalance, the end of a
			// session: see TestPipelineShutdownDuringCommitKeepsRound).
			if strings.Contains(l, "round dropped") || strings.Contains(l, "dropped, its inputs") || strings.Contains(l, "round failed") {
				res.dropped++
			}
		}
	}
	res.rep = checkSoakOutput(t, cl.Brokers(), out, parts, n, skips, mode == "alo")
	res.took = time.Since(start)

	kills := 0
	for _, kind := range []string{planKillInRound, planKillAfterCommit, killOutside} {
		want := 0
		for _, ms := range steps {
			for _, st := range ms {
				if st.kind == kind {
					want++
				}
			}
		}
		if s.killed[kind] != want {
			t.Errorf("%s: %d SIGKILLs, want %d", kind, s.killed[kind], want)
		}
		kills += s.killed[kind]
	}
	if kills < sc.kills || s.fenced != sc.zombies {
		t.Errorf("%d SIGKILLs and %d fenced zombies, want %d and %d", kills, s.fenced, sc.kills, sc.zombies)
	}
	if n < sc.inputs || res.rep.lost != 0 {
		t.Errorf("%d inputs, %d lost: want at least %d inputs and none lost", n, res.rep.lost, sc.inputs)
	}
	t.Logf("%s soak: %d inputs, %d outputs; SIGKILLs %d (in an open round %d, right after a commit %d, from outside %d), zombies fenced %d, process starts %d; rounds logged as failed or dropped %d; outputs in rounds open at kills and stops %d; %s; %v",
		mode, n, res.rep.records, kills, s.killed[planKillInRound], s.killed[planKillAfterCommit], s.killed[killOutside], s.fenced, res.starts,
		res.dropped, res.roundOutputs, res.rep, res.took.Round(time.Millisecond))
	return res
}

// TestPipelineSoakExactlyOnce: two exactly-once members under SIGKILLs
// inside open transactions (outputs written, offsets added), right after
// commits and at random points, restarted after each, and zombies (stopped
// inside a transaction, replaced by a process with their identity,
// continued) that must exit with ErrFenced. The committed output is
// exactly one record per input that emits one, in per-partition and
// per-key order, and the log holds at least the outputs of every round a
// member died or stopped in as aborted records: the kills hit open
// transactions. TestPipelineCheckerDetectsDuplicates and
// TestSoakCheckerControl show the checker fails duplicates and reordering.
func TestPipelineSoakExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("long crash test")
	}
	res := runSoak(t, "eos", soakScaleOf())
	if !res.rep.exact() {
		t.Errorf("output: %s", res.rep)
	}
	if res.roundOutputs == 0 || res.rep.aborted < res.roundOutputs {
		t.Errorf("aborted output records %d, want at least the %d outputs of the rounds open at kills and stops (and some)", res.rep.aborted, res.roundOutputs)
	}
}

// TestPipelineSoakAtLeastOnce: the same faults on two at-least-once
// members. No output is lost; outputs repeat, at least those of every
// round a member died or stopped in after they were acknowledged (so the
// kills landed past commits, with something to repeat), and at most one
// round (BatchSize) per kill, zombie or logged dropped round. First
// occurrences keep per-partition and per-key order.
// TestPipelineCheckerDetectsLoss and TestPipelineRedeliveryBoundDetectsMissingCommit
// show the loss and bound checks fail the broken variants.
func TestPipelineSoakAtLeastOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("long crash test")
	}
	res := runSoak(t, "alo", soakScaleOf())
	rep := res.rep
	if rep.lost != 0 || rep.unexpected != 0 || rep.orderErrs != 0 || rep.keyOrderErrs != 0 {
		t.Errorf("output: %s", rep)
	}
	if rep.dups == 0 || rep.dups < res.roundOutputs {
		t.Errorf("%d duplicates, want at least the %d acknowledged outputs of the rounds open at kills and stops", rep.dups, res.roundOutputs)
	}
	kills := res.killed[planKillInRound] + res.killed[planKillAfterCommit] + res.killed[killOutside]
	if err := rep.redeliveryBound(kills+res.fenced+res.dropped, res.batch); err != nil {
		t.Errorf("redeliveries past the bound: %v", err)
	}
}

// TestPipelineCheckerDetectsLoss is the loss control of
// TestPipelineSoakAtLeastOnce: a consumer that commits each batch's offset
// before writing its outputs is SIGKILLed twice between the two, mid-stream,
// and restarted. The checker must count exactly the two batches' inputs as
// lost (and nothing duplicated); if it did not, "0 lost" would prove
// nothing.
func TestPipelineCheckerDetectsLoss(t *testing.T) {
	const parts, n, batch = 2, 600, 50
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts})
	in, out := "lossy-in", "lossy-out"
	cl.CreateTopic(t, in, parts)
	cl.CreateTopic(t, out, parts)
	produceInputs(t, cl.Brokers(), testEventType("Input", in, 0), n, 8, nil)
	env := map[string]string{"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "SOAK_IN": in, "SOAK_OUT": out, "SOAK_GROUP": "lossy",
		"SOAK_PARTS": strconv.Itoa(parts), "SOAK_BATCH": strconv.Itoa(batch)}
	lost := 0
	for _, at := range []string{"2", "5", ""} {
		env["SOAK_AT"] = at
		c := startSoakChild(t, "lossy", env)
		err := c.wait(t, 60*time.Second)
		if at == "" {
			if err != nil {
				t.Fatalf("lossy loop: %v\n%s", err, c.log())
			}
			break
		}
		m := lossyKillLine.FindStringSubmatch(c.fullLog())
		if exitCode(err) != -int(syscall.SIGKILL) || m == nil {
			t.Fatalf("lossy loop: exit %d, want SIGKILL after committing batch %s; log:\n%s", exitCode(err), at, c.log())
		}
		k, _ := strconv.Atoi(m[1])
		lost += k
	}
	rep := checkSoakOutput(t, cl.Brokers(), out, parts, n, 0, true)
	t.Logf("offsets committed before the outputs, 2 kills between the two: %s", rep)
	if rep.lost != lost || lost != 2*batch || rep.dups != 0 {
		t.Errorf("checker: %s; want exactly %d lost (the killed batches), no duplicates", rep, 2*batch)
	}
}

// TestPipelineRedeliveryBoundDetectsMissingCommit is the control of the
// redelivery bound: an at-least-once member is SIGKILLed three times in
// its beforeCommit hook (outputs acknowledged, offsets not committed),
// each time once it has committed 3×BatchSize inputs, then runs to the
// end. With its offset commits intact, redeliveries happen and stay
// within one round per kill. With the commits removed (the broker answers
// OffsetCommit without storing it), every restart redoes everything, and
// the bound check must fail.
func TestPipelineRedeliveryBoundDetectsMissingCommit(t *testing.T) {
	for _, removed := range []bool{false, true} {
		t.Run(fmt.Sprintf("commits removed %v", removed), func(t *testing.T) {
			const parts, n, batch, kills = 2, 1200, 50, 3
			cl := kafkatest.Start(t, kafkatest.Options{Partitions: parts, InProcess: true})
			in, out, group := "bound-in", "bound-out", "bound"
			cl.CreateTopic(t, in, parts)
			cl.CreateTopic(t, out, parts)
			produceInputs(t, cl.Brokers(), testEventType("Input", in, 0), n, 8, nil)
			var swallowed atomic.Int64
			if removed {
				kf := cl.Kfake()
				kf.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
					kf.KeepControl()
					req := kr.(*kmsg.OffsetCommitRequest)
					if req.Group != group {
						return nil, nil, false
					}
					swallowed.Add(1)
					resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
					for _, rt := range req.Topics {
						st := kmsg.NewOffsetCommitResponseTopic()
						st.Topic = rt.Topic
						for _, rp := range rt.Partitions {
							sp := kmsg.NewOffsetCommitResponseTopicPartition()
							sp.Partition = rp.Partition
							st.Partitions = append(st.Partitions, sp)
						}
						resp.Topics = append(resp.Topics, st)
					}
					return resp, nil, true
				})
			}
			client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
			env := map[string]string{"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "SOAK_IN": in, "SOAK_OUT": out, "SOAK_GROUP": group,
				"SOAK_INSTANCE": "bound-0", "SOAK_BATCH": strconv.Itoa(batch), "SOAK_MIN_INPUTS": strconv.Itoa(3 * batch)}
			repeated := 0
			for range kills {
				env["SOAK_PLAN"], env["SOAK_AT"] = planKillInRound, "2"
				c := startSoakChild(t, "alo", env)
				err := c.wait(t, 60*time.Second)
				_, outs, fired := c.planFired()
				if exitCode(err) != -int(syscall.SIGKILL) || !fired {
					t.Fatalf("member: exit %d, want SIGKILL in a round; log:\n%s", exitCode(err), c.log())
				}
				repeated += outs
			}
			delete(env, "SOAK_PLAN")
			c := startSoakChild(t, "alo", env)
			kafkatest.WaitFor(t, 60*time.Second, "the last member to handle every input", func() bool {
				if c.exited() {
					t.Fatalf("member exited: %v\n%s", c.err, c.log())
				}
				if removed {
					return c.committedTotal() >= n // it starts from offset 0
				}
				off, err := kafkatest.Committed(client, group, in, parts)
				return err == nil && kafkatest.Sum(off) == n
			})
			if err := c.terminate(t); err != nil {
				t.Fatalf("member: %v\n%s", err, c.log())
			}
			rep := checkSoakOutput(t, cl.Brokers(), out, parts, n, 0, true)
			boundErr := rep.redeliveryBound(kills, batch)
			t.Logf("%d kills in rounds past 3×BatchSize committed inputs, offset commits removed %v (%d swallowed): %s; outputs of the killed rounds %d; bound: %v",
				kills, removed, swallowed.Load(), rep, repeated, boundErr)
			if rep.lost != 0 || rep.dups < repeated || repeated == 0 {
				t.Errorf("checker: %s; want 0 lost and at least the %d outputs of the killed rounds repeated", rep, repeated)
			}
			if removed && (boundErr == nil || swallowed.Load() == 0) {
				t.Errorf("offset commits removed (%d swallowed), yet the redelivery bound holds: the bound check cannot fail", swallowed.Load())
			}
			if !removed && boundErr != nil {
				t.Errorf("offset commits intact: %v", boundErr)
			}
		})
	}
}

// TestSoakCheckerControl feeds checkSoakOutput outputs written by hand:
// one input's output missing, one repeated, two of one key swapped. Each
// count must come out exact, and the swap must be seen by the per-key
// check even where the per-partition check of source offsets passes (it
// is written with increasing source offsets).
func TestSoakCheckerControl(t *testing.T) {
	const n = 40
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	out := "checker-out"
	cl.CreateTopic(t, out, 1)
	prod, err := sarama.NewSyncProducer(cl.Brokers(), sentinelConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	seqs := make([]int64, 0, n+1)
	for s := range int64(n) {
		switch s {
		case 7: // lost
		case 20:
			seqs = append(seqs, 21, 20) // one key's two outputs swapped
		case 21:
		default:
			seqs = append(seqs, s)
		}
	}
	seqs = append(seqs, 30) // repeated after the others: a duplicate
	for i, s := range seqs {
		// Key k<seq/2>: seqs 20 and 21 share k10, 30 and 31 share k15.
		e := &testEvent{K: "k" + strconv.FormatInt(s/2, 10), Seq: s, Src: fmt.Sprintf("0/%d", i)}
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: out, Partition: 0, Value: sarama.ByteEncoder(e.AppendJSON(nil))}); err != nil {
			t.Fatal(err)
		}
	}
	exact := checkSoakOutput(t, cl.Brokers(), out, 1, n, 0, false)
	first := checkSoakOutput(t, cl.Brokers(), out, 1, n, 0, true)
	t.Logf("hand-written outputs (seq 7 missing, 20 and 21 of key k10 swapped, 30 repeated): exact %s; first occurrences %s", exact, first)
	if exact.lost != 1 || exact.dups != 1 || exact.keyOrderErrs != 2 || exact.orderErrs != 0 || exact.exact() {
		t.Errorf("exact: %s; want 1 lost, 1 duplicate, 2 key-order violations (the swap, the repeat), 0 partition-order", exact)
	}
	if first.lost != 1 || first.dups != 1 || first.keyOrderErrs != 1 || first.orderErrs != 0 {
		t.Errorf("first occurrences: %s; want 1 lost, 1 duplicate, 1 key-order violation (the swap)", first)
	}
	if err := first.redeliveryBound(0, 1); err == nil {
		t.Errorf("a duplicate with no event to explain it passes the redelivery bound")
	}
	if err := first.redeliveryBound(1, 1); err != nil {
		t.Errorf("one duplicate, one event of one record: %v", err)
	}
}
