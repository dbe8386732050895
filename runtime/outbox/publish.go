package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka"
)

// failure is a row whose record Kafka did not acknowledge.
type failure struct {
	row *row
	err error
}

// batchResult is what publishing a batch did.
type batchResult struct {
	// acked are the rows Kafka acknowledged: to delete.
	acked []int64
	// failed are the failures that count as an attempt of their row.
	failed []failure
	// outage is set when records failed but none was acknowledged and
	// none rejected for good: Kafka is unreachable rather than the rows
	// bad, so no attempt is counted and the relay pauses.
	outage   bool
	firstErr error
}

// outcome is one record's acknowledgement or error; i indexes the batch.
type outcome struct {
	i   int
	err error
}

// publish sends a batch's rows and waits for their outcomes. A key's rows
// go in waves: the first row of every key, then, once all of those are
// acknowledged, the second row of every key, and so on. A key never has
// two records in flight, so a record that fails (sarama then moves on to
// the next records of the partition) can never be overtaken by its key's
// next one; the key's remaining rows wait for the next batch. Different
// keys' records of one wave are in flight together, so a batch of
// distinct keys is one round of produce requests.
func (r *Relay) publish(ctx context.Context, prod *kafka.AtLeastOnceProducer, rows []row) batchResult {
	ws := waves(rows)
	if r.opts.hooks != nil {
		if r.opts.hooks.publishing != nil {
			r.opts.hooks.publishing(rows)
		}
		if r.opts.hooks.allInFlight {
			ws = [][]int{slices.Concat(ws...)}
			slices.Sort(ws[0])
		}
	}
	var (
		res      batchResult
		fails    []failure
		blocked  = map[string]bool{}
		anyAcked bool
	)
	for _, wave := range ws {
		if ctx.Err() != nil {
			break
		}
		outcomes := make(chan outcome, len(wave)) // callbacks never block, even after a give-up
		sent := 0
		for _, i := range wave {
			rw := &rows[i]
			if rw.key != "" && blocked[rw.key] && (r.opts.hooks == nil || !r.opts.hooks.allInFlight) {
				continue
			}
			rec, err := rw.record()
			if err != nil {
				fails = append(fails, failure{rw, err})
				blocked[rw.key] = true
				continue
			}
			err = prod.SendRawAsync(ctx, rec, func(err error) { outcomes <- outcome{i, err} })
			if err != nil { // ctx done or producer closed: not sent, not an attempt
				blocked[rw.key] = true
				if res.firstErr == nil {
					res.firstErr = err
				}
				continue
			}
			sent++
		}
		got, complete := r.await(ctx, outcomes, sent)
		for _, o := range got {
			rw := &rows[o.i]
			if o.err == nil {
				res.acked = append(res.acked, rw.id)
				anyAcked = true
				continue
			}
			fails = append(fails, failure{rw, o.err})
			blocked[rw.key] = true
			if r.opts.hooks != nil && r.opts.hooks.failed != nil {
				r.opts.hooks.failed(rw, o.err)
			}
		}
		if !complete {
			// Shutdown timed out: rows whose outcome is unknown stay
			// unpublished and will be sent again (same ce_id).
			break
		}
	}
	shutdown := ctx.Err() != nil
	for _, f := range fails {
		if res.firstErr == nil {
			res.firstErr = f.err
		}
		if errors.Is(f.err, kafka.ErrRejected) || errors.Is(f.err, errBadRow) || (anyAcked && !shutdown) {
			res.failed = append(res.failed, f)
		}
	}
	res.outage = len(fails) > 0 && len(res.acked) == 0 && len(res.failed) == 0
	return res
}

// await collects n outcomes. When ctx is done it waits ShutdownTimeout
// more, then returns what it has and false.
func (r *Relay) await(ctx context.Context, outcomes <-chan outcome, n int) ([]outcome, bool) {
	got := make([]outcome, 0, n)
	done := ctx.Done()
	var giveUp <-chan time.Time
	for len(got) < n {
		select {
		case o := <-outcomes:
			got = append(got, o)
		case <-done:
			done = nil
			t := time.NewTimer(r.opts.ShutdownTimeout)
			defer t.Stop()
			giveUp = t.C
		case <-giveUp:
			return got, false
		}
	}
	return got, true
}

// waves groups the batch's row indexes: wave k holds the k-th row of every
// key, in id order. Rows without a key (events whose schema names none)
// have no order to keep: they all go in the first wave.
func waves(rows []row) [][]int {
	seen := make(map[string]int, len(rows))
	var ws [][]int
	for i := range rows {
		k := 0
		if rows[i].key != "" {
			k = seen[rows[i].key]
			seen[rows[i].key] = k + 1
		}
		if k == len(ws) {
			ws = append(ws, make([]int, 0, len(rows)/(k+1)))
		}
		ws[k] = append(ws[k], i)
	}
	return ws
}

// errBadRow is matched by the failure of a row whose headers are not a JSON
// object of strings (written by something other than Enqueue): it can never
// be published as it is, so it spends attempts until quarantined.
var errBadRow = errors.New("eventgen: malformed outbox row")

// record returns the Kafka record of the row.
func (rw *row) record() (kafka.RawRecord, error) {
	hs, err := parseHeaders(rw.headers)
	if err != nil {
		return kafka.RawRecord{}, fmt.Errorf("%w: headers: %w", errBadRow, err)
	}
	return kafka.RawRecord{Topic: rw.topic, Key: []byte(rw.key), Headers: hs, Value: rw.payload}, nil
}

// parseHeaders decodes the headers column, a JSON object of strings, in
// its order (jsonb's, which is stable). It is the relay's per-row hot
// path, hence no reflection: values without escapes are slices of b.
func parseHeaders(b []byte) ([]event.Header, error) {
	p := jsonScanner{b: b}
	if !p.consume('{') {
		return nil, errors.New("not a JSON object")
	}
	hs := make([]event.Header, 0, 8)
	if p.consume('}') {
		return hs, p.end()
	}
	for {
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if !p.consume(':') {
			return nil, errors.New("missing ':' after a header name")
		}
		v, err := p.str()
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		hs = append(hs, event.Header{Key: string(k), Value: v})
		if p.consume('}') {
			return hs, p.end()
		}
		if !p.consume(',') {
			return nil, errors.New("missing ',' between headers")
		}
	}
}

// jsonScanner reads the tokens parseHeaders needs.
type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) skipSpace() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

// consume skips spaces and then c, reporting whether c was there.
func (p *jsonScanner) consume(c byte) bool {
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports trailing bytes after the object.
func (p *jsonScanner) end() error {
	p.skipSpace()
	if p.i != len(p.b) {
		return errors.New("bytes after the JSON object")
	}
	return nil
}

// str reads a JSON string; one with escapes is decoded by encoding/json.
func (p *jsonScanner) str() ([]byte, error) {
	if !p.consume('"') {
		return nil, errors.New("not a JSON string")
	}
	start, escaped := p.i, false
	for ; p.i < len(p.b); p.i++ {
		switch p.b[p.i] {
		case '\\':
			escaped = true
			p.i++
		case '"':
			raw := p.b[start:p.i]
			p.i++
			if !escaped {
				return raw, nil
			}
			var s string
			if err := json.Unmarshal(p.b[start-1:p.i], &s); err != nil {
				return nil, err
			}
			return []byte(s), nil
		}
	}
	return nil, errors.New("unterminated JSON string")
}
