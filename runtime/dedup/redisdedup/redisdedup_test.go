package redisdedup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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

// perKeyClient is a client the store does not know to talk to one node
// (as a ClusterClient or a Ring): it gets one command per key.
type perKeyClient struct{ *redis.Client }

// oldRedis is a go-redis hook that answers SET ... NX ... GET as Redis
// older than 7.0 does, with a syntax error, without sending it.
type oldRedis struct{ rejected atomic.Int64 }

// serverError is an error reply of Redis, as go-redis returns it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

func isSetNXGet(cmd redis.Cmder) bool {
	var nx, get bool
	for i, a := range cmd.Args() {
		switch s, _ := a.(string); {
		case i == 0 && !strings.EqualFold(s, "set"):
			return false
		case strings.EqualFold(s, "nx"):
			nx = true
		case strings.EqualFold(s, "get"):
			get = true
		}
	}
	return nx && get
}

func (o *oldRedis) DialHook(next redis.DialHook) redis.DialHook { return next }
func (o *oldRedis) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isSetNXGet(cmd) {
			o.rejected.Add(1)
			err := serverError("ERR syntax error")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}
func (o *oldRedis) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var pass []redis.Cmder
		var first error
		for _, c := range cmds {
			if isSetNXGet(c) {
				o.rejected.Add(1)
				err := serverError("ERR syntax error")
				c.SetErr(err)
				first = cmp.Or(first, error(err))
				continue
			}
			pass = append(pass, c)
		}
		if len(pass) > 0 {
			first = cmp.Or(first, next(ctx, pass))
		}
		return first
	}
}

// The clients a Store is tested on: a *redis.Client (one script call per
// batch), another client type (one command per key), and that on a server
// that rejects SET NX GET (a script per key).
var clientKinds = []string{"single", "per-key", "per-key-old-redis"}

// roundTrips counts the calls a client sends to Redis: a pipeline or a
// single command each, except go-redis' handshake on a new connection
// (HELLO, CLIENT SETINFO).
type roundTrips struct{ n atomic.Int64 }

func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !handshake(cmds[0]) {
			r.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

func newStore(t *testing.T, opts Options) (*Store, *redis.Client, *breaker) {
	return newStoreOn(t, "single", opts)
}

// newStoreOn returns a store on a client of the given kind (clientKinds),
// the plain client under it (to look at or change keys), and a breaker
// of the store's commands.
func newStoreOn(t *testing.T, kind string, opts Options) (*Store, *redis.Client, *breaker) {
	t.Helper()
	c, prefix := svctest.Redis(t)
	b := &breaker{}
	opts.Prefix = prefix
	var sc redis.UniversalClient = c
	if kind != "single" {
		// A client of its own, so that the hooks do not touch c.
		pc := redis.NewClient(c.Options())
		t.Cleanup(func() { pc.Close() })
		if kind == "per-key-old-redis" {
			pc.AddHook(&oldRedis{})
		}
		pc.AddHook(b)
		sc = perKeyClient{pc}
	} else {
		c.AddHook(b)
	}
	s, err := New(sc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.batched != (kind == "single") {
		t.Fatalf("%s client: batched %v", kind, s.batched)
	}
	return s, c, b
}

func TestConformance(t *testing.T) {
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			deduptest.Run(t, func(t *testing.T) deduptest.Harness[dedup.NoTx] {
				s, _, b := newStoreOn(t, kind, Options{Lease: time.Second})
				return deduptest.Harness[dedup.NoTx]{Store: s, Break: func() func() {
					b.broken.Store(true)
					return func() { b.broken.Store(false) }
				}}
			})
		})
	}
}

// One batch meets every state a key can be in: free, done, another
// worker's live lease, an expired lease; then a handler fails, and
// another's lease is lost mid-batch (taken over by a worker, or deleted).
// Each outcome, the value and TTL left in Redis, and the lost-lease count
// are checked, on every kind of client.
func TestBatchKeyStates(t *testing.T) {
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			s, c, _ := newStoreOn(t, kind, Options{Lease: time.Minute})
			ctx := t.Context()
			key := func(id string) string { return s.RedisKey(dedup.Key{Group: "g", Event: "E", ID: id}) }
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(c.Set(ctx, key("done"), "done", time.Hour).Err())
			must(c.Set(ctx, key("busy"), "lease:other", time.Minute).Err())
			must(c.Set(ctx, key("expired"), "lease:dead", time.Millisecond).Err())
			for c.Exists(ctx, key("expired")).Val() == 1 {
				time.Sleep(time.Millisecond) // poll the expiry
			}
			ran := map[string]int{}
			h := func(id string, err error) func(context.Context, dedup.NoTx) error {
				return func(ctx context.Context, _ dedup.NoTx) error {
					ran[id]++
					switch id {
					case "new":
						// Before the later items run: another worker takes
						// "taken-over", and "vanished" expires.
						must(c.Set(ctx, key("taken-over"), "lease:thief", time.Minute).Err())
						must(c.Del(ctx, key("vanished")).Err())
					case "fails":
						// Still ours: the batch's lease.
						if v := c.Get(ctx, key("fails")).Val(); !strings.HasPrefix(v, "lease:") || v == "lease:other" {
							t.Errorf("a running handler's key holds %q, want this call's lease", v)
						}
					}
					return err
				}
			}
			errBoom := errors.New("boom")
			ids := []string{"new", "done", "busy", "expired", "fails", "taken-over", "vanished", "new"}
			b := make([]dedup.Item[dedup.NoTx], len(ids))
			for i, id := range ids {
				var err error
				if id == "fails" {
					err = errBoom
				}
				b[i] = item(id, h(id, err))
			}
			b[1].TTL = 0 // the store's default TTL (Options.TTL: 7 days)
			must(s.Process(ctx, b))
			want := []dedup.Outcome{dedup.Handled, dedup.Duplicate, dedup.Busy, dedup.Handled, dedup.Failed, dedup.Handled, dedup.Handled, dedup.Duplicate}
			for i, id := range ids {
				if b[i].Outcome != want[i] {
					t.Errorf("item %d (%s): %s, want %s", i, id, b[i].Outcome, want[i])
				}
			}
			if !errors.Is(b[4].Err, errBoom) {
				t.Errorf("failed item's Err %v", b[4].Err)
			}
			for id, n := range map[string]int{"new": 1, "done": 0, "busy": 0, "expired": 1, "fails": 1, "taken-over": 1, "vanished": 1} {
				if ran[id] != n {
					t.Errorf("handler of %s ran %d times, want %d", id, ran[id], n)
				}
			}
			values := map[string]string{"new": "done", "done": "done", "busy": "lease:other", "expired": "done", "fails": "", "taken-over": "lease:thief", "vanished": ""}
			for id, v := range values {
				if got, _ := c.Get(ctx, key(id)).Result(); got != v {
					t.Errorf("key %s holds %q, want %q", id, got, v)
				}
			}
			if ttl := c.PTTL(ctx, key("new")).Val(); ttl < 59*time.Minute || ttl > time.Hour {
				t.Errorf("done marker's TTL %v, want the item's hour", ttl)
			}
			if ttl := c.PTTL(ctx, key("busy")).Val(); ttl > time.Minute || ttl < 50*time.Second {
				t.Errorf("the other worker's lease has TTL %v, want its minute left alone", ttl)
			}
			// The two handled items whose lease was gone when they
			// finished: the late finisher overwrote neither.
			if s.LostLeases() != 2 {
				t.Errorf("lost leases %d, want 2 (taken-over, vanished)", s.LostLeases())
			}
		})
	}
}

