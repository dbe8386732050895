package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/internal/testevent"
	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/eventgen/eventgen/templates"
)

func TestMigrateIsIdempotentAndMatchesTheTemplate(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	for range 2 {
		if err := Migrate(ctx, db.pool, Table{}); err != nil {
			t.Fatal(err)
		}
	}
	ddl, err := templates.OutboxDDL(templates.OutboxTable{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Table{}.DDL()
	if err != nil || got != ddl {
		t.Fatalf("Table{}.DDL() differs from templates.OutboxDDL: %v", err)
	}
	// Concurrent migrations do not trip over each other.
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- Migrate(ctx, db.pool, Table{Schema: db.schema, Name: "other_outbox"}) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := db.count(t, "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'other_outbox'", db.schema); n != 4 {
		t.Fatalf("other_outbox has %d indexes, want 4 (primary key, pending, held, published)", n)
	}
}

func TestInvalidTableNamesAreRejectedNotSpliced(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	bad := []Table{
		{Name: `x"; DROP TABLE users; --`},
		{Name: "Outbox"},
		{Name: "1outbox"},
		{Schema: "public; DROP", Name: "outbox"},
		{Name: strings.Repeat("a", 60)},
		{Schema: strings.Repeat("s", 64), Name: "t"},
	}
	et := testevent.Type("t", event.AtLeastOnce)
	for _, tb := range bad {
		if err := Migrate(ctx, db.pool, tb); !errors.Is(err, ErrInvalidTable) {
			t.Errorf("Migrate(%+v) = %v, want ErrInvalidTable", tb, err)
		}
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return tb.Enqueue(ctx, tx, seqEvent(et, "k", 0)) })
		if !errors.Is(err, ErrInvalidTable) {
			t.Errorf("Enqueue to %+v = %v, want ErrInvalidTable", tb, err)
		}
		if _, err := NewRelay(db.pool, Options{Table: tb, Kafka: kafka.Config{Brokers: []string{"127.0.0.1:1"}}}); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "Options.Table") {
			t.Errorf("NewRelay with %+v = %v, want ErrInvalidOptions naming Options.Table", tb, err)
		}
		if _, err := Retry(ctx, db.pool, tb); !errors.Is(err, ErrInvalidTable) {
			t.Errorf("Retry(%+v) = %v, want ErrInvalidTable", tb, err)
		}
	}
	if n := db.count(t, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", db.schema); n != 0 {
		t.Fatalf("%d tables were created from invalid names", n)
	}
}

func TestOptionsValidateNamesEveryProblem(t *testing.T) {
	_, err := NewRelay(nil, Options{
		Table: Table{Name: "Bad"}, BatchSize: -1, PollInterval: -1, MaxAttempts: -1, RetryBackoff: -1,
		MaxRetryBackoff: -1, Retention: -1, CleanupBatch: -1, RebalanceInterval: -1, StatsInterval: -1,
		ShutdownTimeout: -1, Kafka: kafka.Config{CloseTimeout: -1},
	})
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("err = %v, want ErrInvalidOptions", err)
	}
	for _, field := range []string{"pool is nil", "Options.Table", "Options.Kafka.Brokers", "Options.Kafka.CloseTimeout",
		"Options.BatchSize", "Options.PollInterval", "Options.MaxAttempts", "Options.RetryBackoff", "Options.MaxRetryBackoff",
		"Options.Retention", "Options.CleanupBatch", "Options.RebalanceInterval", "Options.StatsInterval", "Options.ShutdownTimeout"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s:\n%v", field, err)
		}
	}
}

