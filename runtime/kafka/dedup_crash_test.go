package kafka

// Crash tests of the dedup stores (issue 8's proof): a consumer child
// process applies "balance += amount" per account and is SIGKILLed at each
// step and at random; 10% of the events are delivered twice. The checkers
// count lost and duplicated effects from the database; each has a control
// run with a broken variant that it must catch. EVENTGEN_SOAK=1 runs the
// full scale (100,000 events, 50 kills); EVENTGEN_CRASH_LOGS=1 prints every
// child's log (with EVENTGEN_CHILD_DEBUG=1, at Debug level).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/eventgen/eventgen/runtime/dedup"
	"github.com/eventgen/eventgen/runtime/dedup/pgdedup"
	"github.com/eventgen/eventgen/runtime/dedup/redisdedup"
	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/svctest"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
)

// soak reports whether the full-scale runs were asked for.
func soak() bool { return os.Getenv("EVENTGEN_SOAK") == "1" }

// crashScale is the workload of a crash test: events and kills.
type crashScale struct{ events, kills int }

func crashScaleFor() crashScale {
	if soak() {
		return crashScale{events: 100_000, kills: 50}
	}
	return crashScale{events: 3_000, kills: 10}
}

const crashPartitions = 4

// amount is event seq's credit: derived from seq, so that the expected
// balances follow from the distinct events.
func amount(seq int64) int64 { return seq%97 + 1 }

func account(seq int64, accounts int) string { return "k" + strconv.FormatInt(seq%int64(accounts), 10) }

// ledgerRecords lists the records of n credit events: 10% are delivered
// twice, every 20th right after itself (a repeat inside a batch) and every
// 20th+10 again some 500 records later (a late redelivery).
func ledgerRecords(n int) []int64 {
	var seqs, late []int64
	for i := range int64(n) {
		seqs = append(seqs, i)
		switch i % 20 {
		case 0:
			seqs = append(seqs, i)
		case 10:
			late = append(late, i)
		}
		if i%500 == 499 {
			seqs, late = append(seqs, late...), nil
		}
	}
	return append(seqs, late...)
}

// produceLedger writes the records of seqs, waiting for every ack.
func produceLedger(t testing.TB, brokers []string, et *event.Type, seqs []int64, accounts int) {
	t.Helper()
	pc := idempotentConfig()
	pc.Producer.Flush.Messages = 500
	pc.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	errs := make(chan error, 1)
	go func() {
		for range seqs {
			select {
			case <-p.Successes():
			case pe := <-p.Errors():
				errs <- pe.Err
				return
			}
		}
		errs <- nil
	}()
	for _, seq := range seqs {
		e := &testEvent{K: account(seq, accounts), Seq: seq, et: et}
		p.Input() <- &sarama.ProducerMessage{Topic: et.Topic, Key: sarama.StringEncoder(e.K), Value: sarama.ByteEncoder(e.AppendJSON(nil)),
			Headers: CloudEventHeaders(context.Background(), et, event.NewUUID().String(), time.Now())}
	}
	select {
	case err := <-errs:
		if err != nil {
			t.Fatalf("producing the ledger events: %v", err)
		}
	case <-time.After(kafkatest.Timeout(120 * time.Second)):
		t.Fatal("producing the ledger events timed out")
	}
}

// ledgerDDL is the effects' schema: balances, and one row per applied
// effect (no unique key: a duplicated effect shows as a second row).
const ledgerDDL = `CREATE TABLE balances (account text PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE applied (seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())`

// applyEffect is the effect of one event, in one statement.
const applyEffect = `WITH a AS (INSERT INTO applied (seq) VALUES ($3))
INSERT INTO balances (account, balance) VALUES ($1, $2)
ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance`

// applyEffects is the effect of many events, in one statement: what a
// batch handler writes. Amounts are summed per account first (an INSERT
// ... ON CONFLICT cannot update a row twice).
const applyEffects = `WITH e AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS e(account, amount, seq)),
a AS (INSERT INTO applied (seq) SELECT seq FROM e)
INSERT INTO balances (account, balance) SELECT account, sum(amount) FROM e GROUP BY account ORDER BY account
ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance`

