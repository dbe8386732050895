package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventgen/eventgen/runtime/kafka"
	"github.com/eventgen/eventgen/runtime/outbox"
)

// The relay commands link pgx and sarama (through runtime/outbox): the
// generator and the other commands do not use them, but Go links what the
// binary can reach. See docs/architecture.md.

const relayUsage = `usage:
  eventgen relay --postgres URL --brokers HOST:PORT[,...] [flags]
        publish the outbox table to Kafka until interrupted (SIGINT, SIGTERM)
  eventgen relay quarantined --postgres URL [--schema S] [--table T] [--limit N]
        list the rows quarantined after repeated failures
  eventgen relay retry --postgres URL [--schema S] [--table T] (--all | --id N[,N...])
        release quarantined rows: each is published again before its key's later rows

The password of --postgres never appears in output. docs/outbox.md describes
the outbox, its guarantees and its operation.
`

// runRelay runs `eventgen relay` and its subcommands until ctx is done.
// terminal reports whether stderr is a terminal (a progress line then).
func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer, terminal bool) int {
	if len(args) > 0 {
		switch args[0] {
		case "retry":
			return runRelayRetry(ctx, args[1:], stdout, stderr)
		case "quarantined":
			return runRelayQuarantined(ctx, args[1:], stdout, stderr)
		}
	}
	fl := relayFlags("relay", stderr)
	dsn := fl.String("postgres", "", "PostgreSQL connection URL (required)")
	brokers := fl.String("brokers", "", "Kafka bootstrap brokers, comma-separated host:port (required)")
	table := tableFlags(fl)
	clientID := fl.String("client-id", "eventgen-relay", "Kafka client.id")
	batch := fl.Int("batch", outbox.DefaultBatchSize, "rows published and deleted together")
	attempts := fl.Int("max-attempts", outbox.DefaultMaxAttempts, "failed publications that quarantine a row")
	retention := fl.Duration("retention", 0, "keep published rows this long before deleting them (0: delete at once)")
	poll := fl.Duration("poll", outbox.DefaultPollInterval, "poll interval when no notification arrives")
	noNotify := fl.Bool("no-notify", false, "poll only, without LISTEN")
	migrate := fl.Bool("migrate", false, "create the outbox table first if it does not exist")
	if code, ok := parseRelayFlags(fl, args); !ok {
		return code
	}
	var missing []string
	if *dsn == "" {
		missing = append(missing, "--postgres")
	}
	if *brokers == "" {
		missing = append(missing, "--brokers")
	}
	if len(missing) > 0 || fl.NArg() > 0 {
		if len(missing) > 0 {
			fmt.Fprintf(stderr, "eventgen relay: %s required\n", strings.Join(missing, " and "))
		} else {
			fmt.Fprintf(stderr, "eventgen relay: unexpected argument %q\n", fl.Arg(0))
		}
		fmt.Fprint(stderr, relayUsage)
		return exitUsage
	}
	stderr = redactingWriter(stderr, *dsn)
	pool, code := openPool(ctx, *dsn, stderr)
	if pool == nil {
		return code
	}
	defer pool.Close()
	if *migrate {
		if err := outbox.Migrate(ctx, pool, *table); err != nil {
			fmt.Fprintf(stderr, "eventgen relay: %v\n", err)
			return exitFail
		}
	}
	progress := &progressLine{w: stderr, on: terminal}
	logger := slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := outbox.NewRelay(pool, outbox.Options{
		Table:         *table,
		Kafka:         kafka.Config{Brokers: splitList(*brokers), ClientID: *clientID},
		BatchSize:     *batch,
		MaxAttempts:   *attempts,
		Retention:     *retention,
		PollInterval:  *poll,
		DisableNotify: *noNotify,
		Logger:        logger,
		OnStats:       progress.show,
		StatsInterval: time.Second,
	})
	if err != nil {
		fmt.Fprintf(stderr, "eventgen relay: %v\n", err)
		return exitUsage
	}
	err = r.Run(ctx)
	progress.done()
	if err != nil {
		hint := ""
		if errors.Is(err, outbox.ErrNoTable) {
			hint = "; --migrate creates it"
		}
		fmt.Fprintf(stderr, "eventgen relay: %v%s\n", err, hint)
		return exitFail
	}
	fmt.Fprintf(stderr, "eventgen relay: stopped after publishing %d rows\n", r.Stats().Published)
	return exitOK
}

