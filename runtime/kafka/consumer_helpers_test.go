package kafka

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// testEvent is a hand-written stand-in for a generated event.
type testEvent struct {
	K    string `json:"key"`
	Seq  int64  `json:"seq"`
	Src  string `json:"src,omitempty"` // "partition/offset" of the input an output came from
	Fail bool   `json:"fail,omitempty"`

	et *event.Type
}

func (e *testEvent) EventType() *event.Type { return e.et }
func (e *testEvent) Key() string            { return e.K }
func (e *testEvent) IdempotencyKey() string { return e.K + "/" + strconv.FormatInt(e.Seq, 10) }
func (e *testEvent) Validate() error {
	if e.K == "" {
		return errors.New("key: required field is missing")
	}
	return nil
}

type testEventJSON struct {
	K    string `json:"key"`
	Seq  int64  `json:"seq"`
	Src  string `json:"src,omitempty"`
	Fail bool   `json:"fail,omitempty"`
}

func (e *testEvent) AppendJSON(b []byte) []byte {
	j, _ := json.Marshal(testEventJSON{e.K, e.Seq, e.Src, e.Fail})
	return append(b, j...)
}

func (e *testEvent) UnmarshalJSON(data []byte) error {
	var j testEventJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.K == "" {
		return &event.FieldError{Path: "key", Err: event.ErrMissingField}
	}
	e.K, e.Seq, e.Src, e.Fail = j.K, j.Seq, j.Src, j.Fail
	return nil
}

func decodeTestEvent(b []byte) (testEvent, error) {
	var e testEvent
	err := e.UnmarshalJSON(b)
	return e, err
}

func testEventType(name, topic string, g event.Guarantee) *event.Type {
	return &event.Type{Name: name, Topic: topic, Guarantee: g, CEType: "test." + name + ".v1", Source: "/eventgen/test"}
}

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// produceInputs writes n testEvents (seq 0..n-1, keys k0..k<keys-1>) with an
// idempotent producer, so the input itself has no duplicates. raw, when set,
// replaces the value of chosen sequence numbers.
func produceInputs(t testing.TB, brokers []string, et *event.Type, n, keys int, raw map[int64][]byte) {
	t.Helper()
	produceRange(t, brokers, et, 0, n, keys, raw)
}

// produceRange is produceInputs for seq from..from+n-1 (key k<seq%keys>),
// for tests that hold inputs back and produce them in steps.
func produceRange(t testing.TB, brokers []string, et *event.Type, from, n, keys int, raw map[int64][]byte) {
	t.Helper()
	pc := idempotentConfig()
	pc.Producer.Flush.Messages = 500
	pc.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := event.WithTraceparent(context.Background(), testTraceparent)
	stop, fed := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop) // releases the feeder if the test fails first
		<-fed
		p.Close()
	}()
	go func() {
		defer close(fed)
		for i := from; i < from+n; i++ {
			e := &testEvent{K: "k" + strconv.Itoa(i%keys), Seq: int64(i), et: et}
			v := e.AppendJSON(nil)
			if r, ok := raw[int64(i)]; ok {
				v = r
			}
			select {
			case p.Input() <- &sarama.ProducerMessage{Topic: et.Topic, Key: sarama.StringEncoder(e.K), Value: sarama.ByteEncoder(v),
				Headers: CloudEventHeaders(ctx, et, event.NewUUID().String(), time.Now())}:
			case <-stop:
				return
			}
		}
	}()
	d := kafkatest.Timeout(60 * time.Second)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for got := 0; got < n; {
		select {
		case <-p.Successes():
			got++
		case err := <-p.Errors():
			t.Fatalf("producing inputs: %v", err)
		case <-deadline.C:
			t.Fatalf("producing inputs: %d of %d acked after %v", got, n, d)
		}
	}
}

// --- child processes -------------------------------------------------------

const childEnv = "EVENTGEN_TEST_CHILD"

// child is a re-executed test binary running TestEventgenChild.
type child struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr string
}

func startChild(t testing.TB, mode string, env map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventgenChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f, err := os.CreateTemp(t.TempDir(), "child-*.log")
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

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits for the child to exit, failing the test after d (scaled by
// kafkatest.Timeout).
func (c *child) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	d = kafkatest.Timeout(d)
	select {
	case <-c.done:
		return c.err
	case <-time.After(d):
		t.Fatalf("child %d did not exit within %v; log:\n%s", c.cmd.Process.Pid, d, c.log())
		return nil
	}
}

func (c *child) kill(t testing.TB) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	if err := c.wait(t, 30*time.Second); err == nil {
		t.Fatalf("child exited cleanly before SIGKILL")
	}
}

// childReady is printed by a child once SIGTERM means graceful shutdown.
const childReady = "child: ready"

// terminate asks the child to shut down gracefully (SIGTERM, once it has
// installed its handler) and returns its exit error.
func (c *child) terminate(t testing.TB) error {
	t.Helper()
	kafkatest.WaitFor(t, 30*time.Second, "child to be ready", func() bool { return c.exited() || c.ready() })
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	return c.wait(t, 30*time.Second)
}

func (c *child) ready() bool {
	b, _ := os.ReadFile(c.stderr)
	return strings.Contains(string(b), childReady)
}

// logContains reports whether the child's whole log (not only the tail
// that log returns) contains s.
func (c *child) logContains(s string) bool {
	b, _ := os.ReadFile(c.stderr)
	return strings.Contains(string(b), s)
}