// failsFirst reports whether the batch children's handler fails event
// seq's first attempt (after writing its effects, which the store must
// roll back): a failing record in the middle of many batches.
func failsFirst(seq int64) bool { return seq%37 == 5 }

// ledgerCheck is what the checker found in the database.
type ledgerCheck struct {
	lost, duplicated int     // events never applied; extra applications
	dupSeqs          []int64 // the duplicated events
	wrongBalances    int     // accounts whose balance is not the sum over distinct events
}

func (c ledgerCheck) clean() bool { return c.lost == 0 && c.duplicated == 0 && c.wrongBalances == 0 }

func checkLedger(t *testing.T, pool *pgxpool.Pool, n, accounts int) ledgerCheck {
	t.Helper()
	ctx := context.Background()
	counts := map[int64]int{}
	rows, err := pool.Query(ctx, `SELECT seq, count(*) FROM applied GROUP BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	var c int
	if _, err := pgx.ForEachRow(rows, []any{&seq, &c}, func() error { counts[seq] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	var r ledgerCheck
	want := map[string]int64{}
	for s := range int64(n) {
		want[account(s, accounts)] += amount(s)
		switch c := counts[s]; {
		case c == 0:
			r.lost++
		case c > 1:
			r.duplicated += c - 1
			r.dupSeqs = append(r.dupSeqs, s)
		}
	}
	got := map[string]int64{}
	rows, err = pool.Query(ctx, `SELECT account, balance FROM balances`)
	if err != nil {
		t.Fatal(err)
	}
	var acct string
	var bal int64
	if _, err := pgx.ForEachRow(rows, []any{&acct, &bal}, func() error { got[acct] = bal; return nil }); err != nil {
		t.Fatal(err)
	}
	for a, w := range want {
		if got[a] != w {
			r.wrongBalances++
		}
	}
	return r
}

// crashRun describes one crash test: which store the child uses and where
// it may be killed.
type crashRun struct {
	store string   // child's CHILD_STORE: postgres, redis, eos, or a control
	kills []string // kill points, used in turn: a CHILD_KILL value, or "random" (SIGKILL from the parent)
	scale crashScale
}

// crashResult is what a crash run left.
type crashResult struct {
	check        ledgerCheck
	kills        int
	atRisk       map[int64]bool // Redis: events whose effect ran after the child's last finished batch when it was killed
	resumeErrors []string       // exactly once: partitions a child started below the offset stored in the database
	records      int
}

// runCrash runs children against one topic until they have consumed
// everything, killing the first scale.kills of them.
func runCrash(t *testing.T, cr crashRun) crashResult {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: crashPartitions})
	g := exactlyOnceFor(cr.store)
	et := testEventType("Credit", "credits-"+cr.store, g)
	cl.CreateTopic(t, et.Topic, crashPartitions)
	cl.CreateTopic(t, DeadLetterTopic(et.Topic), crashPartitions)
	pool, schema := svctest.Postgres(t, 4)
	ctx := t.Context()
	if err := pgdedup.Migrate(ctx, pool, pgdedup.Options{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, ledgerDDL); err != nil {
		t.Fatal(err)
	}
	var prefix string
	if strings.Contains(cr.store, "redis") {
		_, prefix = svctest.Redis(t)
	}
	const accounts = 50
	res := crashResult{atRisk: map[int64]bool{}}
	// Each child gets a new chunk of the records, so that it always has
	// work left before its kill point.
	records := ledgerRecords(cr.scale.events)
	res.records = len(records)
	chunk := (len(records) + cr.scale.kills) / (cr.scale.kills + 1)
	group := "crash-" + cr.store
	rng := rand.New(rand.NewPCG(kafkatest.Seed(t), 8))
	env := map[string]string{
		"CHILD_BROKERS": strings.Join(cl.Brokers(), ","), "CHILD_TOPIC": et.Topic, "CHILD_GROUP": group,
		"CHILD_INSTANCE": group + "-1", "CHILD_STORE": cr.store, "CHILD_GUARANTEE": g.String(),
		"CHILD_PG_URL": withParam(svctest.PostgresURL(), "search_path", schema), "CHILD_PG_SCHEMA": schema, "CHILD_REDIS_PREFIX": prefix,
	}
	client := kafkatest.NewClient(t, cl.Brokers(), kafkatest.ClientOptions{})
	for i := 0; ; i++ {
		last := i >= cr.scale.kills
		from := min(i*chunk, len(records))
		to := min(from+chunk, len(records))
		if last {
			to = len(records)
		}
		produceLedger(t, cl.Brokers(), et, records[from:to], accounts)
		env["CHILD_LOG"] = tempPath(t, fmt.Sprintf("child-%d.log", i))
		env["CHILD_KILL"], env["CHILD_KILL_AFTER"] = "none", "0"
		kill := "none"
		if !last {
			kill = cr.kills[i%len(cr.kills)]
			if kill != "random" {
				env["CHILD_KILL"] = kill
				env["CHILD_KILL_AFTER"] = strconv.Itoa(chunk/4 + rng.IntN(chunk/2))
			}
		}
		stored := storedOffsets(t, pool, group, et.Topic)
		c := startChild(t, "dedup", env)
		switch {
		case last:
			done := func() bool {
				if g == event.ExactlyOnce {
					return kafkatest.Sum(storedOffsets(t, pool, group, et.Topic)) >= int64(res.records)
				}
				com, err := kafkatest.Committed(client, group, et.Topic, crashPartitions)
				return err == nil && kafkatest.Sum(com) >= int64(res.records)
			}
			if !kafkatest.Eventually(180*time.Second, func() bool { return c.exited() || done() }) || c.exited() {
				if os.Getenv("EVENTGEN_CRASH_LOGS") != "" {
					b, _ := os.ReadFile(c.stderr)
					t.Logf("last child's log:\n%s", b)
				}
				com, _ := kafkatest.Committed(client, group, et.Topic, crashPartitions)
				lb, _ := os.ReadFile(env["CHILD_LOG"])
				t.Logf("stored %v committed %v high %v; child log %s", storedOffsets(t, pool, group, et.Topic), com, kafkatest.HighWater(t, client, et.Topic, crashPartitions), lb)
				t.Fatalf("the last child did not consume everything (exited %v); log:\n%s", c.exited(), c.log())
			}
			if err := c.terminate(t); err != nil {
				t.Fatalf("last child: %v\n%s", err, c.log())
			}
		case kill == "random":
			kafkatest.WaitFor(t, 30*time.Second, "child to start", func() bool { return c.exited() || c.ready() })
			time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond) // the kill's random moment
			c.kill(t)
			res.kills++
		default:
			if err := c.wait(t, 120*time.Second); exitCode(err) != -int(syscall.SIGKILL) {
				t.Fatalf("child %d (kill %s) exited with %v, want SIGKILL at its kill point; log:\n%s", i, kill, err, c.log())
			}
			res.kills++
		}
		readChildLog(t, env["CHILD_LOG"], stored, &res)
		if os.Getenv("EVENTGEN_CRASH_LOGS") != "" {
			b, _ := os.ReadFile(c.stderr)
			t.Logf("child %d (kill %s):\n%s", i, kill, b)
		}
		if last {
			break
		}
	}
	res.check = checkLedger(t, pool, cr.scale.events, accounts)
	return res
}

func exactlyOnceFor(store string) event.Guarantee {
	if strings.HasPrefix(store, "eos") {
		return event.ExactlyOnce
	}
	return event.AtLeastOnce
}

// storedOffsets reads the offsets an exactly-once consumer stored in the
// database.
func storedOffsets(t *testing.T, pool *pgxpool.Pool, group, topic string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	rows, err := pool.Query(context.Background(), `SELECT partition, next_offset FROM eventgen_offsets WHERE consumer_group = $1 AND topic = $2`, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	var p int32
	var off int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error { out[p] = off; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// readChildLog reads what a child wrote: for Redis, the loggingStore's
// lines (the effects of batches without an F are at risk of repeating);
// "first p offset" at an exactly-once child's first batch of each
// partition.
func readChildLog(t *testing.T, path string, stored map[int32]int64, res *crashResult) {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	open := map[string][]int64{} // by batch
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 3 && fs[0] == "E": // E batch k<account>/<seq>
			_, seqText, _ := strings.Cut(fs[2], "/")
			seq, _ := strconv.ParseInt(seqText, 10, 64)
			open[fs[1]] = append(open[fs[1]], seq)
		case len(fs) == 2 && fs[0] == "F":
			delete(open, fs[1])
		case len(fs) == 3 && fs[0] == "first":
			p, _ := strconv.ParseInt(fs[1], 10, 32)
			off, _ := strconv.ParseInt(fs[2], 10, 64)
			if s, ok := stored[int32(p)]; ok && off < s {
				res.resumeErrors = append(res.resumeErrors, fmt.Sprintf("partition %d started at %d, below the stored %d", p, off, s))
			}
		}
	}
	// A killed child's unfinished batches, and a batch whose store call
	// failed (X): their effects ran and their keys may not be done.
	for _, seqs := range open {
		for _, seq := range seqs {
			res.atRisk[seq] = true
		}
	}
}

// runChildDedup is the child of the crash tests: a consumer applying the
// ledger effect through the store CHILD_STORE, killing itself at
// CHILD_KILL after CHILD_KILL_AFTER handler calls (or batches).
func runChildDedup(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, os.Getenv("CHILD_PG_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	logf, err := os.OpenFile(os.Getenv("CHILD_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logLine := func(format string, args ...any) { _, _ = fmt.Fprintf(logf, format+"\n", args...) }
	kill, killAfter := os.Getenv("CHILD_KILL"), int64(envInt("CHILD_KILL_AFTER"))
	var calls atomic.Int64
	die := func(point string) {
		if kill == point && calls.Load() >= killAfter {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	store := os.Getenv("CHILD_STORE")
	g := exactlyOnceFor(store)
	et := testEventType("Credit", os.Getenv("CHILD_TOPIC"), g)
	et.DedupTTL = time.Hour
	c, err := NewConsumer(ConsumerConfig{
		Config:     Config{Brokers: childBrokers(), Tune: kafkatest.FastTune, Logger: childLogger()},
		GroupID:    os.Getenv("CHILD_GROUP"),
		InstanceID: os.Getenv("CHILD_INSTANCE"),
		MaxBatch:   200,
		Retry:      RetryPolicy{MaxAttempts: 1000, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
	})
	if err != nil {
		return err
	}
	pg, err := pgdedup.New(pool, pgdedup.Options{Schema: os.Getenv("CHILD_PG_SCHEMA")})
	if err != nil {
		return err
	}
	inTx := func(ctx context.Context, e testEvent, tx pgx.Tx) error {
		calls.Add(1)
		die("mid-batch") // inside the batch's transaction: rolled back
		_, err := tx.Exec(ctx, applyEffect, e.K, amount(e.Seq), e.Seq)
		return err
	}
	// inBatch is the batch handler: the effects of all its events in one
	// statement, then the failure of an event that fails its first
	// attempt (the call's effects are rolled back, the store narrows the
	// failure down to that event).
	inBatch := func(ctx context.Context, tx pgx.Tx, es []testEvent, attempts []int) error {
		calls.Add(int64(len(es)))
		die("mid-batch")
		accounts, amounts, seqs := make([]string, len(es)), make([]int64, len(es)), make([]int64, len(es))
		for i, e := range es {
			accounts[i], amounts[i], seqs[i] = e.K, amount(e.Seq), e.Seq
		}
		if _, err := tx.Exec(ctx, applyEffects, accounts, amounts, seqs); err != nil {
			return err
		}
		for i, e := range es {
			if failsFirst(e.Seq) && attempts[i] == 1 {
				return fmt.Errorf("event %d fails its first attempt", e.Seq)
			}
		}
		return nil
	}
	switch store {
	case "postgres-batch":
		HandleDedupedBatch(c, et, decodeTestEvent, dedup.BatchStore[pgx.Tx](&killingBatchStore{BatchOffsetStore: pg, die: die}),
			func(ctx context.Context, tx pgx.Tx, es []testEvent, recs []AtLeastOnceRecord) error {
				attempts := make([]int, len(recs))
				for i, r := range recs {
					attempts[i] = r.Attempt
				}
				return inBatch(ctx, tx, es, attempts)
			})
	case "eos-batch":
		s := &killingBatchStore{BatchOffsetStore: pg, die: die, log: logLine, first: map[int32]bool{}}
		HandleExactlyOnceBatch(c, et, decodeTestEvent, dedup.BatchOffsetStore[pgx.Tx](s),
			func(ctx context.Context, tx pgx.Tx, es []testEvent, recs []ExactlyOnceRecord) error {
				attempts := make([]int, len(recs))
				for i, r := range recs {
					attempts[i] = r.Attempt
				}
				return inBatch(ctx, tx, es, attempts)
			})
	case "postgres":
		HandleDeduped(c, et, decodeTestEvent, dedup.Store[pgx.Tx](&killingStore{Store: pg, die: die}),
			func(ctx context.Context, e testEvent, tx pgx.Tx, _ AtLeastOnceRecord) error { return inTx(ctx, e, tx) })
	case "postgres-control":
		// Broken on purpose: the key is recorded in a transaction of its
		// own after the effects committed.
		HandleDeduped(c, et, decodeTestEvent, dedup.Store[pgx.Tx](&outsideStore{pool: pool, pg: pg, die: die}),
			func(ctx context.Context, e testEvent, tx pgx.Tx, _ AtLeastOnceRecord) error { return inTx(ctx, e, tx) })
	case "eos", "eos-control":
		var s dedup.OffsetStore[pgx.Tx] = &killingOffsetStore{OffsetStore: pg, die: die, log: logLine, first: map[int32]bool{}}
		if store == "eos-control" {
			s = noStoredOffsets{s} // broken on purpose: resumes from Kafka's offsets
		}
		HandleExactlyOnce(c, et, decodeTestEvent, s,
			func(ctx context.Context, e testEvent, tx pgx.Tx, _ ExactlyOnceRecord) error { return inTx(ctx, e, tx) })
	case "redis", "redis-control":
		rc, prefix := redisClient(), os.Getenv("CHILD_REDIS_PREFIX")
		defer rc.Close()
		rs, err := redisdedup.New(rc, redisdedup.Options{Prefix: prefix, Lease: time.Second})
		if err != nil {
			return err
		}
		var s dedup.Store[dedup.NoTx] = &loggingStore{Store: rs, log: logLine}
		if store == "redis-control" {
			s = &loggingStore{Store: runEvery{}, log: logLine} // broken on purpose: no dedup at all
		}
		HandleDeduped(c, et, decodeTestEvent, s, func(ctx context.Context, e testEvent, _ dedup.NoTx, _ AtLeastOnceRecord) error {
			calls.Add(1)
			die("after-lease") // the lease is held, no effect yet: retried after the lease expires
			if _, err := pool.Exec(ctx, applyEffect, e.K, amount(e.Seq), e.Seq); err != nil {
				return err
			}
			die("after-effect") // the effect is applied, the key not yet done: it repeats
			return nil
		})
	default:
		return fmt.Errorf("unknown CHILD_STORE %q", store)
	}
	return c.Run(ctx)
}

// killingStore kills the child after a batch's commit, before the consumer
// commits its offsets to Kafka.
type killingStore struct {
	dedup.Store[pgx.Tx]
	die func(point string)
}

func (s *killingStore) Process(ctx context.Context, batch []dedup.Item[pgx.Tx]) error {
	err := s.Store.Process(ctx, batch)
	if err == nil {
		s.die("after-commit")
	}
	return err
}

// killingOffsetStore is killingStore for ProcessAt, and logs each
// partition's first offset.
type killingOffsetStore struct {
	dedup.OffsetStore[pgx.Tx]
	die   func(point string)
	log   func(format string, args ...any)
	mu    sync.Mutex
	first map[int32]bool
}

func (s *killingOffsetStore) ProcessAt(ctx context.Context, at dedup.Partition, batch []dedup.Item[pgx.Tx], offsets []int64) (int64, error) {
	s.mu.Lock()
	if !s.first[at.Partition] && len(offsets) > 0 {
		s.first[at.Partition] = true
		s.log("first %d %d", at.Partition, offsets[0])
	}
	s.mu.Unlock()
	next, err := s.OffsetStore.ProcessAt(ctx, at, batch, offsets)
	if err == nil {
		s.die("after-commit")
	}
	return next, err
}

// killingBatchStore is killingOffsetStore for the batch path: it kills
// the child after ProcessBatch's or ProcessBatchAt's commit, before the
// consumer commits to Kafka, and logs each partition's first offset.
type killingBatchStore struct {
	dedup.BatchOffsetStore[pgx.Tx]
	die   func(point string)
	log   func(format string, args ...any)
	mu    sync.Mutex
	first map[int32]bool
}

func (s *killingBatchStore) ProcessBatch(ctx context.Context, batch []dedup.Item[pgx.Tx], handle dedup.BatchFunc[pgx.Tx]) error {
	err := s.BatchOffsetStore.ProcessBatch(ctx, batch, handle)
	if err == nil {
		s.die("after-commit")
	}
	return err
}

func (s *killingBatchStore) ProcessBatchAt(ctx context.Context, at dedup.Partition, batch []dedup.Item[pgx.Tx], offsets []int64, handle dedup.BatchFunc[pgx.Tx]) (int64, error) {
	s.mu.Lock()
	if !s.first[at.Partition] && len(offsets) > 0 {
		s.first[at.Partition] = true
		s.log("first %d %d", at.Partition, offsets[0])
	}
	s.mu.Unlock()
	next, err := s.BatchOffsetStore.ProcessBatchAt(ctx, at, batch, offsets, handle)
	if err == nil {
		s.die("after-commit")
	}
	return next, err
}

// noStoredOffsets hides the stored offsets from the consumer's setup (the
// control of the resume check).
type noStoredOffsets struct{ dedup.OffsetStore[pgx.Tx] }

func (noStoredOffsets) LoadOffsets(context.Context, string, string) (map[int32]int64, error) {
	return map[int32]int64{}, nil
}

// outsideStore is the broken design the PostgreSQL store replaces: the
// effects commit in one transaction, the keys in another, after it.
type outsideStore struct {
	pool *pgxpool.Pool
	pg   *pgdedup.Store
	die  func(point string)
}

func (s *outsideStore) Process(ctx context.Context, batch []dedup.Item[pgx.Tx]) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	seen := map[dedup.Key]bool{}
	for i := range batch {
		it := &batch[i]
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM eventgen_dedup WHERE consumer_group = $1 AND event = $2 AND id = $3)`, it.Key.Group, it.Key.Event, it.Key.ID).Scan(&exists); err != nil {
			return err
		}
		if exists || seen[it.Key] {
			it.Outcome = dedup.Duplicate
			continue
		}
		seen[it.Key] = true
		if err := it.Handle(ctx, tx); err != nil {
			return err
		}
		it.Outcome = dedup.Handled
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.die("after-commit") // effects committed, keys not recorded
	var record []dedup.Item[pgx.Tx]
	for _, it := range batch {
		if it.Outcome == dedup.Handled {
			record = append(record, dedup.Item[pgx.Tx]{Key: it.Key, TTL: it.TTL, Handle: func(context.Context, pgx.Tx) error { return nil }})
		}
	}
	return s.pg.Process(ctx, record)
}

