package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// emitKafka writes the Kafka file: a Producer whose Send methods use the
// producer each event's guarantee requires, a Consumer whose handler types
// carry the guarantee (a handler for one guarantee does not compile where
// another is required), and one Run function per pipeline.
func emitKafka(s *Schema, f *jen.File) {
	byGuarantee := map[Guarantee][]*Event{}
	for _, ev := range s.Events {
		byGuarantee[ev.Guarantee] = append(byGuarantee[ev.Guarantee], ev)
	}
	emitProducer(f, s, byGuarantee)
	if len(byGuarantee[AtMostOnce])+len(byGuarantee[AtLeastOnce]) > 0 {
		emitConsumer(f, s, byGuarantee)
	}
	for _, p := range s.Pipelines {
		emitPipeline(f, p)
	}
}

var producerField = map[Guarantee]struct{ field, typ, ctor string }{
	AtMostOnce:  {"atMostOnce", "AtMostOnceProducer", "NewAtMostOnceProducer"},
	AtLeastOnce: {"atLeastOnce", "AtLeastOnceProducer", "NewAtLeastOnceProducer"},
	ExactlyOnce: {"transactional", "TransactionalProducer", "NewTransactionalProducer"},
}

var ctx = jen.Id("ctx").Qual("context", "Context")

