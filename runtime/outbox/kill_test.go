package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// EnvSoak runs the full-scale soak (100,000 events, at least 30 kills)
// instead of the reduced CI run.
const EnvSoak = "EVENTGEN_SOAK"

// --- child processes -------------------------------------------------------

const childEnv = "EVENTGEN_OUTBOX_CHILD"

// child is a re-executed test binary running TestOutboxChild.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	out  string // stdout and stderr
	log  string // the batch log (CHILD_LOG)
}

// startChild starts a relay child.
func startChild(t testing.TB, env map[string]string) *child {
	t.Helper()
	return startChildMode(t, "relay", env)
}

// startChildMode starts a child running mode: relay, service or consumer.
func startChildMode(t testing.TB, mode string, env map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := os.CreateTemp(t.TempDir(), "child-*.out")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), out: out.Name(), log: env["CHILD_LOG"]}
	go func() {
		c.err = cmd.Wait()
		out.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits up to d (scaled) for the child to exit and returns its error.
func (c *child) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(kafkatest.Timeout(d)):
		t.Fatalf("child %d did not exit within %v; output:\n%s", c.cmd.Process.Pid, d, c.output())
		return nil
	}
}

func (c *child) kill(t testing.TB) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.wait(t, 30*time.Second)
}

// childReady is printed by a child once SIGTERM means a graceful stop.
const childReady = "child: ready"

// terminate asks the child to stop gracefully (once it is ready for it)
// and returns its exit error.
func (c *child) terminate(t testing.TB) error {
	t.Helper()
	kafkatest.WaitFor(t, 30*time.Second, "the child to be ready", func() bool {
		b, _ := os.ReadFile(c.out)
		return c.exited() || strings.Contains(string(b), childReady)
	})
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	return c.wait(t, 60*time.Second)
}

