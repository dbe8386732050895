// Package redisdedup is the Redis dedup store (go-redis v9): a lease with
// an owner token per event while its handler runs, turned into a "done"
// marker with the event's TTL when the handler succeeds. It is fast (one
// round trip before a batch's handlers and one after) but not
// atomic with the handler's effects: docs/dedup.md lists the crash windows
// in which an effect can repeat, which is why the schema validator accepts
// Redis for at-least-once events only.
package redisdedup

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventgen/eventgen/runtime/dedup"
)

// Defaults of Options.
const (
	DefaultPrefix = "eventgen:dedup:"
	DefaultLease  = 30 * time.Second
	DefaultTTL    = 7 * 24 * time.Hour
)

// Options configure a Store. A zero field takes its default.
type Options struct {
	// Prefix starts every key the store writes. Default "eventgen:dedup:".
	Prefix string
	// Lease is how long a key stays taken by a worker that stopped
	// extending it (it crashed, or lost Redis): the longest a redelivered
	// event waits as Busy before it runs again. While a handler runs the
	// lease is extended every Lease/3. Default 30 s (DefaultLease); at
	// least 30 ms.
	Lease time.Duration
	// TTL is how long a "done" marker is kept when the item sets none.
	// Default 7 days (DefaultTTL); must not be negative.
	TTL time.Duration
	// Logger receives a warning for every lease lost while its handler ran
	// (the effect may repeat) and for failed lease extensions. Default:
	// discards.
	Logger *slog.Logger
}

// ErrInvalidOptions is matched by New's error; every invalid field is named.
var ErrInvalidOptions = errors.New("redisdedup: invalid options")

// Store is a dedup.Store[dedup.NoTx] on a Redis client (a single node, or
// a cluster). It is safe for concurrent use. A Process call makes two
// round trips to Redis, whatever the batch's size:
//
//  1. it takes a lease on every new key of the batch (SET key
//     lease:<token> NX PX Lease) and learns, for each key that exists,
//     whether it is "done" (Duplicate) or another worker's lease (Busy);
//  2. it runs the handlers in order while a goroutine extends the leases
//     it holds every Lease/3 (compare-and-PEXPIRE), so a batch shorter
//     than Lease/3 extends nothing;
//  3. it sets each handled key to "done" with its TTL and deletes each
//     failed one, both only if the lease is still this call's
//     (compare-and-set, compare-and-delete).
//
// Step 1 is a pipeline of SET key lease NX PX Lease GET, one command per
// key (on a server older than Redis 7.0, which rejects NX with GET, one
// script call per key doing the same). Step 3 is, on a *redis.Client (one
// node, or a Sentinel-managed primary), one Lua script call for the whole
// batch (settleScript, scriptChunk keys per call); on other clients
// (Cluster, Ring), whose keys can live on different nodes, a pipeline of
// one script call per key.
type Store struct {
	c      redis.UniversalClient
	prefix string
	lease  time.Duration
	ttl    time.Duration
	log    *slog.Logger
	// batched: the client talks to one node, so one script may touch all
	// of a batch's keys.
	batched bool

	loadMu sync.Mutex
	loaded atomic.Bool
	lost   atomic.Int64
	// noSetGet: the server rejected SET with NX and GET (Redis < 7.0);
	// leases are taken with acquireScript.
	noSetGet atomic.Bool
}

// The scripts compare the key's value with this call's lease before acting,
// so that a worker whose lease expired and was taken over cannot mark or
// release the new owner's key.
var (
	// acquireScript is SET NX PX GET for servers without it.
	acquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])`)
	extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)
	finishScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2]) return 1 end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
	// settleScript is finishScript and releaseScript for many keys in one
	// call: ARGV[1] is the lease, ARGV[i+1] the TTL in milliseconds of
	// KEYS[i], or 0 to release it. It returns 1 per key it changed, 0 per
	// key whose lease was no longer this call's. One MGET reads them all.
	settleScript = redis.NewScript(`
