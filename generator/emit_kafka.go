package generator

import (
	"fmt"
	"strings"

	"github.com/dave/jennifer/jen"

	"github.com/eventgen/eventgen/runtime/event"
)

// emitKafka writes the Kafka file: a Producer whose Send methods use the
// producer each event's guarantee requires (and the Sender interface it
// implements, for fakes), a Consumer whose handler types carry the guarantee
// (a handler for one guarantee does not compile where another is required),
// and one Run function per pipeline.
func emitKafka(s *Schema, f *jen.File) {
	byGuarantee := map[event.Guarantee][]*Event{}
	for _, ev := range s.Events {
		byGuarantee[ev.Guarantee] = append(byGuarantee[ev.Guarantee], ev)
	}
	emitSender(f, s, byGuarantee)
	emitProducer(f, s, byGuarantee)
	if len(byGuarantee[event.AtMostOnce])+len(byGuarantee[event.AtLeastOnce]) > 0 {
		emitConsumer(f, s, byGuarantee)
	}
	for _, p := range s.Pipelines {
		emitPipeline(f, p)
	}
}

var producerField = map[event.Guarantee]struct{ field, typ, ctor string }{
	event.AtMostOnce:  {"atMostOnce", "AtMostOnceProducer", "NewAtMostOnceProducer"},
	event.AtLeastOnce: {"atLeastOnce", "AtLeastOnceProducer", "NewAtLeastOnceProducer"},
	event.ExactlyOnce: {"transactional", "TransactionalProducer", "NewTransactionalProducer"},
}

var ctx = jen.Id("ctx").Qual("context", "Context")

// sendDocs are the doc comments of the Send methods, by guarantee.
var sendDocs = map[event.Guarantee]string{
	event.AtMostOnce:  "Send%s validates e and hands it to the at-most-once producer without\nwaiting for the network: it may be lost, and drops are counted.",
	event.AtLeastOnce: "Send%s validates e and returns once Kafka has acknowledged it on all\nin-sync replicas, or with an error the caller can act on (retry, fail the\nrequest). Retries inside the producer are idempotent: they never duplicate.",
	event.ExactlyOnce: "Send%s adds e to the transaction.",
}

const sendAsyncDoc = "Send%sAsync validates e and queues it without waiting: done is called\nonce with the outcome (nil once acknowledged) from a producer goroutine.\nBack-to-back calls batch like a hand-written sarama pipeline. It returns\nan error, and does not call done, if e is invalid or cannot be queued."

// sendParams are the parameters of a producer's Send method for ev.
func sendParams(ev *Event) []jen.Code {
	return []jen.Code{ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName)}
}

func sendAsyncParams(ev *Event) []jen.Code {
	return append(sendParams(ev), jen.Id("done").Func().Params(jen.Error()))
}