// log returns the last 4000 bytes of the child's stdout and stderr.
func (c *child) log() string {
	b, _ := os.ReadFile(c.stderr)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return -1000
	}
	return 0
}

// lostAndDuplicated counts the seqs 0..n-1 never seen and the extra times
// the others were seen.
func lostAndDuplicated(seen map[int64]int, n int) (lost, dups int) {
	for seq := range int64(n) {
		switch c := seen[seq]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	return lost, dups
}

// runInBackground runs run in a goroutine with a context that the returned
// stop (and t's cleanup) cancels; stop returns run's error, failing the
// test if run does not return within 30 s (scaled) of the cancel.
func runInBackground(t *testing.T, what string, run func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(cancel)
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(kafkatest.Timeout(30 * time.Second)):
			t.Fatalf("%s did not return within 30 s (scaled) of cancel", what)
			return nil
		}
	}
}

// txnConfig is the raw sarama configuration of a transactional producer
// that tests and benchmarks use to write what eventgen's pipeline would
// (or, in a control, to get it wrong on purpose).
func txnConfig(id string) *sarama.Config {
	pc := idempotentConfig()
	pc.Producer.Transaction.ID = id
	kafkatest.FastTune(pc)
	return pc
}

// idempotentConfig is the raw sarama configuration of an idempotent
// producer (acks=all, one request in flight, murmur2 like eventgen's).
func idempotentConfig() *sarama.Config {
	pc := sarama.NewConfig()
	pc.Version = ProtocolVersion()
	pc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	pc.Producer.Idempotent = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Net.MaxOpenRequests = 1
	pc.Producer.Return.Successes = true
	return pc
}

// readHandledLog parses "partition offset seq" lines written by children.
func readHandledLog(t testing.TB, path string) map[int64]int {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[int64]int{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[int64]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue // a line torn by SIGKILL cannot happen with one write(2) per line; skip defensively
		}
		seq, err := strconv.ParseInt(fs[2], 10, 64)
		if err != nil {
			t.Fatalf("bad handled-log line %q", sc.Text())
		}
		seen[seq]++
	}
	return seen
}

// TestEventgenChild is the entry point of child processes; it is skipped in
// a normal run.
func TestEventgenChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("child-process entry point; runs only when re-executed by a test")
	}
	ctx, stop := signalContext()
	defer stop()
	fmt.Fprintln(os.Stderr, childReady)
	var err error
	switch mode {
	case "consumer":
		err = runChildConsumer(ctx)
	case "consumer-proof":
		err = runChildConsumerProof(ctx)
	case "pipeline":
		err = runChildPipeline(ctx)
	case "dedup":
		err = runChildDedup(ctx)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child error:", err)
		if errors.Is(err, ErrFenced) {
			os.Exit(3)
		}
		os.Exit(1)
	}
	os.Exit(0)
}

func childBrokers() []string { return strings.Split(os.Getenv("CHILD_BROKERS"), ",") }

func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// runChildConsumer runs an at-least-once or at-most-once consumer that
// appends "partition offset seq" to CHILD_LOG for every handled record (one
// write(2) per line: it survives the process's SIGKILL). With
// CHILD_KILL_AFTER=n (at-least-once), it SIGKILLs itself after logging its
// n-th record, before that record is committed. With CHILD_CRASH_SEQ=s
// (at-most-once), it SIGKILLs itself in the handler of seq s, before logging.
func runChildConsumer(ctx context.Context) error {
	logf, err := os.OpenFile(os.Getenv("CHILD_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	guarantee := event.AtLeastOnce
	if os.Getenv("CHILD_GUARANTEE") == "at-most-once" {
		guarantee = event.AtMostOnce
	}
	et := testEventType("Input", os.Getenv("CHILD_TOPIC"), guarantee)
	c, err := NewConsumer(ConsumerConfig{
		Config:     Config{Brokers: childBrokers(), Tune: kafkatest.FastTune, Logger: childLogger()},
		GroupID:    os.Getenv("CHILD_GROUP"),
		InstanceID: os.Getenv("CHILD_INSTANCE"),
		MaxBatch:   envInt("CHILD_MAX_BATCH"),
	})
	if err != nil {
		return err
	}
	killAfter := int64(envInt("CHILD_KILL_AFTER"))
	var handled atomic.Int64 // handlers of different partitions run concurrently
	crashSeq := int64(-1)
	if s := os.Getenv("CHILD_CRASH_SEQ"); s != "" {
		crashSeq, _ = strconv.ParseInt(s, 10, 64)
	}
	logLine := func(m Record, e testEvent) error {
		_, err := fmt.Fprintf(logf, "%d %d %d\n", m.Partition, m.Offset, e.Seq)
		return err
	}
	if guarantee == event.AtMostOnce {
		HandleAtMostOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtMostOnceRecord) error {
			if e.Seq == crashSeq {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return logLine(r.Record, e)
		})
	} else {
		HandleAtLeastOnce(c, et, decodeTestEvent, func(ctx context.Context, e testEvent, r AtLeastOnceRecord) error {
			if err := logLine(r.Record, e); err != nil {
				return err
			}
			if handled.Add(1) == killAfter {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		})
	}
	return c.Run(ctx)
}

func childLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("EVENTGEN_CHILD_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
