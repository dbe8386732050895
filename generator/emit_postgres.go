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
// a dedup.OffsetStore[pgx.Tx] (exactly once), each with its batch form
// (a dedup.BatchStore or BatchOffsetStore). It is a file of its own so
// that schemas without such events never link pgx.
func emitPostgres(s *Schema) []goPart {
	return []goPart{func(f *jen.File) {
		n := s.Names
		tx := jen.Id("tx").Qual(pgxPkg, "Tx")
		for _, ev := range s.Postgres {
			record, register, store := "AtLeastOnceRecord", "HandleDeduped", "Store"
			registerBatch, batchStore := "HandleDedupedBatch", "BatchStore"
			storeDoc := "a *pgdedup.Store (or a dedup.Memory[pgx.Tx] in tests, whose tx is nil)."
			if ev.Consume == ConsumeExactlyOnce {
				record, register, store = "ExactlyOnceRecord", "HandleExactlyOnce", "OffsetStore"
				registerBatch, batchStore = "HandleExactlyOnceBatch", "BatchOffsetStore"
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
			emitBatchHandler(f, n, ev, record, registerBatch, batchStore, storeDoc)
		}
	}}
}

// emitBatchHandler writes the batch handler type of ev, an event consumed
// into PostgreSQL, and the Consumer method registering one.
func emitBatchHandler(f *jen.File, n PackageNames, ev *Event, record, register, store, storeDoc string) {
	tx := jen.Id("tx").Qual(pgxPkg, "Tx")
	params := func() []jen.Code {
		return []jen.Code{ctx.Clone(), tx.Clone(), jen.Id("events").Index().Op("*").Id(ev.GoName), jen.Id("recs").Index().Add(rtKafka(record))}
	}
	f.Line()
	comment(f, fmt.Sprintf("%s handles %s events in batches, for effects written with one\n"+
		"statement per batch (a multi-row INSERT, say) instead of one per event. It\n"+
		"receives the new events of a batch of a partition's records, in offset\n"+
		"order (redeliveries already filtered out by the dedup store), with their\n"+
		"records, in tx, the transaction that records them as processed. It must\n"+
		"apply exactly the effects of the events it is given and fail as a whole by\n"+
		"returning an error: its effects are then rolled back and it is called\n"+
		"again with fewer events until the failing event is found, alone; the\n"+
		"events before it commit once, that event's error is handled as %s's\n"+
		"would be, and the events after it run again later.", ev.BatchHandler, ev.GoName, ev.Handler))
	f.Type().Id(ev.BatchHandler).Func().Params(params()...).Error()
	f.Line()
	comment(f, fmt.Sprintf("%s registers a batch handler for %s events (topic %s),\ninstead of %s: see docs/dedup.md for when to choose one.\nThe handler receives the transaction of store: %s", ev.HandleBatch, ev.GoName, ev.Topic, ev.Handle, storeDoc))
	f.Func().Params(jen.Id("c").Op("*").Id(n.Consumer)).Id(ev.HandleBatch).Params(
		jen.Id("store").Qual(dedupPkg, store).Index(jen.Qual(pgxPkg, "Tx")), jen.Id("h").Id(ev.BatchHandler),
	).Block(
		rtKafka(register).Call(jen.Id("c").Dot("c"), jen.Op("&").Id(ev.MetaVar), rtEvent("DecodeEvent").Index(jen.Id(ev.GoName)), jen.Id("store"),
			jen.Func().Params(params()...).Error().Block(
				jen.Return(jen.Id("h").Call(jen.Id("ctx"), jen.Id("tx"), jen.Id("events"), jen.Id("recs"))),
			)),
	)
}