// loggingStore numbers each batch and writes "E batch key" before each of
// its handlers runs (before the effect: a repeat must be among these),
// "F batch" after it finished without a store error (its keys are marked
// done), "X batch" after one that did not. Partitions run batches
// concurrently, hence the numbers.
type loggingStore struct {
	dedup.Store[dedup.NoTx]
	log     func(format string, args ...any)
	batches atomic.Int64
}

func (s *loggingStore) Process(ctx context.Context, batch []dedup.Item[dedup.NoTx]) error {
	id := s.batches.Add(1)
	for i := range batch {
		h, key := batch[i].Handle, batch[i].Key.ID
		batch[i].Handle = func(ctx context.Context, tx dedup.NoTx) error {
			s.log("E %d %s", id, key)
			return h(ctx, tx)
		}
	}
	err := s.Store.Process(ctx, batch)
	if err == nil {
		s.log("F %d", id)
	} else {
		s.log("X %d", id)
	}
	return err
}

// runEvery is no dedup at all, for the Redis checker's control.
type runEvery struct{}

func (runEvery) Process(ctx context.Context, batch []dedup.Item[dedup.NoTx]) error {
	for i := range batch {
		if err := batch[i].Handle(ctx, dedup.NoTx{}); err != nil {
			batch[i].Outcome, batch[i].Err = dedup.Failed, err
			continue
		}
		batch[i].Outcome = dedup.Handled
	}
	return nil
}