// output returns the last 4000 bytes of the child's output.
func (c *child) output() string {
	b, _ := os.ReadFile(c.out)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// batchLog is what a relay child wrote: "P id id ..." before publishing a
// batch (the test events' IDs, key/seq), "F id error" for a record Kafka
// did not acknowledge, "D" once the batch's rows were deleted.
type batchLog struct {
	batches  int             // P lines
	inFlight []string        // the IDs of a last P without its D: published or not when the child died
	failed   map[string]bool // IDs with an F line
}

func readBatchLog(t testing.TB, path string) batchLog {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return batchLog{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bl := batchLog{failed: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) > 0 && fs[0] == "P":
			bl.batches++
			bl.inFlight = fs[1:]
		case len(fs) == 1 && fs[0] == "D":
			bl.inFlight = nil
		case len(fs) > 1 && fs[0] == "F":
			bl.failed[fs[1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return bl
}

// batches counts the P lines of a log so far.
func batches(path string) int {
	b, _ := os.ReadFile(path)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "P") {
			n++
		}
	}
	return n
}

// TestOutboxChild is the entry point of child processes; it is skipped in
// a normal run.
func TestOutboxChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("child-process entry point; runs only when re-executed by a test")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintln(os.Stderr, childReady)
	var err error
	switch mode := os.Getenv(childEnv); mode {
	case "relay":
		err = runChildRelay(ctx, t)
	case "service":
		err = runChildService(ctx, t)
	case "consumer":
		err = runChildConsumer(ctx, t)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runChildRelay runs a relay on CHILD_SCHEMA's outbox, publishing to
// CHILD_BROKERS with a CHILD_MAX_BYTES record limit, and writes its batch
// log to CHILD_LOG (one write(2) per line, which survives a SIGKILL).
func runChildRelay(ctx context.Context, t *testing.T) error {
	logf, err := os.OpenFile(os.Getenv("CHILD_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	pool := schemaPool(t, os.Getenv("CHILD_SCHEMA"), 2)
	o := relayOptions(strings.Split(os.Getenv("CHILD_BROKERS"), ","))
	maxBytes, _ := strconv.Atoi(os.Getenv("CHILD_MAX_BYTES"))
	o.Kafka.Tune = func(sc *sarama.Config) {
		kafkatest.FastTune(sc)
		sc.Producer.MaxMessageBytes = maxBytes
	}
	o.MaxAttempts = 3
	o.BatchSize, _ = strconv.Atoi(os.Getenv("CHILD_BATCH"))
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var writeErr error
	o.hooks = batchLogHooks(logf, &writeErr)
	r, err := NewRelay(pool, o)
	if err != nil {
		return err
	}
	return errors.Join(r.Run(ctx), writeErr)
}

// batchLogHooks returns hooks that write a relay's batch log to f (see
// batchLog); the first write error is stored in *errp.
func batchLogHooks(f *os.File, errp *error) *hooks {
	write := func(b []byte) {
		if _, err := f.Write(b); err != nil && *errp == nil {
			*errp = err
		}
	}
	id := func(rw *row) string {
		var e testevent.Order
		if err := e.UnmarshalJSON(rw.payload); err != nil && *errp == nil {
			*errp = err
		}
		return e.ID
	}
	return &hooks{
		publishing: func(rows []row) {
			b := []byte("P")
			for i := range rows {
				b = append(b, ' ')
				b = append(b, id(&rows[i])...)
			}
			write(append(b, '\n'))
		},
		failed: func(rw *row, err error) {
			write(fmt.Appendf(nil, "F %s %s\n", id(rw), strings.ReplaceAll(err.Error(), "\n", " ")))
		},
		finished: func() { write([]byte("D\n")) },
	}
}

// duplicates sorts the topic's duplicated events by cause: in flight in a
// killed relay (the killed logs' last batch without its D), reported
// failed by Kafka (an F line in any log), or unexplained.
func duplicates(t testing.TB, chk check, recs []published, logs, killed []string) (byKill, byFailure int, unexplained []string) {
	t.Helper()
	inFlight, failed := map[string]bool{}, map[string]bool{}
	for _, l := range logs {
		for id := range readBatchLog(t, l).failed {
			failed[id] = true
		}
	}
	for _, l := range killed {
		for _, id := range readBatchLog(t, l).inFlight {
			inFlight[id] = true
		}
	}
	idOf := map[string]string{}
	for _, r := range recs {
		idOf[r.ceID] = fmt.Sprintf("%s/%d", r.key, r.seq)
	}
	for ce, n := range chk.dups {
		switch id := idOf[ce]; {
		case inFlight[id]:
			byKill += n
		case failed[id]:
			byFailure += n
		default:
			unexplained = append(unexplained, id)
		}
	}
	return byKill, byFailure, unexplained
}

// TestDuplicateCheckerCatchesARepublishingRelay is the control of the
// duplicate check of TestRelaysSurviveKills: a relay that loses one batch's
// deletion in three (and goes on as if it had deleted) publishes those
// rows again without any kill or failure, and the check says so.
func TestDuplicateCheckerCatchesARepublishingRelay(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testEventType(t, "outbox.republish")
	w := workload{et: et, keys: 50, perKey: 10, writers: 5, seed: kafkatest.Seed(t)}
	if err := w.run(context.Background(), db.pool, Table{}); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "relay.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var writeErr error
	o := relayOptions(c.Brokers())
	o.BatchSize = 50
	o.hooks = batchLogHooks(f, &writeErr)
	o.hooks.loseDeleteEvery = 3
	_, stop := runRelay(t, db.pool, o)
	kafkatest.WaitFor(t, 60*time.Second, "the table to empty", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	if err := errors.Join(stop(), writeErr); err != nil {
		t.Fatal(err)
	}
	recs := readTopic(t, c.Brokers(), et.Topic)
	chk := checkTopic(recs, w.want())
	byKill, byFailure, unexplained := duplicates(t, chk, recs, []string{logPath}, nil)
	t.Logf("%v: %d by a kill, %d by a failure, %d unexplained", chk, byKill, byFailure, len(unexplained))
	if len(chk.lost) > 0 || len(chk.violations) > 0 {
		t.Fatalf("the control lost or reordered: %v", chk)
	}
	if len(unexplained) == 0 {
		t.Fatal("a relay that publishes rows again without a kill went unnoticed: the duplicate check must catch it")
	}
}

// --- the kill test ---------------------------------------------------------

// TestRelaysSurviveKills runs three relay processes on one table while
// writers enqueue entity-style (a key's next event after its previous one
// committed; transactions of different keys interleave and some stay open
// while later ones commit), SIGKILLs relays at random and restarts them,
// injects produce faults, and poisons three keys with an oversized record.
// A checker reading the topic then finds every event (0 lost), every key
// in order (0 violations), duplicates only of events that a killed relay
// had in flight (published, not yet deleted) or that Kafka reported failed
// after writing them (a lost ack whose retry got an error), and the poison
// rows quarantined with their keys' later rows waiting. EVENTGEN_SOAK=1 runs
// 100,000 events and at least 30 kills; the default, 3,000 and 10.
func TestRelaysSurviveKills(t *testing.T) {
	keys, perKey, minKills := 300, 10, 10
	if os.Getenv(EnvSoak) == "1" {
		keys, perKey, minKills = 1000, 100, 30
	}
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 6, InProcess: true})
	et := testEventType(t, "outbox.kills")
	seed := kafkatest.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	const maxBytes = 64 << 10
	w := workload{
		et: et, keys: keys, perKey: perKey, writers: 8, holdEvery: 20, maxHold: 10 * time.Millisecond,
		poison: map[string]bool{"k7": true, "k77": true, "k177": true}, poisonSeq: perKey / 2, padding: 2 * maxBytes,
		seed: seed,
	}
	dir := t.TempDir()
	incarnation := 0
	start := func() *child {
		incarnation++
		return startChild(t, map[string]string{
			"CHILD_SCHEMA":    db.schema,
			"CHILD_BROKERS":   strings.Join(c.Brokers(), ","),
			"CHILD_MAX_BYTES": strconv.Itoa(maxBytes),
			"CHILD_BATCH":     strconv.Itoa([]int{50, 200, 1000}[rng.IntN(3)]),
			"CHILD_LOG":       filepath.Join(dir, fmt.Sprintf("relay-%03d.log", incarnation)),
		})
	}
	relays := []*child{start(), start(), start()}
	var killed []*child

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var faults atomic.Int64
	var bg sync.WaitGroup
	bg.Go(func() { faults.Store(int64(injectProduceFaults(ctx, t, c, et.Topic, 6))) })
	written := make(chan error, 1)
	go func() { written <- w.run(ctx, db.pool, Table{}) }()

	publishable := func() int64 {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox WHERE key <> ALL($1) AND published_at IS NULL", []string{"k7", "k77", "k177"})
	}
	workloadDone := false
	for !workloadDone || len(killed) < minKills {
		if !workloadDone {
			select {
			case err := <-written:
				if err != nil {
					t.Fatal(err)
				}
				workloadDone = true
			default:
			}
		}
		i := rng.IntN(len(relays))
		victim := relays[i]
		if victim.exited() {
			t.Fatalf("relay child exited on its own: %v\n%s", victim.err, victim.output())
		}
		// Half the kills wait for the victim to start a batch and strike
		// within a few milliseconds (likely between publication and
		// deletion); the others land anywhere.
		if rng.IntN(2) == 0 {
			n := batches(victim.log)
			kafkatest.Eventually(500*time.Millisecond, func() bool { return batches(victim.log) > n })
			_ = sleep(ctx, time.Duration(rng.IntN(5000))*time.Microsecond)
		} else {
			_ = sleep(ctx, time.Duration(50+rng.IntN(250))*time.Millisecond)
		}
		victim.kill(t)
		killed = append(killed, victim)
		relays[i] = start()
	}
	kafkatest.WaitFor(t, 120*time.Second, "every publishable row to be published", func() bool { return publishable() == 0 })
	cancel()
	bg.Wait()
	for _, r := range relays {
		if err := r.terminate(t); err != nil {
			t.Fatalf("relay child: %v\n%s", err, r.output())
		}
	}

	// Duplicates are explained by a kill between a batch's publication
	// and its deletion, or by a failure Kafka reported for a record it had
	// written (its row was published again).
	var logs, killedLogs []string
	totalBatches := 0
	logs, _ = filepath.Glob(filepath.Join(dir, "*.log"))
	for _, k := range killed {
		killedLogs = append(killedLogs, k.log)
		totalBatches += readBatchLog(t, k.log).batches
	}
	recs := readTopic(t, c.Brokers(), et.Topic)
	chk := checkTopic(recs, w.want())
	byKill, byFailure, unexplained := duplicates(t, chk, recs, logs, killedLogs)
	q, err := Quarantined(context.Background(), db.pool, Table{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	waiting := db.count(t, "SELECT count(*) FROM eventgen_outbox WHERE key = ANY($1) AND quarantined_at IS NULL", []string{"k7", "k77", "k177"})
	t.Logf("%d events enqueued, %d kills (%d batches by killed relays), %d produce faults: %v (%d of a killed relay's batch in flight, %d reported failed after being written); %d quarantined, %d waiting behind them",
		keys*perKey, len(killed), totalBatches, faults.Load(), chk, byKill, byFailure, len(q), waiting)
	if len(chk.lost) > 0 || len(chk.violations) > 0 {
		t.Fatalf("lost %s; violations %s", firstN(chk.lost, 10), firstN(chk.violations, 10))
	}
	if len(unexplained) > 0 {
		for _, id := range unexplained[:min(3, len(unexplained))] {
			for _, r := range recs {
				if fmt.Sprintf("%s/%d", r.key, r.seq) == id {
					t.Logf("%s on the topic at %d/%d", id, r.p, r.off)
				}
			}
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				for _, line := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(line, "F "+id+" ") {
						t.Logf("%s: %s", filepath.Base(l), line)
					}
				}
			}
		}
		t.Fatalf("%d duplicated events were neither in flight in a killed relay nor reported failed: %s", len(unexplained), firstN(unexplained, 10))
	}
	if len(q) != 3 || waiting != int64(3*(perKey-w.poisonSeq-1)) {
		t.Fatalf("%d rows quarantined, %d waiting; want 3 (the poison rows) and %d", len(q), waiting, 3*(perKey-w.poisonSeq-1))
	}
	for _, row := range q {
		if !w.poison[row.Key] || !strings.Contains(row.LastError, "MaxMessageBytes") {
			t.Fatalf("quarantined %+v, want a poison key's oversized row", row)
		}
	}
}