func emitProducer(f *jen.File, s *Schema, byG map[Guarantee][]*Event) {
	var present []Guarantee
	for _, g := range []Guarantee{AtMostOnce, AtLeastOnce, ExactlyOnce} {
		if len(byG[g]) > 0 {
			present = append(present, g)
		}
	}
	f.Line()
	comment(f, fmt.Sprintf("Producer sends the events of package %s, each through the producer its\nguarantee requires: at-most-once events fire and forget (acks=0),\nat-least-once events wait for an idempotent acks=all write, exactly-once\nevents go through transactions (Begin, InTx). It is safe for concurrent use.", s.Package))
	f.Type().Id("Producer").StructFunc(func(g *jen.Group) {
		for _, gu := range present {
			pf := producerField[gu]
			g.Id(pf.field).Op("*").Add(rt(pf.typ))
		}
	})
	eos := len(byG[ExactlyOnce]) > 0
	f.Line()
	params := []jen.Code{jen.Id("cfg").Add(rt("Config"))}
	doc := "NewProducer connects the producers this schema's guarantees need."
	if eos {
		params = append(params, jen.Id("transactionalID").String())
		doc += "\ntransactionalID names this instance's transactional producer: keep it\nstable across restarts of one instance and unique among instances, so\nthat a restarted instance fences its zombie predecessor."
	}
	comment(f, doc)
	f.Func().Id("NewProducer").Params(params...).Params(jen.Op("*").Id("Producer"), jen.Error()).BlockFunc(func(g *jen.Group) {
		g.Id("p").Op(":=").Op("&").Id("Producer").Values()
		g.Var().Err().Error()
		for _, gu := range present {
			pf := producerField[gu]
			args := []jen.Code{jen.Id("cfg")}
			if gu == ExactlyOnce {
				args = append(args, jen.Id("transactionalID"))
			}
			g.If(
				jen.List(jen.Id("p").Dot(pf.field), jen.Err()).Op("=").Add(rt(pf.ctor)).Call(args...),
				jen.Err().Op("!=").Nil(),
			).Block(
				jen.Id("p").Dot("Close").Call(),
				jen.Return(jen.Nil(), jen.Err()),
			)
		}
		g.Return(jen.Id("p"), jen.Nil())
	})
	f.Line()
	f.Comment("Close flushes what is buffered and closes the producers.")
	f.Func().Params(jen.Id("p").Op("*").Id("Producer")).Id("Close").Params().Error().BlockFunc(func(g *jen.Group) {
		g.Var().Id("errs").Index().Error()
		for _, gu := range present {
			field := jen.Id("p").Dot(producerField[gu].field)
			g.If(field.Clone().Op("!=").Nil()).Block(
				jen.Id("errs").Op("=").Append(jen.Id("errs"), field.Clone().Dot("Close").Call()),
			)
		}
		g.Return(jen.Qual("errors", "Join").Call(jen.Id("errs").Op("...")))
	})
	recv := jen.Id("p").Op("*").Id("Producer")
	for _, ev := range byG[AtMostOnce] {
		f.Line()
		comment(f, sendDoc(ev, fmt.Sprintf("Send%s validates e and hands it to the at-most-once producer without\nwaiting for the network: it may be lost, and drops are counted.", ev.GoName)))
		f.Func().Params(recv.Clone()).Id("Send"+ev.GoName).Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
			jen.Return(jen.Id("p").Dot("atMostOnce").Dot("Send").Call(jen.Id("ctx"), jen.Id("e"))),
		)
	}
	for _, ev := range byG[AtLeastOnce] {
		f.Line()
		comment(f, sendDoc(ev, fmt.Sprintf("Send%s validates e and returns once Kafka has acknowledged it on all\nin-sync replicas, or with an error the caller can act on (retry, fail the\nrequest). Retries inside the producer are idempotent: they never duplicate.", ev.GoName)))
		f.Func().Params(recv.Clone()).Id("Send"+ev.GoName).Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
			jen.Return(jen.Id("p").Dot("atLeastOnce").Dot("Send").Call(jen.Id("ctx"), jen.Id("e"))),
		)
		f.Line()
		comment(f, sendDoc(ev, fmt.Sprintf("Send%sAsync validates e and queues it without waiting: done is called\nonce with the outcome (nil once acknowledged) from a producer goroutine.\nBack-to-back calls batch like a hand-written sarama pipeline. It returns\nan error, and does not call done, if e is invalid or cannot be queued.", ev.GoName)))
		f.Func().Params(recv.Clone()).Id("Send"+ev.GoName+"Async").Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName), jen.Id("done").Func().Params(jen.Error())).Error().Block(
			jen.Return(jen.Id("p").Dot("atLeastOnce").Dot("SendAsync").Call(jen.Id("ctx"), jen.Id("e"), jen.Id("done"))),
		)
	}
	if !eos {
		return
	}
	f.Line()
	comment(f, "Tx is an open Kafka transaction: the events sent through it become visible\nto read_committed consumers together on Commit, or not at all.")
	f.Type().Id("Tx").Struct(jen.Id("txn").Op("*").Add(rt("Txn")))
	f.Line()
	comment(f, "Begin opens a transaction. One transaction is open at a time per Producer;\nend it with Commit or Abort.")
	f.Func().Params(recv.Clone()).Id("Begin").Params(ctx.Clone()).Params(jen.Op("*").Id("Tx"), jen.Error()).Block(
		jen.List(jen.Id("txn"), jen.Err()).Op(":=").Id("p").Dot("transactional").Dot("Begin").Call(jen.Id("ctx")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Op("&").Id("Tx").Values(jen.Id("txn")), jen.Nil()),
	)
	f.Line()
	comment(f, "InTx runs fn in a transaction: it commits if fn returns nil and aborts\notherwise, so that nothing fn sent is ever partly visible.")
	f.Func().Params(recv.Clone()).Id("InTx").Params(ctx.Clone(), jen.Id("fn").Func().Params(jen.Id("tx").Op("*").Id("Tx")).Error()).Error().Block(
		jen.Return(jen.Id("p").Dot("transactional").Dot("InTxn").Call(jen.Id("ctx"), jen.Func().Params(jen.Id("txn").Op("*").Add(rt("Txn"))).Error().Block(
			jen.Return(jen.Id("fn").Call(jen.Op("&").Id("Tx").Values(jen.Id("txn")))),
		))),
	)
	for _, ev := range byG[ExactlyOnce] {
		f.Line()
		comment(f, sendDoc(ev, fmt.Sprintf("Send%s adds e to the transaction.", ev.GoName)))
		f.Func().Params(jen.Id("tx").Op("*").Id("Tx")).Id("Send" + ev.GoName).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
			jen.Return(jen.Id("tx").Dot("txn").Dot("Send").Call(jen.Id("e"))),
		)
	}
	f.Line()
	f.Comment("Commit makes every event of the transaction visible at once.")
	f.Func().Params(jen.Id("tx").Op("*").Id("Tx")).Id("Commit").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("tx").Dot("txn").Dot("Commit").Call(jen.Id("ctx"))),
	)
	f.Line()
	f.Comment("Abort discards every event of the transaction.")
	f.Func().Params(jen.Id("tx").Op("*").Id("Tx")).Id("Abort").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("tx").Dot("txn").Dot("Abort").Call(jen.Id("ctx"))),
	)
}

// sendDoc adds the event's deprecation to a send method's doc, so that
// linters flag code that still produces a deprecated event.
func sendDoc(ev *Event, doc string) string {
	return docComment(doc, "", ev.Deprecated, ev.GoName)
}

var recordType = map[Guarantee]string{
	AtMostOnce:  "AtMostOnceRecord",
	AtLeastOnce: "AtLeastOnceRecord",
}

var handleFunc = map[Guarantee]string{
	AtMostOnce:  "HandleAtMostOnce",
	AtLeastOnce: "HandleAtLeastOnce",
}

var handlerDoc = map[Guarantee]string{
	AtMostOnce:  "The record's offset is committed before the handler runs: a crash or an\nerror loses the event (errors are counted as dropped), it is never redelivered.",
	AtLeastOnce: "The offset is committed after the handler returns nil: a crash redelivers\nthe event, so the handler must tolerate duplicates. An error is retried\nwith backoff, then the record goes to the dead-letter topic.",
}

