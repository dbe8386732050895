// Package redisdedup is the Redis dedup store (go-redis v9): a lease with
// an owner token per event while its handler runs, turned into a "done"
// marker with the event's TTL when the handler succeeds. It is fast (one
// pipelined round trip before a batch's handlers and one after) but not
// atomic with the handler's effects: docs/dedup.md lists the crash windows
// in which an effect can repeat, which is why the schema validator accepts
// Redis for at-least-once events only.
package redisdedup

import (
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
// a cluster: every command touches one key). It is safe for concurrent
// use. A Process call:
//
//  1. takes a lease on every new key of the batch in one pipeline of
//     EvalSha calls (SET key lease:<token> NX PX Lease, or, when the key
//     exists, report whether it is "done" (Duplicate) or another worker's
//     lease (Busy));
//  2. runs the handlers in order while a goroutine extends the leases it
//     holds every Lease/3 (compare-and-PEXPIRE);
//  3. in one more pipeline, sets each handled key to "done" with its TTL
//     and deletes each failed one, both only if the lease is still this
//     call's (compare-and-set, compare-and-delete).
type Store struct {
	c      redis.UniversalClient
	prefix string
	lease  time.Duration
	ttl    time.Duration
	log    *slog.Logger

	loadMu sync.Mutex
	loaded atomic.Bool
	lost   atomic.Int64
}

// The scripts compare the key's value with this call's lease before acting,
// so that a worker whose lease expired and was taken over cannot mark or
// release the new owner's key.
var (
	acquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == 'done' then return 0 end
return 2`)
	extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)
	finishScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2]) return 1 end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
	scripts = []*redis.Script{acquireScript, extendScript, finishScript, releaseScript}
)

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
	s := &Store{c: c, prefix: opts.Prefix, lease: opts.Lease, ttl: dedup.TTLOr(opts.TTL, DefaultTTL), log: opts.Logger}
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
	return s.prefix + keyEscaper.Replace(k.Group) + ":" + keyEscaper.Replace(k.Event) + ":" + keyEscaper.Replace(k.ID)
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

// evalAll runs script once per key in one pipeline and returns each
// command's result. It reloads the scripts once if Redis lost them
// (NOSCRIPT after a restart or SCRIPT FLUSH).
func (s *Store) evalAll(ctx context.Context, script *redis.Script, keys []string, args func(i int) []any) ([]*redis.Cmd, error) {
	for try := 0; ; try++ {
		if err := s.load(ctx, try > 0); err != nil {
			return nil, err
		}
		pipe := s.c.Pipeline()
		cmds := make([]*redis.Cmd, len(keys))
		for i, k := range keys {
			cmds[i] = script.EvalSha(ctx, pipe, []string{k}, args(i)...)
		}
		_, err := pipe.Exec(ctx)
		// Exec returns the first failed command's error; each command's
		// own result is checked by the caller. A script result of nil
		// (redis.Nil) is never expected: every script returns a number.
		if err != nil && try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		if err != nil {
			return cmds, fmt.Errorf("redisdedup: %w", err)
		}
		return cmds, nil
	}
}

// Process implements dedup.Store (see Store for how).
func (s *Store) Process(ctx context.Context, batch []dedup.Item[dedup.NoTx]) error {
	first := dedup.MarkRepeats(batch)
	var keys []string
	var idx []int
	for i := range batch {
		batch[i].Outcome, batch[i].Err = dedup.Pending, nil
		if first[i] < 0 && batch[i].Handle != nil {
			keys, idx = append(keys, s.RedisKey(batch[i].Key)), append(idx, i)
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
	leaseMs := s.lease.Milliseconds()
	cmds, err := s.evalAll(ctx, acquireScript, keys, func(int) []any { return []any{lease, leaseMs} })
	if err != nil {
		// Some leases may have been taken: give them back (best effort;
		// otherwise they expire after Lease).
		s.releaseAll(context.WithoutCancel(ctx), keys, lease)
		return err
	}
	held := make([]bool, len(keys))
	for k, cmd := range cmds {
		switch n, _ := cmd.Int64(); {
		case cmd.Err() != nil:
			// Left Pending.
		case n == 1:
			held[k] = true
		case n == 0:
			batch[idx[k]].Outcome = dedup.Duplicate
		default:
			batch[idx[k]].Outcome = dedup.Busy
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
// the lease is still this call's.
func (s *Store) finish(ctx context.Context, batch []dedup.Item[dedup.NoTx], keys []string, idx []int, held []bool, lease string) error {
	var doneKeys, failedKeys []string
	var doneTTL []int64
	for k, i := range idx {
		if !held[k] {
			continue
		}
		if batch[i].Outcome == dedup.Handled {
			doneKeys = append(doneKeys, keys[k])
			doneTTL = append(doneTTL, dedup.TTLOr(batch[i].TTL, s.ttl).Milliseconds())
		} else {
			failedKeys = append(failedKeys, keys[k])
		}
	}
	var errs []error
	if len(doneKeys) > 0 {
		cmds, err := s.evalAll(ctx, finishScript, doneKeys, func(i int) []any { return []any{lease, doneTTL[i]} })
		if err != nil {
			errs = append(errs, fmt.Errorf("marking %d handled keys done (they stay leased until the lease expires): %w", len(doneKeys), err))
		} else {
			for k, cmd := range cmds {
				if n, _ := cmd.Int64(); n == 0 {
					s.lost.Add(1)
					s.log.Warn("eventgen: dedup lease had expired when its handler succeeded; another worker may repeat the effect", "key", doneKeys[k])
				}
			}
		}
	}
	if len(failedKeys) > 0 {
		if _, err := s.evalAll(ctx, releaseScript, failedKeys, func(int) []any { return []any{lease} }); err != nil {
			errs = append(errs, fmt.Errorf("releasing %d failed keys (they stay leased until the lease expires): %w", len(failedKeys), err))
		}
	}
	return errors.Join(errs...)
}

// releaseAll deletes the keys whose value is lease, ignoring errors.
func (s *Store) releaseAll(ctx context.Context, keys []string, lease string) {
	ctx, cancel := context.WithTimeout(ctx, s.lease)
	defer cancel()
	_, _ = s.evalAll(ctx, releaseScript, keys, func(int) []any { return []any{lease} })
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