func crashKills(store string) []string {
	switch {
	case strings.HasPrefix(store, "redis"):
		return []string{"after-lease", "after-effect", "random"}
	default:
		return []string{"mid-batch", "after-commit", "random"}
	}
}

func TestDedupCrashPostgres(t *testing.T) {
	sc := crashScaleFor()
	res := runCrash(t, crashRun{store: "postgres", kills: crashKills("postgres"), scale: sc})
	if !res.check.clean() {
		t.Fatalf("PostgreSQL dedup after %d kills: %d lost, %d duplicated effects (%v), %d wrong balances", res.kills, res.check.lost, res.check.duplicated, first(res.check.dupSeqs), res.check.wrongBalances)
	}
	t.Logf("PostgreSQL dedup: %d events (%d records, 10%% delivered twice), %d kills (in the batch's transaction, after its commit before Kafka's, at random): 0 lost, 0 duplicated, balances exact",
		sc.events, res.records, res.kills)
}

// TestDedupCrashPostgresBatch is TestDedupCrashPostgres with a batch
// handler (one statement per batch), some events failing their first
// attempt in the middle of batches.
func TestDedupCrashPostgresBatch(t *testing.T) {
	sc := crashScaleFor()
	res := runCrash(t, crashRun{store: "postgres-batch", kills: crashKills("postgres"), scale: sc})
	if !res.check.clean() {
		t.Fatalf("PostgreSQL dedup with a batch handler after %d kills: %d lost, %d duplicated effects (%v), %d wrong balances", res.kills, res.check.lost, res.check.duplicated, first(res.check.dupSeqs), res.check.wrongBalances)
	}
	t.Logf("PostgreSQL dedup, batch handler: %d events (%d records, 10%% delivered twice, every 37th failing its first attempt), %d kills: 0 lost, 0 duplicated, balances exact",
		sc.events, res.records, res.kills)
}