func emitConsumer(f *jen.File, s *Schema, byG map[Guarantee][]*Event) {
	f.Line()
	comment(f, fmt.Sprintf("Consumer reads the events of package %s and dispatches them to typed\nhandlers, committing offsets as each event's guarantee requires. Register\nhandlers, then call Run. Exactly-once events are consumed through the\ngenerated pipeline functions.", s.Package))
	f.Type().Id("Consumer").Struct(jen.Id("c").Op("*").Add(rt("Consumer")))
	f.Line()
	f.Comment("NewConsumer creates a consumer in the group cfg.GroupID.")
	f.Func().Id("NewConsumer").Params(jen.Id("cfg").Add(rt("ConsumerConfig"))).Params(jen.Op("*").Id("Consumer"), jen.Error()).Block(
		jen.List(jen.Id("c"), jen.Err()).Op(":=").Add(rt("NewConsumer")).Call(jen.Id("cfg")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Op("&").Id("Consumer").Values(jen.Id("c")), jen.Nil()),
	)
	f.Line()
	comment(f, "Run consumes until ctx is done, then finishes the handler in flight,\ncommits and closes. It returns an error if the consumer cannot go on.")
	f.Func().Params(jen.Id("c").Op("*").Id("Consumer")).Id("Run").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Run").Call(jen.Id("ctx"))),
	)
	for _, g := range []Guarantee{AtMostOnce, AtLeastOnce} {
		for _, ev := range byG[g] {
			handler := ev.GoName + "Handler"
			f.Line()
			comment(f, fmt.Sprintf("%s handles %s, an %s event.\n%s", handler, ev.GoName, g, handlerDoc[g]))
			f.Type().Id(handler).Func().Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName), jen.Id("rec").Add(rt(recordType[g]))).Error()
			f.Line()
			f.Commentf("Handle%s registers the handler for %s events (topic %s).", ev.GoName, ev.GoName, ev.Topic)
			f.Func().Params(jen.Id("c").Op("*").Id("Consumer")).Id("Handle" + ev.GoName).Params(jen.Id("h").Id(handler)).Block(
				rt(handleFunc[g]).Call(jen.Id("c").Dot("c"), jen.Op("&").Id(ev.MetaVar), rt("DecodeEvent").Index(jen.Id(ev.GoName)), jen.Id("h")),
			)
		}
	}
}

func emitPipeline(f *jen.File, p *Pipeline) {
	emitter := p.GoName + "Emitter"
	handler := p.GoName + "Handler"
	f.Line()
	comment(f, fmt.Sprintf("%s sends the events pipeline %s produces. What it emits is\ncommitted in one Kafka transaction with the consumed offset.", emitter, p.Name))
	f.Type().Id(emitter).Struct(jen.Id("em").Op("*").Add(rt("Emitter")))
	for _, ev := range p.Produces {
		f.Line()
		f.Commentf("Emit%s adds e to the pipeline's current transaction.", ev.GoName)
		f.Func().Params(jen.Id("o").Id(emitter)).Id("Emit" + ev.GoName).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
			jen.Return(jen.Id("o").Dot("em").Dot("Emit").Call(jen.Id("e"))),
		)
	}
	f.Line()
	comment(f, fmt.Sprintf("%s transforms one %s into the events it emits. It may run\nagain for the same input after a crash or rebalance, but only one run's\noutput is ever committed; side effects outside Kafka are not covered.", handler, p.Consumes.GoName))
	f.Type().Id(handler).Func().Params(ctx.Clone(), jen.Id("in").Op("*").Id(p.Consumes.GoName), jen.Id("out").Id(emitter)).Error()
	f.Line()
	lead := fmt.Sprintf("Run%s runs pipeline %s exactly-once until ctx is done: it reads\n%s read_committed and commits each batch's output and consumed\noffsets in one transaction.", p.GoName, p.Name, p.Consumes.Topic)
	comment(f, docComment(lead, p.Doc, false, ""))
	f.Func().Id("Run"+p.GoName).Params(ctx.Clone(), jen.Id("cfg").Add(rt("PipelineConfig")), jen.Id("h").Id(handler)).Error().Block(
		jen.Id("produces").Op(":=").Index().Op("*").Add(rt("EventType")).ValuesFunc(func(g *jen.Group) {
			for _, ev := range p.Produces {
				g.Op("&").Id(ev.MetaVar)
			}
		}),
		jen.Return(rt("RunPipeline").Call(
			jen.Id("ctx"), jen.Id("cfg"), jen.Op("&").Id(p.Consumes.MetaVar), jen.Id("produces"),
			rt("DecodeEvent").Index(jen.Id(p.Consumes.GoName)),
			jen.Func().Params(ctx.Clone(), jen.Id("in").Op("*").Id(p.Consumes.GoName), jen.Id("em").Op("*").Add(rt("Emitter"))).Error().Block(
				jen.Return(jen.Id("h").Call(jen.Id("ctx"), jen.Id("in"), jen.Id(emitter).Values(jen.Id("em")))),
			),
		)),
	)
}
