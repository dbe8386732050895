package generator

import (
	"fmt"
	"strings"

	"github.com/eventgen/eventgen/templates"
)

// onlyWithSQL skips an emitter's file for a schema that needs no table in
// PostgreSQL: no event consumed into it (a postgres dedup store, or
// exactly once into the database) and no outbox event.
func onlyWithSQL(emit func(*Schema, target) ([]byte, error)) func(*Schema, target) ([]byte, error) {
	return func(s *Schema, t target) ([]byte, error) {
		if len(s.Postgres) == 0 && len(s.Outbox) == 0 {
			return nil, nil
		}
		return emit(s, t)
	}
}

// renderSQL writes every table the schema needs in PostgreSQL, with
// eventgen's default names: the dedup and offsets tables
// (templates.RenderSQL, the text pgdedup.Migrate runs) when events are
// consumed into the database, the outbox table (templates.OutboxDDL, the
// text outbox.Migrate runs) when events go through the outbox. Each part
// is the runtime's text unchanged, so that applying this file or calling
// the Migrate functions gives the same tables.
func renderSQL(s *Schema, t target) ([]byte, error) {
	header, source, err := t.headerLines()
	if err != nil {
		return nil, err
	}
	var parts []string
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n--\n", header, source)
	b.WriteString("-- The PostgreSQL tables the events of package " + s.Package + " need, with\n")
	b.WriteString("-- eventgen's default names. Apply with psql or a migration tool; every\n")
	b.WriteString("-- statement is idempotent (IF NOT EXISTS), so applying it again, or after\n")
	b.WriteString("-- the runtime's Migrate functions, changes nothing.\n")
	if len(s.Postgres) > 0 {
		ddl, err := templates.RenderSQL(templates.SQLTables{})
		if err != nil {
			return nil, err
		}
		parts = append(parts, ddl)
		b.WriteString("--\n")
		writeSQLComment(&b, fmt.Sprintf("%s and %s: the PostgreSQL dedup store (runtime/dedup/pgdedup) of %s. pgdedup.Migrate runs the same SQL; (*pgdedup.Store).RunCleanup deletes expired dedup records in small batches.",
			templates.DefaultDedupTable, templates.DefaultOffsetsTable, consumedIntoPostgres(s.Postgres)))
	}
	if len(s.Outbox) > 0 {
		ddl, err := templates.OutboxDDL(templates.OutboxTable{})
		if err != nil {
			return nil, err
		}
		parts = append(parts, ddl)
		b.WriteString("--\n")
		writeSQLComment(&b, fmt.Sprintf("%s: the transactional outbox (runtime/outbox) of %s: the generated Enqueue<Event> functions write the events in the business transaction, and the relay (outbox.Relay, or eventgen relay) publishes them. outbox.Migrate runs the same SQL.",
			templates.DefaultOutboxTable, eventNames(s.Outbox)))
	}
	for _, p := range parts {
		b.WriteString("\n")
		b.WriteString(p)
	}
	return []byte(b.String()), nil
}

// consumedIntoPostgres lists the events whose handlers write through the
// dedup store's transaction, saying which keep their offsets there too.
func consumedIntoPostgres(evs []*Event) string {
	var deduped, exactly []*Event
	for _, ev := range evs {
		if ev.Consume == ConsumeExactlyOnce {
			exactly = append(exactly, ev)
		} else {
			deduped = append(deduped, ev)
		}
	}
	var out []string
	if len(deduped) > 0 {
		out = append(out, eventNames(deduped)+" (dedup.store: postgres)")
	}
	if len(exactly) > 0 {
		out = append(out, eventNames(exactly)+" (exactly once into PostgreSQL: offsets kept with the effects)")
	}
	return strings.Join(out, ", and ")
}

// eventNames lists the events' schema names: "A", "A and B", "A, B and C".
func eventNames(evs []*Event) string {
	names := make([]string, len(evs))
	for i, ev := range evs {
		names[i] = ev.Name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// writeSQLComment writes text as "-- " lines, wrapped, later lines
// indented under the first.
func writeSQLComment(b *strings.Builder, text string) {
	for i, line := range strings.Split(wrapText(text, 70), "\n") {
		if i > 0 {
			line = "  " + line
		}
		b.WriteString("-- " + line + "\n")
	}
}