func TestDedupCrashPostgresControl(t *testing.T) {
	sc := crashScale{events: 1_500, kills: 4}
	res := runCrash(t, crashRun{store: "postgres-control", kills: []string{"after-commit"}, scale: sc})
	if res.check.duplicated == 0 {
		t.Fatalf("the checker saw no duplicate with the keys recorded outside the effects' transaction (%d kills after the effects' commit)", res.kills)
	}
	t.Logf("control: keys recorded after the effects' transaction: %d duplicated effects over %d kills, caught", res.check.duplicated, res.kills)
}

func TestDedupCrashRedis(t *testing.T) {
	sc := crashScaleFor()
	res := runCrash(t, crashRun{store: "redis", kills: crashKills("redis"), scale: sc})
	unmatched := 0
	for _, s := range res.check.dupSeqs {
		if !res.atRisk[s] {
			unmatched++
		}
	}
	if res.check.lost != 0 || unmatched != 0 {
		t.Fatalf("Redis dedup after %d kills: %d lost, %d duplicated effects of which %d outside the documented window (%v)", res.kills, res.check.lost, res.check.duplicated, unmatched, first(res.check.dupSeqs))
	}
	t.Logf("Redis dedup: %d events (%d records, 10%% delivered twice), %d kills (lease held before the effect, after the effect before done, at random): 0 lost, no key stuck (the last child consumed everything), %d repeated effects, all in the window \"crash after the effect, before the batch's done markers\" (%d effects were at risk)",
		sc.events, res.records, res.kills, res.check.duplicated, len(res.atRisk))
}