local vals = redis.call('MGET', unpack(KEYS))
local r = {}
for i, k in ipairs(KEYS) do
  if vals[i] == ARGV[1] then
    if ARGV[i+1] == '0' then redis.call('DEL', k) else redis.call('SET', k, 'done', 'PX', ARGV[i+1]) end
    r[i] = 1
  else
    r[i] = 0
  end
end
return r`)
	scripts = []*redis.Script{acquireScript, extendScript, finishScript, releaseScript, settleScript}
)

// scriptChunk caps the keys of one settleScript call, so that a large
// batch does not hold Redis in one script for long
// (and stays within Lua's unpack limit).
const scriptChunk = 1000

// New returns a Store on c. It does not connect.
func New(c redis.UniversalClient, opts Options) (*Store, error) {
	var errs []error
	if c == nil {
		errs = append(errs, errors.New("redisdedup.New: client is nil"))
	}
	if opts.Lease != 0 && opts.Lease < 30*time.Millisecond {
		errs = append(errs, fmt.Errorf("redisdedup.Options.Lease must be at least 30ms, got %v", opts.Lease))
	}
	if opts.TTL < 0 {
		errs = append(errs, fmt.Errorf("redisdedup.Options.TTL must not be negative, got %v", opts.TTL))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	_, single := c.(*redis.Client)
	s := &Store{c: c, prefix: opts.Prefix, lease: opts.Lease, ttl: dedup.TTLOr(opts.TTL, DefaultTTL), log: opts.Logger, batched: single}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.lease == 0 {
		s.lease = DefaultLease
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s, nil
}

// LostLeases counts the handlers that succeeded after their lease had
// expired and been taken by another worker (or had vanished): their
// effect may have run twice. Each is also logged.
func (s *Store) LostLeases() int64 { return s.lost.Load() }

// keyEscaper keeps the parts of a key apart: "a:b"+"c" and "a"+"b:c"
// are different keys.
var keyEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

// RedisKey returns the Redis key of k.
func (s *Store) RedisKey(k dedup.Key) string {
	return s.keyHead(k.Group, k.Event) + keyEscaper.Replace(k.ID)
}

// keyHead returns the part of a Redis key before the escaped ID.
func (s *Store) keyHead(group, event string) string {
	return s.prefix + keyEscaper.Replace(group) + ":" + keyEscaper.Replace(event) + ":"
}

// keyMaker builds the Redis keys of one batch, whose items mostly share a
// group and an event: the keys' common head is escaped once.
type keyMaker struct {
	s            *Store
	group, event string
	head         string // "" before the first key
}

func (m *keyMaker) key(k dedup.Key) string {
	if m.head == "" || k.Group != m.group || k.Event != m.event {
		m.group, m.event, m.head = k.Group, k.Event, m.s.keyHead(k.Group, k.Event)
	}
	return m.head + keyEscaper.Replace(k.ID)
}

// load makes sure the scripts are in Redis' script cache, so that
// pipelines can use EvalSha (a Script.Run cannot fall back to EVAL inside a
// pipeline).
func (s *Store) load(ctx context.Context, force bool) error {
	if s.loaded.Load() && !force {
		return nil
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.loaded.Load() && !force {
		return nil
	}
	// One call per script, not a pipeline: Script.Load inside a pipeline
	// reads the hash before the command ran and records "".
	for _, sc := range scripts {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return fmt.Errorf("redisdedup: loading scripts: %w", err)
		}
	}
	s.loaded.Store(true)
	return nil
}

// pipelined queues n commands (cmd(pipe, i) queues the i-th) in one
// pipeline and returns each command's result. With scripts set, it makes
// sure the scripts are loaded first, and reloads them once if Redis lost
// them (NOSCRIPT after a restart or SCRIPT FLUSH).
func (s *Store) pipelined(ctx context.Context, scripts bool, n int, cmd func(pipe redis.Pipeliner, i int) *redis.Cmd) ([]*redis.Cmd, error) {
	for try := 0; ; try++ {
		if scripts {
			if err := s.load(ctx, try > 0); err != nil {
				return nil, err
			}
		}
		pipe := s.c.Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i := range cmds {
			cmds[i] = cmd(pipe, i)
		}
		_, err := pipe.Exec(ctx)
		// Exec returns the first failed command's error (redis.Nil counts:
		// a SET NX GET of a new key replies nil); each command's own
		// result is checked by the caller.
		if errors.Is(err, redis.Nil) {
			err = firstError(cmds)
		}
		if err != nil && scripts && try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		if err != nil {
			return cmds, fmt.Errorf("redisdedup: %w", err)
		}
		return cmds, nil
	}
}

// firstError returns the first error of cmds other than redis.Nil.
func firstError(cmds []*redis.Cmd) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

// evalAll runs script once per key in one pipeline.
func (s *Store) evalAll(ctx context.Context, script *redis.Script, keys []string, args func(i int) []any) ([]*redis.Cmd, error) {
	return s.pipelined(ctx, true, len(keys), func(pipe redis.Pipeliner, i int) *redis.Cmd {
		return script.EvalSha(ctx, pipe, []string{keys[i]}, args(i)...)
	})
}

// acquire tries to take a lease on every key and returns, per key, the
// value the key held before: "" when it was free and the lease is now
// this call's (held). A key whose command failed is left out of held and
// reported by err.
func (s *Store) acquire(ctx context.Context, keys []string, lease string) (prev []string, held []bool, err error) {
	leaseMs := s.lease.Milliseconds()
	prev, held = make([]string, len(keys)), make([]bool, len(keys))
	var cmds []*redis.Cmd
	if !s.noSetGet.Load() {
		cmds, err = s.pipelined(ctx, false, len(keys), func(pipe redis.Pipeliner, i int) *redis.Cmd {
			return pipe.Do(ctx, "set", keys[i], lease, "nx", "px", leaseMs, "get")
		})
		if err != nil && redis.HasErrorPrefix(err, "syntax error") && !anySucceeded(cmds) {
			// Redis < 7.0 rejects NX with GET ("ERR syntax error"; the
			// prefix check drops the "ERR "), and so set nothing.
			s.noSetGet.Store(true)
			s.log.Info("eventgen: Redis rejects SET NX GET (older than 7.0); dedup leases are taken with a script")
		}
	}
	if s.noSetGet.Load() {
		cmds, err = s.evalAll(ctx, acquireScript, keys, func(int) []any { return []any{lease, leaseMs} })
	}
	for k, cmd := range cmds {
		v, cerr := cmd.Text()
		switch {
		case errors.Is(cerr, redis.Nil):
			held[k] = true
		case cerr != nil:
			// Left Pending.
		default:
			prev[k] = cmp.Or(v, "?") // an empty value is neither done nor ours: another worker's
		}
	}
	return prev, held, err
}

// chunked calls script on keys, scriptChunk keys per call, all calls in
// one pipeline, with args(lo, hi) after the keys of keys[lo:hi]; each call
// must reply with one value per key, given to reply with the key's index.
func (s *Store) chunked(ctx context.Context, script *redis.Script, keys []string, args func(lo, hi int) []any, reply func(i int, v any) error) error {
	chunks := (len(keys) + scriptChunk - 1) / scriptChunk
	cmds, err := s.pipelined(ctx, true, chunks, func(pipe redis.Pipeliner, c int) *redis.Cmd {
		lo, hi := c*scriptChunk, min(len(keys), (c+1)*scriptChunk)
		return script.EvalSha(ctx, pipe, keys[lo:hi], args(lo, hi)...)
	})
	if err != nil {
		return err
	}
	for c, cmd := range cmds {
		lo, hi := c*scriptChunk, min(len(keys), (c+1)*scriptChunk)
		vs, err := cmd.Slice()
		if err != nil {
			return fmt.Errorf("redisdedup: reply of a script for %d keys: %w", hi-lo, err)
		}
		if len(vs) != hi-lo {
			return fmt.Errorf("redisdedup: a script for %d keys replied %d values", hi-lo, len(vs))
		}
		for j, v := range vs {
			if err := reply(lo+j, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func anySucceeded(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		if err := c.Err(); err == nil || errors.Is(err, redis.Nil) {
			return true
		}
	}
	return false
}

// Process implements dedup.Store (see Store for how).
func (s *Store) Process(ctx context.Context, batch []dedup.Item[dedup.NoTx]) error {
	first := dedup.MarkRepeats(batch)
	keys, idx := make([]string, 0, len(batch)), make([]int, 0, len(batch))
	km := keyMaker{s: s}
	for i := range batch {
		batch[i].Outcome, batch[i].Err = dedup.Pending, nil
		if first[i] < 0 && batch[i].Handle != nil {
			keys, idx = append(keys, km.key(batch[i].Key)), append(idx, i)
		}
	}
	resolve := func(i int) {
		switch {
		case first[i] >= 0:
			batch[i].Outcome = dedup.ResolveRepeat(batch[first[i]].Outcome)
		case batch[i].Handle == nil:
			batch[i].Outcome, batch[i].Err = dedup.Failed, dedup.ErrNoHandle
		}
	}
	if len(keys) == 0 {
		for i := range batch {
			resolve(i)
		}
		return nil
	}
	lease := "lease:" + token()
	prev, held, err := s.acquire(ctx, keys, lease)
	if err != nil {
		// Some leases may have been taken: give them back (best effort;
		// otherwise they expire after Lease).
		s.releaseAll(context.WithoutCancel(ctx), keys, lease)
		return err
	}
	for k, i := range idx {
		switch {
		case held[k]:
		case prev[k] == "done":
			batch[i].Outcome = dedup.Duplicate
		case prev[k] != "":
			batch[i].Outcome = dedup.Busy
		}
	}
	stopExtending := s.extend(ctx, keys, held, lease)
	k := 0 // batch[idx[k]] is the next item with a key of its own
	for i := range batch {
		if first[i] >= 0 || batch[i].Handle == nil {
			resolve(i) // decided in order: a later handler may look
			continue
		}
		if held[k] {
			if err := batch[i].Handle(ctx, dedup.NoTx{}); err != nil {
				batch[i].Outcome, batch[i].Err = dedup.Failed, err
			} else {
				batch[i].Outcome = dedup.Handled
			}
		}
		k++
	}
	stopExtending()
	return s.finish(context.WithoutCancel(ctx), batch, keys, idx, held, lease)
}

// extend extends the held leases every Lease/3 until the returned stop is
// called.
func (s *Store) extend(ctx context.Context, keys []string, held []bool, lease string) (stop func()) {
	var live []string
	for k, key := range keys {
		if held[k] {
			live = append(live, key)
		}
	}
	if len(live) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			cmds, err := s.evalAll(context.WithoutCancel(ctx), extendScript, live, func(int) []any { return []any{lease, s.lease.Milliseconds()} })
			if err != nil {
				s.log.Warn("eventgen: extending dedup leases failed; retrying at the next tick", "keys", len(live), "error", err)
				continue
			}
			for k, cmd := range cmds {
				if n, _ := cmd.Int64(); n == 0 {
					s.log.Warn("eventgen: dedup lease lost while its handler runs; its effect may repeat", "key", live[k])
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// finish marks handled keys done and releases failed ones, each only if
// the lease is still this call's, in one round trip.
func (s *Store) finish(ctx context.Context, batch []dedup.Item[dedup.NoTx], keys []string, idx []int, held []bool, lease string) error {
	var settle []string
	var ttls []int64 // per key of settle: the done marker's TTL in ms, 0 to release
	handled := 0
	for k, i := range idx {
		if !held[k] {
			continue
		}
		settle = append(settle, keys[k])
		if batch[i].Outcome == dedup.Handled {
			// At least 1 ms: 0 means release.
			ttls = append(ttls, max(1, dedup.TTLOr(batch[i].TTL, s.ttl).Milliseconds()))
			handled++
		} else {
			ttls = append(ttls, 0)
		}
	}
	if len(settle) == 0 {
		return nil
	}
	changed, err := s.settle(ctx, settle, ttls, lease)
	if err != nil {
		return fmt.Errorf("marking %d handled keys done and releasing %d failed ones (those not settled stay leased until the lease expires): %w", handled, len(settle)-handled, err)
	}
	for k, ok := range changed {
		if !ok && ttls[k] > 0 {
			s.lost.Add(1)
			s.log.Warn("eventgen: dedup lease had expired when its handler succeeded; another worker may repeat the effect", "key", settle[k])
		}
	}
	return nil
}

// settle sets keys[i] to done with a TTL of ttls[i] ms, or deletes it
// when ttls[i] is 0, if it still holds lease, and reports which keys it
// changed. On a single node it is one settleScript call per scriptChunk
// keys, all in one pipeline; otherwise one finishScript or releaseScript
// call per key, in one pipeline.
func (s *Store) settle(ctx context.Context, keys []string, ttls []int64, lease string) ([]bool, error) {
	changed := make([]bool, len(keys))
	if !s.batched {
		cmds, err := s.pipelined(ctx, true, len(keys), func(pipe redis.Pipeliner, i int) *redis.Cmd {
			if ttls[i] == 0 {
				return releaseScript.EvalSha(ctx, pipe, keys[i:i+1], lease)
			}
			return finishScript.EvalSha(ctx, pipe, keys[i:i+1], lease, ttls[i])
		})
		if err != nil {
			return nil, err
		}
		for i, cmd := range cmds {
			n, _ := cmd.Int64()
			changed[i] = n == 1
		}
		return changed, nil
	}
	err := s.chunked(ctx, settleScript, keys, func(lo, hi int) []any {
		args := make([]any, 0, 1+hi-lo)
		args = append(args, lease)
		var last int64 = -1
		var boxed any
		for _, t := range ttls[lo:hi] {
			if t != last { // the items of a batch mostly share a TTL: box it once
				last, boxed = t, t
			}
			args = append(args, boxed)
		}
		return args
	}, func(i int, v any) error {
		changed[i] = v == int64(1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// releaseAll deletes the keys whose value is lease, ignoring errors.
func (s *Store) releaseAll(ctx context.Context, keys []string, lease string) {
	ctx, cancel := context.WithTimeout(ctx, s.lease)
	defer cancel()
	_, _ = s.settle(ctx, keys, make([]int64, len(keys)), lease)
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ErrConnect is matched by Connect's errors.
var ErrConnect = errors.New("redisdedup: cannot connect to Redis")

// Connect returns a client of addr, either host:port or a redis:// or
// rediss:// URL (which may carry a password), after a PING. Its errors
// never contain the password.
func Connect(ctx context.Context, addr string) (*redis.Client, error) {
	opts := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			return nil, fmt.Errorf("%w %s: %s", ErrConnect, Redact(addr), scrub(err.Error(), addr))
		}
	}
	c := redis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w %s: %s", ErrConnect, Redact(addr), scrub(err.Error(), addr))
	}
	return c, nil
}

// Redact returns addr with a URL's password replaced by "xxxxx".
func Redact(addr string) string {
	if pw := password(addr); pw != "" {
		return strings.ReplaceAll(addr, pw, "xxxxx")
	}
	return addr
}

func password(addr string) string {
	i := strings.Index(addr, "://")
	if i < 0 {
		return ""
	}
	auth, _, _ := strings.Cut(addr[i+3:], "/")
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(auth[:at], ":")
	return pw
}

func scrub(s, addr string) string {
	pw := password(addr)
	if pw == "" {
		return s
	}
	s = strings.ReplaceAll(s, pw, "xxxxx")
	if un, err := url.PathUnescape(pw); err == nil && un != "" {
		s = strings.ReplaceAll(s, un, "xxxxx")
	}
	return s
}