// A batch larger than one settle script call's keys is split into several calls,
// still in one pipeline: every key is leased, handled and marked.
func TestLargeBatchIsChunked(t *testing.T) {
	s, c, _ := newStore(t, Options{})
	n := 2*scriptChunk + 7
	b := make([]dedup.Item[dedup.NoTx], n)
	ran := 0
	for i := range b {
		b[i] = item(fmt.Sprint(i), func(context.Context, dedup.NoTx) error { ran++; return nil })
	}
	rt := &roundTrips{}
	c.AddHook(rt)
	if err := s.Process(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if ran != n {
		t.Fatalf("%d handlers ran, want %d", ran, n)
	}
	if got := rt.n.Load(); got != 2+int64(len(scripts)) {
		t.Errorf("%d round trips, want 2 and %d script loads", got, len(scripts))
	}
	for _, i := range []int{0, scriptChunk - 1, scriptChunk, 2 * scriptChunk, n - 1} {
		if v := c.Get(t.Context(), s.RedisKey(b[i].Key)).Val(); v != "done" {
			t.Errorf("key %d holds %q, want done", i, v)
		}
	}
	b2 := make([]dedup.Item[dedup.NoTx], n)
	for i := range b2 {
		b2[i] = item(fmt.Sprint(i), func(context.Context, dedup.NoTx) error { t.Error("a duplicate ran"); return nil })
	}
	if err := s.Process(t.Context(), b2); err != nil {
		t.Fatal(err)
	}
	for i := range b2 {
		if b2[i].Outcome != dedup.Duplicate {
			t.Fatalf("second delivery of %d: %s", i, b2[i].Outcome)
		}
	}
}

// A Process call makes two round trips to Redis whatever the batch's
// size (docs/dedup.md): one before the handlers, one after; the scripts
// are loaded once per store.
func TestTwoRoundTripsPerBatch(t *testing.T) {
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			s, _, _ := newStoreOn(t, kind, Options{})
			rt := &roundTrips{}
			s.c.AddHook(rt)
			process := func(ids ...string) {
				b := make([]dedup.Item[dedup.NoTx], len(ids))
				for i, id := range ids {
					b[i] = item(id, nop)
				}
				if err := s.Process(t.Context(), b); err != nil {
					t.Fatal(err)
				}
			}
			process("warm-up") // loads the scripts, and finds out about SET NX GET
			for _, n := range []int{1, 10, 300} {
				ids := make([]string, n)
				for i := range ids {
					ids[i] = fmt.Sprint(n, "-", i)
				}
				before := rt.n.Load()
				process(ids...)
				if got := rt.n.Load() - before; got != 2 {
					t.Errorf("a batch of %d made %d round trips, want 2", n, got)
				}
			}
		})
	}
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

// The keys of a batch are built with their head escaped once per group
// and event: the same keys as RedisKey, for mixed and escaped parts.
func TestBatchKeysAreRedisKeys(t *testing.T) {
	s, err := New(redis.NewClient(&redis.Options{}), Options{Prefix: "p:"})
	if err != nil {
		t.Fatal(err)
	}
	km := keyMaker{s: s}
	for _, k := range []dedup.Key{
		{Group: "g", Event: "E", ID: "1"}, {Group: "g", Event: "E", ID: "a:b%c"}, {Group: "g", Event: "F", ID: "1"},
		{Group: "g:h", Event: "F", ID: "1"}, {Group: "g", Event: "E", ID: "2"}, {Group: "", Event: "", ID: ""},
	} {
		if got, want := km.key(k), s.RedisKey(k); got != want {
			t.Errorf("batch key of %v is %q, want %q", k, got, want)
		}
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
