package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// onlyWithPostgres skips an emitter's file for a schema without events
// consumed into PostgreSQL, so that such schemas never link pgx.
func onlyWithPostgres(emit func(*Schema, target) ([]byte, error)) func(*Schema, target) ([]byte, error) {
	return func(s *Schema, t target) ([]byte, error) {
		if len(s.Postgres) == 0 {
			return nil, nil
		}
		return emit(s, t)
	}
}

// emitPostgres writes the PostgreSQL file: the handler types that receive
// the pgx transaction of their event's dedup store, and the Consumer
// methods that register them with a dedup.Store[pgx.Tx] (at least once) or
// a dedup.OffsetStore[pgx.Tx] (exactly once). It is a file of its own so
// that schemas without such events never link pgx.
func emitPostgres(s *Schema) []goPart {
	return []goPart{func(f *jen.File) {
		n := s.Names
		tx := jen.Id("tx").Qual(pgxPkg, "Tx")
		for _, ev := range s.Postgres {
			record, register, store := "AtLeastOnceRecord", "HandleDeduped", "Store"
			storeDoc := "a *pgdedup.Store (or a dedup.Memory[pgx.Tx] in tests, whose tx is nil)."
			if ev.Consume == ConsumeExactlyOnce {
				record, register, store = "ExactlyOnceRecord", "HandleExactlyOnce", "OffsetStore"
				storeDoc = "a *pgdedup.Store, whose database also keeps the group's offsets for the\ntopic (or a dedup.Memory[pgx.Tx] in tests, whose tx is nil)."
			}
			f.Line()
			comment(f, consumerHandlerDoc(ev))
			f.Type().Id(ev.Handler).Func().Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName), tx.Clone(), jen.Id("rec").Add(rtKafka(record))).Error()
			f.Line()
			comment(f, fmt.Sprintf("%s registers the handler for %s events (topic %s).\nThe handler receives the transaction of store: %s", ev.Handle, ev.GoName, ev.Topic, storeDoc))
			f.Func().Params(jen.Id("c").Op("*").Id(n.Consumer)).Id(ev.Handle).Params(
				jen.Id("store").Qual(dedupPkg, store).Index(jen.Qual(pgxPkg, "Tx")), jen.Id("h").Id(ev.Handler),
			).Block(
				rtKafka(register).Call(jen.Id("c").Dot("c"), jen.Op("&").Id(ev.MetaVar), rtEvent("DecodeEvent").Index(jen.Id(ev.GoName)), jen.Id("store"),
					jen.Func().Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName), tx.Clone(), jen.Id("rec").Add(rtKafka(record))).Error().Block(
						jen.Return(jen.Id("h").Call(jen.Id("ctx"), jen.Id("e"), jen.Id("tx"), jen.Id("rec"))),
					)),
			)
		}
	}}
}
