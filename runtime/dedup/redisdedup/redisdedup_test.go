package redisdedup

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/deduptest"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
)

// breaker is a go-redis hook that fails every command while broken.
type breaker struct{ broken atomic.Bool }

var errBroken = errors.New("test: Redis unreachable")

func (b *breaker) DialHook(next redis.DialHook) redis.DialHook { return next }
func (b *breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if b.broken.Load() {
			cmd.SetErr(errBroken)
			return errBroken
		}
		return next(ctx, cmd)
	}
}
func (b *breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if b.broken.Load() {
			for _, c := range cmds {
				c.SetErr(errBroken)
			}
			return errBroken
		}
		return next(ctx, cmds)
	}
}

func newStore(t *testing.T, opts Options) (*Store, *redis.Client, *breaker) {
	t.Helper()
	c, prefix := svctest.Redis(t)
	b := &breaker{}
	c.AddHook(b)
	opts.Prefix = prefix
	s, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, b
}

func TestConformance(t *testing.T) {
	deduptest.Run(t, func(t *testing.T) deduptest.Harness[dedup.NoTx] {
		s, _, b := newStore(t, Options{Lease: time.Second})
		return deduptest.Harness[dedup.NoTx]{Store: s, Break: func() func() {
			b.broken.Store(true)
			return func() { b.broken.Store(false) }
		}}
	})
}

func item(id string, h func(context.Context, dedup.NoTx) error) dedup.Item[dedup.NoTx] {
	return dedup.Item[dedup.NoTx]{Key: dedup.Key{Group: "g", Event: "E", ID: id}, TTL: time.Hour, Handle: h}
}

func nop(context.Context, dedup.NoTx) error { return nil }

// A worker that took a lease and died (no finish, no release) blocks the
// key only until the lease expires, never until the TTL.
func TestCrashedLeaseExpires(t *testing.T) {
	const lease = 300 * time.Millisecond
	s, c, _ := newStore(t, Options{Lease: lease})
	key := s.RedisKey(dedup.Key{Group: "g", Event: "E", ID: "1"})
	if err := c.Set(t.Context(), key, "lease:dead-worker", lease).Err(); err != nil { // what SET NX PX left behind
		t.Fatal(err)
	}
	b := []dedup.Item[dedup.NoTx]{item("1", nop)}
	if err := s.Process(t.Context(), b); err != nil || b[0].Outcome != dedup.Busy {
		t.Fatalf("while the dead worker's lease lives: %v %s, want busy", err, b[0].Outcome)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b := []dedup.Item[dedup.NoTx]{item("1", nop)}
		if err := s.Process(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		if b[0].Outcome == dedup.Handled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s 10 s after a %v lease", b[0].Outcome, lease)
		}
		time.Sleep(20 * time.Millisecond) // poll the lease's expiry
	}
	if ttl := c.PTTL(t.Context(), key).Val(); ttl < 30*time.Minute {
		t.Fatalf("done marker's TTL %v, want the item's hour", ttl)
	}
	if v := c.Get(t.Context(), key).Val(); v != "done" {
		t.Fatalf("key holds %q, want done", v)
	}
}

// A handler that runs longer than the lease keeps it: it is extended.
func TestLeaseExtendedWhileHandlerRuns(t *testing.T) {
	const lease = 150 * time.Millisecond
	s, _, _ := newStore(t, Options{Lease: lease})
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan []dedup.Item[dedup.NoTx], 1)
	go func() {
		b := []dedup.Item[dedup.NoTx]{item("slow", func(context.Context, dedup.NoTx) error {
			close(started)
			<-release
			return nil
		})}
		if err := s.Process(context.Background(), b); err != nil {
			t.Error(err)
		}
		done <- b
	}()
	select {
	case <-started:
	case b := <-done:
		t.Fatalf("the slow handler did not run: %s", b[0].Outcome)
	}
	// Over 5 leases, another worker keeps finding the key Busy.
	for end := time.Now().Add(5 * lease); time.Now().Before(end); time.Sleep(lease / 5) {
		b := []dedup.Item[dedup.NoTx]{item("slow", func(context.Context, dedup.NoTx) error {
			t.Error("a second worker ran the handler while the first still held the extended lease")
			return nil
		})}
		if err := s.Process(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		if b[0].Outcome != dedup.Busy {
			t.Fatalf("second worker: %s, want busy", b[0].Outcome)
		}
	}
	close(release)
	if b := <-done; b[0].Outcome != dedup.Handled || s.LostLeases() != 0 {
		t.Fatalf("slow handler: %s, lost leases %d", b[0].Outcome, s.LostLeases())
	}
}

// A lease taken over by another worker (ours expired, e.g. a long pause)
// is not marked done by the late finisher, which counts the loss.
func TestLateFinisherDoesNotOverwrite(t *testing.T) {
	s, c, _ := newStore(t, Options{Lease: time.Second})
	key := s.RedisKey(dedup.Key{Group: "g", Event: "E", ID: "1"})
	b := []dedup.Item[dedup.NoTx]{item("1", func(ctx context.Context, _ dedup.NoTx) error {
		// Another worker's lease replaces ours, as after an expiry.
		return c.Set(ctx, key, "lease:other", time.Minute).Err()
	})}
	if err := s.Process(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(t.Context(), key).Val(); v != "lease:other" || s.LostLeases() != 1 {
		t.Fatalf("key %q, lost %d; want the other worker's lease kept and 1 loss counted", v, s.LostLeases())
	}
}

// Scripts flushed from Redis' cache (a restart) are loaded again.
func TestScriptsReloaded(t *testing.T) {
	s, c, _ := newStore(t, Options{})
	b := []dedup.Item[dedup.NoTx]{item("1", nop)}
	if err := s.Process(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	b = []dedup.Item[dedup.NoTx]{item("1", nop), item("2", nop)}
	if err := s.Process(t.Context(), b); err != nil || b[0].Outcome != dedup.Duplicate || b[1].Outcome != dedup.Handled {
		t.Fatalf("after SCRIPT FLUSH: %v %s %s", err, b[0].Outcome, b[1].Outcome)
	}
}

func TestKeysDoNotCollide(t *testing.T) {
	s, _, _ := newStore(t, Options{})
	a := s.RedisKey(dedup.Key{Group: "a:b", Event: "c", ID: "d"})
	b := s.RedisKey(dedup.Key{Group: "a", Event: "b:c", ID: "d"})
	if a == b {
		t.Fatalf("two keys map to %s", a)
	}
}

func TestOptions(t *testing.T) {
	_, err := New(nil, Options{Lease: time.Millisecond, TTL: -1})
	for _, want := range []string{"client is nil", "Lease", "TTL"} {
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v does not name %s", err, want)
		}
	}
}

func TestConnectNeverShowsThePassword(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	l, err := net.Listen("tcp", "127.0.0.1:0") // accepts, then closes: a broken server
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer l.Close()
	for _, addr := range []string{
		"redis://user:" + pw + "@" + l.Addr().String() + "/0",
		"redis://:" + pw + "@127.0.0.1:1/0",
		"redis://:" + pw + "@127.0.0.1:1/notadb",
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := Connect(ctx, addr)
		cancel()
		if err == nil || !errors.Is(err, ErrConnect) {
			t.Fatalf("Connect: %v, want ErrConnect", err)
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(Redact(addr), pw) {
			t.Fatalf("the password shows: %v", err)
		}
		t.Log(err)
	}
	c, err := Connect(t.Context(), svctest.RedisAddr())
	if err != nil {
		t.Skipf("no server to check a successful Connect: %v", err)
	}
	c.Close()
}