func TestEnqueueWritesOnlyWhenTheTransactionCommits(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	ctx := event.WithTraceparent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	et := testevent.Type("shop.orders", event.AtLeastOnce)

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := Enqueue(ctx, tx, seqEvent(et, "rolled-back", 0)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return Enqueue(ctx, tx, seqEvent(et, "committed", 0)) })
	if err != nil {
		t.Fatal(err)
	}

	if n := db.count(t, "SELECT count(*) FROM eventgen_outbox"); n != 1 {
		t.Fatalf("%d rows, want 1 (the rolled-back enqueue must leave none)", n)
	}
	var topic, key string
	var headers map[string]string
	var payload []byte
	var shard int16
	err = db.pool.QueryRow(ctx, "SELECT topic, key, headers, payload, shard FROM eventgen_outbox").Scan(&topic, &key, &headers, &payload, &shard)
	if err != nil {
		t.Fatal(err)
	}
	if topic != "shop.orders" || key != "committed" || shard < 0 || shard >= Shards {
		t.Fatalf("row: topic %q key %q shard %d", topic, key, shard)
	}
	if _, err := event.ParseUUID(headers[event.HeaderID]); err != nil {
		t.Errorf("ce_id %q: %v", headers[event.HeaderID], err)
	}
	for k, want := range map[string]string{
		event.HeaderSpecVersion: "1.0", event.HeaderType: et.CEType, event.HeaderSource: et.Source,
		event.HeaderContentType: event.ContentTypeJSON, event.HeaderTraceparent: event.Traceparent(ctx),
	} {
		if headers[k] != want {
			t.Errorf("header %s = %q, want %q", k, headers[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, headers[event.HeaderTime]); err != nil {
		t.Errorf("ce_time %q: %v", headers[event.HeaderTime], err)
	}
	var o testevent.Order
	if err := o.UnmarshalJSON(payload); err != nil || o.Customer != "committed" {
		t.Errorf("payload %s: %v", payload, err)
	}

	// An invalid event is refused before anything is written.
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		return Enqueue(ctx, tx, testevent.New(et, "", "", 0))
	})
	if !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("invalid event: %v, want ErrInvalidEvent", err)
	}
}