func TestDedupCrashRedisControl(t *testing.T) {
	sc := crashScale{events: 1_500, kills: 2}
	res := runCrash(t, crashRun{store: "redis-control", kills: []string{"after-effect"}, scale: sc})
	unmatched := 0
	for _, s := range res.check.dupSeqs {
		if !res.atRisk[s] {
			unmatched++
		}
	}
	if unmatched == 0 {
		t.Fatalf("the checker matched every repeat of a consumer without dedup to a crash window (%d duplicated)", res.check.duplicated)
	}
	t.Logf("control: no dedup: %d repeated effects, %d outside any crash window, caught", res.check.duplicated, unmatched)
}

func TestDedupCrashExactlyOnce(t *testing.T) {
	sc := crashScaleFor()
	res := runCrash(t, crashRun{store: "eos", kills: crashKills("eos"), scale: sc})
	if !res.check.clean() || len(res.resumeErrors) > 0 {
		t.Fatalf("exactly once into PostgreSQL after %d kills: %d lost, %d duplicated (%v), %d wrong balances; resumed below the database's offsets: %v",
			res.kills, res.check.lost, res.check.duplicated, first(res.check.dupSeqs), res.check.wrongBalances, res.resumeErrors)
	}
	t.Logf("exactly once into PostgreSQL: %d events (%d records, 10%% delivered twice), %d kills: 0 lost, 0 duplicated, every restart resumed at the offsets stored in the database",
		sc.events, res.records, res.kills)
}