// emitSender writes the interfaces a service's code depends on instead of
// the concrete Producer, so that its tests can pass a fake (as sqlc's
// emit_interface does for queries).
func emitSender(f *jen.File, s *Schema, byG map[event.Guarantee][]*Event) {
	eos := len(byG[event.ExactlyOnce]) > 0
	f.Line()
	doc := fmt.Sprintf("Sender is what Producer does, as an interface: code that sends the events\nof package %s can take a Sender, and its tests a fake.", s.Package)
	comment(f, doc)
	f.Type().Id("Sender").InterfaceFunc(func(g *jen.Group) {
		m := &interfaceMethods{g: g}
		for _, gu := range []event.Guarantee{event.AtMostOnce, event.AtLeastOnce} {
			for _, ev := range byG[gu] {
				m.add(sendDoc(ev, fmt.Sprintf("Send%s sends one %s; see Producer.Send%s.", ev.GoName, ev.GoName, ev.GoName)),
					jen.Id("Send"+ev.GoName).Params(sendParams(ev)...).Error())
				if gu == event.AtLeastOnce {
					m.add(sendDoc(ev, fmt.Sprintf("Send%sAsync queues one %s; see Producer.Send%sAsync.", ev.GoName, ev.GoName, ev.GoName)),
						jen.Id("Send"+ev.GoName+"Async").Params(sendAsyncParams(ev)...).Error())
				}
			}
		}
		if eos {
			m.add("Begin opens a transaction; see Producer.Begin.",
				jen.Id("Begin").Params(ctx.Clone()).Params(jen.Id("Tx"), jen.Error()))
			m.add("InTx runs fn in a transaction; see Producer.InTx.",
				jen.Id("InTx").Params(ctx.Clone(), jen.Id("fn").Func().Params(jen.Id("tx").Id("Tx")).Error()).Error())
		}
	})
	f.Line()
	f.Var().Id("_").Id("Sender").Op("=").Parens(jen.Op("*").Id("Producer")).Parens(jen.Nil())
	if !eos {
		return
	}
	f.Line()
	comment(f, "Tx is an open Kafka transaction: the events sent through it become visible\nto read_committed consumers together on Commit, or not at all. It is an\ninterface for the same reason as Sender.")
	f.Type().Id("Tx").InterfaceFunc(func(g *jen.Group) {
		m := &interfaceMethods{g: g}
		for _, ev := range byG[event.ExactlyOnce] {
			m.add(sendDoc(ev, fmt.Sprintf(sendDocs[event.ExactlyOnce], ev.GoName)),
				jen.Id("Send"+ev.GoName).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error())
		}
		m.add("Commit makes every event of the transaction visible at once.", jen.Id("Commit").Params(ctx.Clone()).Error())
		m.add("Abort discards every event of the transaction.", jen.Id("Abort").Params(ctx.Clone()).Error())
	})
}