func TestEnqueueWithoutTheTableSaysSo(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		return Enqueue(ctx, tx, seqEvent(testevent.Type("t", event.AtLeastOnce), "k", 0))
	})
	if err == nil || !strings.Contains(err.Error(), "eventgen_outbox") {
		t.Fatalf("err = %v, want one naming the missing table", err)
	}
	if _, err := Inspect(ctx, db.pool, Table{}); !errors.Is(err, ErrNoTable) {
		t.Fatalf("Inspect: %v, want ErrNoTable", err)
	}
	r, err := NewRelay(db.pool, relayOptions([]string{"127.0.0.1:1"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); !errors.Is(err, ErrNoTable) {
		t.Fatalf("Run: %v, want ErrNoTable", err)
	}
}

func TestRelayPublishesWithTheEnqueuedHeadersAndDeletes(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 3})
	et := testevent.Type("outbox.basic", event.AtLeastOnce)
	const keys, per = 20, 5
	for s := range per {
		for k := range keys {
			enqueue(t, db.pool, seqEvent(et, "k"+string(rune('a'+k)), s))
		}
	}
	var ids []string
	rows, err := db.pool.Query(context.Background(), "SELECT headers->>'ce_id' FROM eventgen_outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	r, stop := runRelay(t, db.pool, relayOptions(c.Brokers()))
	waitTopic(t, c.Brokers(), et.Topic, 3, keys*per, 30*time.Second)
	kafkatest.WaitFor(t, 30*time.Second, "the published rows to be deleted", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := readTopic(t, c.Brokers(), et.Topic)
	want := map[string]int{}
	for k := range keys {
		want["k"+string(rune('a'+k))] = per
	}
	chk := checkTopic(recs, want)
	if len(chk.lost) > 0 || len(chk.violations) > 0 || len(chk.dups) > 0 || len(recs) != keys*per {
		t.Fatalf("%v (%d records): lost %s; violations %s", chk, len(recs), firstN(chk.lost, 5), firstN(chk.violations, 5))
	}
	seen := map[string]bool{}
	for _, p := range recs {
		seen[p.ceID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("ce_id %s assigned at enqueue is not on the topic", id)
		}
	}
	if st := r.Stats(); st.Published != keys*per {
		t.Errorf("Stats().Published = %d, want %d", st.Published, keys*per)
	}
}

func TestRelayRetentionKeepsThenDeletesPublishedRows(t *testing.T) {
	db := newTestDB(t)
	db.migrate(t)
	c := kafkatest.Start(t, kafkatest.Options{Partitions: 1})
	et := testevent.Type("outbox.retention", event.AtLeastOnce)
	for s := range 30 {
		enqueue(t, db.pool, seqEvent(et, "k", s))
	}
	o := relayOptions(c.Brokers())
	o.Retention = time.Hour
	_, stop := runRelay(t, db.pool, o)
	waitTopic(t, c.Brokers(), et.Topic, 1, 30, 30*time.Second)
	kafkatest.WaitFor(t, 30*time.Second, "rows marked published", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox WHERE published_at IS NOT NULL") == 30
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Age them past a short retention: a relay deletes them, CleanupBatch at a time.
	if _, err := db.pool.Exec(context.Background(), "UPDATE eventgen_outbox SET published_at = now() - interval '2 hours'"); err != nil {
		t.Fatal(err)
	}
	o.CleanupBatch = 7
	_, stop = runRelay(t, db.pool, o)
	kafkatest.WaitFor(t, 30*time.Second, "old published rows deleted", func() bool {
		return db.count(t, "SELECT count(*) FROM eventgen_outbox") == 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(readTopic(t, c.Brokers(), et.Topic)); n != 30 {
		t.Fatalf("%d records, want 30 (kept rows must not be published again)", n)
	}
}

func TestHeadersJSONIsAnObjectOfStrings(t *testing.T) {
	et := testevent.Type("t", event.AtLeastOnce)
	b := appendHeaders(nil, et, "id-1", time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "")
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if m[event.HeaderID] != "id-1" || m[event.HeaderTime] != "2026-01-02T03:04:05.000000006Z" || len(m) != 6 {
		t.Fatalf("%v", m)
	}
	rw := row{headers: b, topic: "t", key: "k", payload: []byte("{}")}
	rec, err := rw.record()
	if err != nil || len(rec.Headers) != 6 {
		t.Fatalf("record: %+v, %v", rec, err)
	}
	rw.headers = []byte(`{"ce_id": 1}`)
	if _, err := rw.record(); !errors.Is(err, errBadRow) {
		t.Fatalf("numeric header: %v, want errBadRow", err)
	}
}

func TestParseHeadersAgreesWithEncodingJSON(t *testing.T) {
	good := []string{
		`{}`, ` { } `, `{"a": "b"}`, `{"ce_id": "x", "ce_type": "t.v1"}`,
		`{"k\"q": "v\\w\u00e9\n", "é": ""}`, "{\"a\":\"b\" ,\n\"c\" : \"d\"}",
	}
	for _, in := range good {
		hs, err := parseHeaders([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		var want map[string]string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if len(hs) != len(want) {
			t.Errorf("%s: %d headers, want %d", in, len(hs), len(want))
		}
		for _, h := range hs {
			if want[h.Key] != string(h.Value) {
				t.Errorf("%s: %s = %q, want %q", in, h.Key, h.Value, want[h.Key])
			}
		}
	}
	for _, in := range []string{``, `[]`, `{"a": 1}`, `{"a": null}`, `{"a" "b"}`, `{"a": "b"`, `{"a": "b"} x`, `{"a": "b",}`, `{"a": "b}`} {
		if _, err := parseHeaders([]byte(in)); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}

func TestWavesKeepOneRecordPerKeyInFlight(t *testing.T) {
	rows := []row{{key: "a"}, {key: "b"}, {key: "a"}, {key: "a"}, {key: "c"}, {key: "b"}, {key: ""}, {key: ""}}
	got := waves(rows)
	want := [][]int{{0, 1, 4, 6, 7}, {2, 5}, {3}} // rows without a key have no order to keep
	if len(got) != len(want) {
		t.Fatalf("waves = %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("waves = %v, want %v", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("waves = %v, want %v", got, want)
			}
		}
	}
}