// TestDedupCrashExactlyOnceBatch is TestDedupCrashExactlyOnce with a
// batch handler, some events failing their first attempt.
func TestDedupCrashExactlyOnceBatch(t *testing.T) {
	sc := crashScaleFor()
	res := runCrash(t, crashRun{store: "eos-batch", kills: crashKills("eos"), scale: sc})
	if !res.check.clean() || len(res.resumeErrors) > 0 {
		t.Fatalf("exactly once into PostgreSQL with a batch handler after %d kills: %d lost, %d duplicated (%v), %d wrong balances; resumed below the database's offsets: %v",
			res.kills, res.check.lost, res.check.duplicated, first(res.check.dupSeqs), res.check.wrongBalances, res.resumeErrors)
	}
	t.Logf("exactly once into PostgreSQL, batch handler: %d events (%d records, 10%% delivered twice, every 37th failing its first attempt), %d kills: 0 lost, 0 duplicated, resumed at the stored offsets",
		sc.events, res.records, res.kills)
}

func TestDedupCrashExactlyOnceResumeControl(t *testing.T) {
	sc := crashScale{events: 1_500, kills: 3}
	res := runCrash(t, crashRun{store: "eos-control", kills: []string{"after-commit"}, scale: sc})
	if len(res.resumeErrors) == 0 {
		t.Fatal("the resume check saw nothing wrong with a consumer that ignores the stored offsets (killed after the database commit, before Kafka's)")
	}
	t.Logf("control: stored offsets ignored: %d restarts below the database's offsets, caught (%s)", len(res.resumeErrors), res.resumeErrors[0])
}

func first(xs []int64) []int64 {
	if len(xs) > 10 {
		return xs[:10]
	}
	return xs
}

func redisClient() *redis.Client { return redis.NewClient(&redis.Options{Addr: svctest.RedisAddr()}) }

// withParam adds a query parameter to a URL.
func withParam(u, k, v string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + k + "=" + v
}
