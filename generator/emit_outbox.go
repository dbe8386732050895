package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

const (
	outboxPkg     = "github.com/eventgen/eventgen/runtime/outbox"
	pgxImportPath = "github.com/jackc/pgx/v5"
)

// emitOutbox writes the outbox file: one Enqueue function per event with
// `outbox: true`, writing the event in the caller's pgx transaction. It is
// a file of its own, generated only for schemas with outbox events, so that
// no other schema's package links pgx.
func emitOutbox(s *Schema) []goPart {
	return []goPart{func(f *jen.File) {
		f.ImportName(outboxPkg, "outbox")
		f.ImportName(pgxImportPath, "pgx")
		for _, ev := range s.Outbox {
			emitEnqueue(f, ev)
		}
	}}
}

func emitEnqueue(f *jen.File, ev *Event) {
	f.Line()
	comment(f, sendDoc(ev, fmt.Sprintf(`%s writes e to the transactional outbox inside tx, the
transaction of the business write it belongs to. A relay (outbox.Relay,
or eventgen relay) publishes it if and only if tx commits, with the
CloudEvents id assigned now, which a republication keeps. Write the
entity through tx first, then enqueue: a key's events are published in
enqueue order (docs/outbox.md).`, ev.Enqueue)))
	f.Func().Id(ev.Enqueue).Params(ctx.Clone(), jen.Id("tx").Qual(pgxImportPath, "Tx"), jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
		jen.Return(jen.Qual(outboxPkg, "Enqueue").Call(jen.Id("ctx"), jen.Id("tx"), jen.Id("e"))),
	)
}

// onlyWithOutbox makes emit produce no file for a schema without outbox
// events.
func onlyWithOutbox(emit func(*Schema, target) ([]byte, error)) func(*Schema, target) ([]byte, error) {
	return func(s *Schema, t target) ([]byte, error) {
		if len(s.Outbox) == 0 {
			return nil, nil
		}
		return emit(s, t)
	}
}