func emitProducer(f *jen.File, s *Schema, byG map[event.Guarantee][]*Event) {
	var present []event.Guarantee
	for _, g := range []event.Guarantee{event.AtMostOnce, event.AtLeastOnce, event.ExactlyOnce} {
		if len(byG[g]) > 0 {
			present = append(present, g)
		}
	}
	eos := len(byG[event.ExactlyOnce]) > 0
	f.Line()
	doc := fmt.Sprintf("Producer sends the events of package %s, each through the producer its\nguarantee requires: at-most-once events fire and forget (acks=0),\nat-least-once events wait for an idempotent acks=all write", s.Package)
	if eos {
		doc += ", exactly-once\nevents go through transactions (Begin, InTx)"
	}
	comment(f, doc+". It is safe for concurrent use.")
	f.Type().Id("Producer").StructFunc(func(g *jen.Group) {
		for _, gu := range present {
			pf := producerField[gu]
			g.Id(pf.field).Op("*").Add(rtKafka(pf.typ))
		}
	})
	f.Line()
	doc = "NewProducer connects the producers this schema's guarantees need."
	if eos {
		doc += "\ncfg.TransactionalID is required: it names this instance's transactional\nproducer (see kafka.ProducerConfig)."
	} else {
		doc += "\nThe schema has no exactly-once events, so cfg.TransactionalID is unused."
	}
	comment(f, doc)
	f.Func().Id("NewProducer").Params(jen.Id("cfg").Add(rtKafka("ProducerConfig"))).Params(jen.Op("*").Id("Producer"), jen.Error()).BlockFunc(func(g *jen.Group) {
		g.Id("p").Op(":=").Op("&").Id("Producer").Values()
		g.Var().Err().Error()
		for _, gu := range present {
			pf := producerField[gu]
			arg := jen.Id("cfg").Dot("Config")
			if gu == event.ExactlyOnce {
				arg = jen.Id("cfg")
			}
			g.If(
				jen.List(jen.Id("p").Dot(pf.field), jen.Err()).Op("=").Add(rtKafka(pf.ctor)).Call(arg),
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
	for _, gu := range []event.Guarantee{event.AtMostOnce, event.AtLeastOnce} {
		for _, ev := range byG[gu] {
			f.Line()
			comment(f, sendDoc(ev, fmt.Sprintf(sendDocs[gu], ev.GoName)))
			f.Func().Params(recv.Clone()).Id("Send" + ev.GoName).Params(sendParams(ev)...).Error().Block(
				jen.Return(jen.Id("p").Dot(producerField[gu].field).Dot("Send").Call(jen.Id("ctx"), jen.Id("e"))),
			)
			if gu != event.AtLeastOnce {
				continue
			}
			f.Line()
			comment(f, sendDoc(ev, fmt.Sprintf(sendAsyncDoc, ev.GoName)))
			f.Func().Params(recv.Clone()).Id("Send" + ev.GoName + "Async").Params(sendAsyncParams(ev)...).Error().Block(
				jen.Return(jen.Id("p").Dot("atLeastOnce").Dot("SendAsync").Call(jen.Id("ctx"), jen.Id("e"), jen.Id("done"))),
			)
		}
	}
	if eos {
		emitTx(f, byG[event.ExactlyOnce])
	}
}

// emitTx writes Begin and InTx and the unexported implementation of Tx.
func emitTx(f *jen.File, events []*Event) {
	recv := jen.Id("p").Op("*").Id("Producer")
	f.Line()
	comment(f, "Begin opens a transaction. One transaction is open at a time per Producer;\nend it with Commit or Abort.")
	f.Func().Params(recv.Clone()).Id("Begin").Params(ctx.Clone()).Params(jen.Id("Tx"), jen.Error()).Block(
		jen.List(jen.Id("tx"), jen.Err()).Op(":=").Id("p").Dot("transactional").Dot("Begin").Call(jen.Id("ctx")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Id(txImpl).Values(jen.Id("tx")), jen.Nil()),
	)
	f.Line()
	comment(f, "InTx runs fn in a transaction: it commits if fn returns nil and aborts\notherwise, so that nothing fn sent is ever partly visible.")
	f.Func().Params(recv.Clone()).Id("InTx").Params(ctx.Clone(), jen.Id("fn").Func().Params(jen.Id("tx").Id("Tx")).Error()).Error().Block(
		jen.Return(jen.Id("p").Dot("transactional").Dot("InTx").Call(jen.Id("ctx"), jen.Func().Params(jen.Id("tx").Op("*").Add(rtKafka("Tx"))).Error().Block(
			jen.Return(jen.Id("fn").Call(jen.Id(txImpl).Values(jen.Id("tx")))),
		))),
	)
	f.Line()
	f.Commentf("%s implements Tx with the runtime's transaction.", txImpl)
	f.Type().Id(txImpl).Struct(jen.Id("tx").Op("*").Add(rtKafka("Tx")))
	txRecv := jen.Id("t").Id(txImpl)
	for _, ev := range events {
		f.Line()
		f.Func().Params(txRecv.Clone()).Id("Send" + ev.GoName).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
			jen.Return(jen.Id("t").Dot("tx").Dot("Send").Call(jen.Id("e"))),
		)
	}
	f.Line()
	f.Func().Params(txRecv.Clone()).Id("Commit").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("t").Dot("tx").Dot("Commit").Call(jen.Id("ctx"))),
	)
	f.Line()
	f.Func().Params(txRecv.Clone()).Id("Abort").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("t").Dot("tx").Dot("Abort").Call(jen.Id("ctx"))),
	)
}

// interfaceMethods writes an interface's methods, each after its doc and
// a blank line between them.
type interfaceMethods struct {
	g *jen.Group
	n int
}

func (m *interfaceMethods) add(doc string, method *jen.Statement) {
	if m.n > 0 {
		m.g.Line()
	}
	m.n++
	for _, line := range strings.Split(doc, "\n") {
		m.g.Comment(line)
	}
	m.g.Add(method)
}

// txImpl is the unexported type behind the generated Tx interface.
const txImpl = "producerTx"

// sendDoc adds the event's deprecation to a send method's doc, so that
// linters flag code that still produces a deprecated event.
func sendDoc(ev *Event, doc string) string {
	return docComment(doc, "", ev.Deprecated, ev.GoName)
}

var recordType = map[event.Guarantee]string{
	event.AtMostOnce:  "AtMostOnceRecord",
	event.AtLeastOnce: "AtLeastOnceRecord",
}

var handleFunc = map[event.Guarantee]string{
	event.AtMostOnce:  "HandleAtMostOnce",
	event.AtLeastOnce: "HandleAtLeastOnce",
}

var handlerDoc = map[event.Guarantee]string{
	event.AtMostOnce:  "The record's offset is committed before the handler runs: a crash or an\nerror loses the event (errors are counted as dropped), it is never redelivered.",
	event.AtLeastOnce: "The offset is committed after the handler returns nil: a crash redelivers\nthe event, so the handler must tolerate duplicates. An error is retried\nwith backoff, then the record goes to the dead-letter topic.",
}