func runRelayRetry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := relayFlags("relay retry", stderr)
	dsn := fl.String("postgres", "", "PostgreSQL connection URL (required)")
	table := tableFlags(fl)
	all := fl.Bool("all", false, "release every quarantined row")
	var ids idList
	fl.Var(&ids, "id", "release the rows with these ids (comma-separated, repeatable)")
	if code, ok := parseRelayFlags(fl, args); !ok {
		return code
	}
	switch {
	case *dsn == "":
		fmt.Fprintf(stderr, "eventgen relay retry: --postgres required\n%s", relayUsage)
		return exitUsage
	case *all == (len(ids) > 0):
		fmt.Fprintf(stderr, "eventgen relay retry: give either --all or --id\n%s", relayUsage)
		return exitUsage
	case fl.NArg() > 0:
		fmt.Fprintf(stderr, "eventgen relay retry: unexpected argument %q\n%s", fl.Arg(0), relayUsage)
		return exitUsage
	}
	stderr = redactingWriter(stderr, *dsn)
	pool, code := openPool(ctx, *dsn, stderr)
	if pool == nil {
		return code
	}
	defer pool.Close()
	n, err := outbox.Retry(ctx, pool, *table, ids...)
	if err != nil {
		fmt.Fprintf(stderr, "eventgen relay retry: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "released %d quarantined row%s of %s\n", n, plural(n), table.String())
	return exitOK
}

func runRelayQuarantined(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := relayFlags("relay quarantined", stderr)
	dsn := fl.String("postgres", "", "PostgreSQL connection URL (required)")
	table := tableFlags(fl)
	limit := fl.Int("limit", 100, "list at most this many rows, oldest first")
	if code, ok := parseRelayFlags(fl, args); !ok {
		return code
	}
	if *dsn == "" || fl.NArg() > 0 {
		fmt.Fprintf(stderr, "eventgen relay quarantined: --postgres required, and no arguments\n%s", relayUsage)
		return exitUsage
	}
	stderr = redactingWriter(stderr, *dsn)
	pool, code := openPool(ctx, *dsn, stderr)
	if pool == nil {
		return code
	}
	defer pool.Close()
	rows, err := outbox.Quarantined(ctx, pool, *table, *limit)
	if err != nil {
		fmt.Fprintf(stderr, "eventgen relay quarantined: %v\n", err)
		return exitFail
	}
	if len(rows) == 0 {
		fmt.Fprintf(stdout, "no quarantined rows in %s\n", table.String())
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTOPIC\tKEY\tTYPE\tATTEMPTS\tQUARANTINED\tLAST ERROR")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Topic, r.Key, r.EventType, r.Attempts,
			r.Quarantined.UTC().Format(time.RFC3339), strings.ReplaceAll(r.LastError, "\n", " "))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "eventgen relay quarantined: %v\n", err)
		return exitFail
	}
	return exitOK
}

// relayFlags returns a flag set whose -help prints relayUsage first.
func relayFlags(name string, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet("eventgen "+name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, relayUsage)
		fmt.Fprintf(stderr, "\nflags of eventgen %s:\n", name)
		fl.PrintDefaults()
	}
	return fl
}

func tableFlags(fl *flag.FlagSet) *outbox.Table {
	t := &outbox.Table{}
	fl.StringVar(&t.Schema, "schema", "", "schema of the outbox table (default: the connection's search_path)")
	fl.StringVar(&t.Name, "table", "eventgen_outbox", "name of the outbox table")
	return t
}

func parseRelayFlags(fl *flag.FlagSet, args []string) (int, bool) {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

// openPool parses dsn and connects. Errors never show the password: the
// caller's stderr redacts it, and a URL that does not parse is reported
// without pgx's rendition of it.
func openPool(ctx context.Context, dsn string, stderr io.Writer) (*pgxpool.Pool, int) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		fmt.Fprintf(stderr, "eventgen relay: --postgres is not a valid PostgreSQL connection URL or key=value string\n")
		return nil, exitUsage
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		fmt.Fprintf(stderr, "eventgen relay: connecting to PostgreSQL at %s: %v\n", redactDSN(dsn), err)
		return nil, exitFail
	}
	return pool, exitOK
}

// redactDSN returns dsn without its password, for messages.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return kvPassword.ReplaceAllString(dsn, "password=xxxxx")
}

var kvPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// passwords returns the passwords a connection string carries, in the forms
// they could be echoed in: URL, URL-decoded, and key=value.
func passwords(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		if p := strings.Trim(m[1], "'"); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// redactingWriter replaces the passwords of dsn with "xxxxx" in everything
// written through it: a last line of defence for errors of libraries that
// might echo a connection string.
func redactingWriter(w io.Writer, dsn string) io.Writer {
	ps := passwords(dsn)
	if len(ps) == 0 {
		return w
	}
	pairs := make([]string, 0, 2*len(ps))
	for _, p := range ps {
		pairs = append(pairs, p, "xxxxx")
	}
	return &redactor{w: w, r: strings.NewReplacer(pairs...)}
}

type redactor struct {
	w io.Writer
	r *strings.Replacer
}

func (r *redactor) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.r.Replace(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// progressLine shows the relay's statistics on one line of a terminal,
// rewritten in place; log lines written through it clear it first. Off a
// terminal it only passes log lines through.
type progressLine struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	shown bool
}

func (p *progressLine) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
	return p.w.Write(b)
}

func (p *progressLine) show(st outbox.Stats) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r\033[K%s", formatStats(st))
	p.shown = true
}

// done ends the progress line.
func (p *progressLine) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}

// formatStats is the progress line's text.
func formatStats(st outbox.Stats) string {
	return fmt.Sprintf("backlog %d · oldest %s · %.0f published/s · %d published · quarantined %d · %d/%d shards, %d relay%s",
		st.Backlog, st.OldestUnpublished.Round(100*time.Millisecond), st.PublishedPerSecond, st.Published,
		st.Quarantined, st.Shards, outbox.Shards, st.Relays, plural(int64(st.Relays)))
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// idList is a flag of row ids: comma-separated, repeatable.
type idList []int64

func (l *idList) String() string { return fmt.Sprint([]int64(*l)) }

func (l *idList) Set(s string) error {
	for _, part := range splitList(s) {
		id, err := strconv.ParseInt(part, 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("%q is not a row id", part)
		}
		*l = append(*l, id)
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
