package outbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Shard ownership. The table's rows fall into Shards shards by key (the
// generated shard column). A relay owns a shard by holding the session
// advisory lock (table OID, shard): one owner at a time, so a key's rows
// are published by one relay, in order. A relay that dies loses its
// session, and PostgreSQL releases its locks at once. Each relay also holds
// the shared lock (table OID, Shards) while it runs, so that relays can
// count each other in pg_locks and each take its fair share,
// ceil(Shards / relays).

// presence is the second key of the shared lock every running relay holds.
const presence = Shards

// shardSet is one session's view of the table's shards.
type shardSet struct {
	conn   *pgx.Conn
	oid    uint32         // the table's OID: the first lock key
	owned  map[int16]bool // shards this session holds
	relays int            // live relays at the last rebalance, this one included
}

// key1 is the first advisory lock key: the table's OID as an int4.
func (s *shardSet) key1() int32 { return int32(s.oid) }

// join takes the shared presence lock.
func (s *shardSet) join(ctx context.Context) error {
	var ok bool
	if err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock_shared($1::int4, $2::int4)", s.key1(), int32(presence)).Scan(&ok); err != nil {
		return fmt.Errorf("eventgen: outbox relay: joining the relays: %w", err)
	}
	if !ok {
		return fmt.Errorf("eventgen: outbox relay: the advisory lock (%d, %d) is held exclusively by another session", s.key1(), presence)
	}
	return nil
}

// locksSQL lists the granted advisory locks of the table in this database:
// shard owners and present relays.
const locksSQL = `SELECT objid::int8, pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = $1::oid`

// rebalance counts the live relays and takes free shards, or releases
// owned ones, to own ceil(Shards / relays).
func (s *shardSet) rebalance(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, locksSQL, s.oid)
	if err != nil {
		return fmt.Errorf("eventgen: outbox relay: reading shard locks: %w", err)
	}
	present := map[uint32]bool{}
	taken := make([]bool, Shards)
	var objid int64
	var pid uint32
	_, err = pgx.ForEachRow(rows, []any{&objid, &pid}, func() error {
		switch {
		case objid == presence:
			present[pid] = true
		case objid >= 0 && objid < Shards:
			taken[objid] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("eventgen: outbox relay: reading shard locks: %w", err)
	}
	s.relays = max(len(present), 1)
	fair := (Shards + s.relays - 1) / s.relays
	switch {
	case len(s.owned) > fair:
		extra := s.list()
		rand.Shuffle(len(extra), func(i, j int) { extra[i], extra[j] = extra[j], extra[i] })
		extra = extra[:len(s.owned)-fair]
		if _, err := s.conn.Exec(ctx, "SELECT pg_advisory_unlock($1::int4, s) FROM unnest($2::int4[]) AS s", s.key1(), toInt32(extra)); err != nil {
			return fmt.Errorf("eventgen: outbox relay: releasing shards: %w", err)
		}
		for _, sh := range extra {
			delete(s.owned, sh)
		}
	case len(s.owned) < fair:
		var free []int32
		for sh := range int32(Shards) {
			if !taken[sh] && !s.owned[int16(sh)] {
				free = append(free, sh)
			}
		}
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		free = free[:min(len(free), fair-len(s.owned))]
		if len(free) == 0 {
			return nil
		}
		rows, err := s.conn.Query(ctx, "SELECT s FROM unnest($2::int4[]) AS s WHERE pg_try_advisory_lock($1::int4, s)", s.key1(), free)
		if err != nil {
			return fmt.Errorf("eventgen: outbox relay: taking shards: %w", err)
		}
		var sh int32
		_, err = pgx.ForEachRow(rows, []any{&sh}, func() error {
			s.owned[int16(sh)] = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("eventgen: outbox relay: taking shards: %w", err)
		}
	}
	return nil
}

// list returns the owned shards, sorted.
func (s *shardSet) list() []int16 {
	out := make([]int16, 0, len(s.owned))
	for sh := range s.owned {
		out = append(out, sh)
	}
	slices.Sort(out)
	return out
}

func toInt32(s []int16) []int32 {
	out := make([]int32, len(s))
	for i, v := range s {
		out[i] = int32(v)
	}
	return out
}