func emitConsumer(f *jen.File, s *Schema, byG map[event.Guarantee][]*Event) {
	f.Line()
	comment(f, fmt.Sprintf("Consumer reads the events of package %s and dispatches them to typed\nhandlers, committing offsets as each event's guarantee requires. Register\nhandlers, then call Run. Exactly-once events are consumed through the\ngenerated pipeline functions.", s.Package))
	f.Type().Id("Consumer").Struct(jen.Id("c").Op("*").Add(rtKafka("Consumer")))
	f.Line()
	f.Comment("NewConsumer creates a consumer in the group cfg.GroupID.")
	f.Func().Id("NewConsumer").Params(jen.Id("cfg").Add(rtKafka("ConsumerConfig"))).Params(jen.Op("*").Id("Consumer"), jen.Error()).Block(
		jen.List(jen.Id("c"), jen.Err()).Op(":=").Add(rtKafka("NewConsumer")).Call(jen.Id("cfg")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Op("&").Id("Consumer").Values(jen.Id("c")), jen.Nil()),
	)
	f.Line()
	comment(f, "Run consumes until ctx is done, then finishes the handler in flight,\ncommits and closes. It returns an error if the consumer cannot go on.")
	f.Func().Params(jen.Id("c").Op("*").Id("Consumer")).Id("Run").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Run").Call(jen.Id("ctx"))),
	)
	for _, g := range []event.Guarantee{event.AtMostOnce, event.AtLeastOnce} {
		for _, ev := range byG[g] {
			handler := ev.GoName + "Handler"
			f.Line()
			comment(f, fmt.Sprintf("%s handles %s, an %s event.\n%s", handler, ev.GoName, g, handlerDoc[g]))
			f.Type().Id(handler).Func().Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName), jen.Id("rec").Add(rtKafka(recordType[g]))).Error()
			f.Line()
			f.Commentf("Handle%s registers the handler for %s events (topic %s).", ev.GoName, ev.GoName, ev.Topic)
			f.Func().Params(jen.Id("c").Op("*").Id("Consumer")).Id("Handle" + ev.GoName).Params(jen.Id("h").Id(handler)).Block(
				rtKafka(handleFunc[g]).Call(jen.Id("c").Dot("c"), jen.Op("&").Id(ev.MetaVar), rtEvent("DecodeEvent").Index(jen.Id(ev.GoName)), jen.Id("h")),
			)
		}
	}
}

func emitPipeline(f *jen.File, p *Pipeline) {
	emitter := p.GoName + "Emitter"
	handler := p.GoName + "Handler"
	f.Line()
	comment(f, fmt.Sprintf("%s sends the events pipeline %s produces. What it emits is\ncommitted in one Kafka transaction with the consumed offset.", emitter, p.Name))
	f.Type().Id(emitter).Struct(jen.Id("em").Op("*").Add(rtKafka("Emitter")))
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
	f.Func().Id("Run"+p.GoName).Params(ctx.Clone(), jen.Id("cfg").Add(rtKafka("PipelineConfig")), jen.Id("h").Id(handler)).Error().Block(
		jen.Id("produces").Op(":=").Index().Op("*").Add(rtEvent("Type")).ValuesFunc(func(g *jen.Group) {
			for _, ev := range p.Produces {
				g.Op("&").Id(ev.MetaVar)
			}
		}),
		jen.Return(rtKafka("RunPipeline").Call(
			jen.Id("ctx"), jen.Id("cfg"), jen.Op("&").Id(p.Consumes.MetaVar), jen.Id("produces"),
			rtEvent("DecodeEvent").Index(jen.Id(p.Consumes.GoName)),
			jen.Func().Params(ctx.Clone(), jen.Id("in").Op("*").Id(p.Consumes.GoName), jen.Id("em").Op("*").Add(rtKafka("Emitter"))).Error().Block(
				jen.Return(jen.Id("h").Call(jen.Id("ctx"), jen.Id("in"), jen.Id(emitter).Values(jen.Id("em")))),
			),
		)),
	)
}
