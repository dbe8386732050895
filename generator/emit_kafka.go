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
func emitKafka(s *Schema) []goPart {
	return []goPart{func(f *jen.File) { emitKafkaFile(s, f) }}
}

func emitKafkaFile(s *Schema, f *jen.File) {
	emitSender(f, s)
	emitProducer(f, s)
	if len(s.Direct) > 0 || len(s.Pipelines) > 0 {
		emitSchemaEvents(f, s)
	}
	if len(s.Direct) > 0 {
		emitConsumer(f, s)
	}
	for _, p := range s.Pipelines {
		emitPipeline(f, s.Names, p)
	}
}

// emitSchemaEvents writes the list of the schema's events that consumers
// and pipelines route records by: a record of an event with no handler is
// skipped, an unknown ce_type dead-lettered, a record without ce_type is the
// event of its topic when the topic carries only one.
func emitSchemaEvents(f *jen.File, s *Schema) {
	f.Line()
	comment(f, s.Names.SchemaEvents+" are the events of this schema: consumers and pipelines route records\nby their ce_type among them.")
	f.Var().Id(s.Names.SchemaEvents).Op("=").Index().Op("*").Add(rtEvent("Type")).ValuesFunc(func(g *jen.Group) {
		for _, ev := range s.Events {
			g.Op("&").Id(ev.MetaVar)
		}
	})
}

var ctx = jen.Id("ctx").Qual("context", "Context")

// sendDocs are the doc comments of the Send methods, by guarantee.
var sendDocs = map[event.Guarantee]string{
	event.AtMostOnce:  "%s validates e and hands it to the at-most-once producer without\nwaiting for the network: it may be lost, and drops are counted.",
	event.AtLeastOnce: "%s validates e and returns once Kafka has acknowledged it on all\nin-sync replicas, or with an error the caller can act on (retry, fail the\nrequest). Retries inside the producer are idempotent: they never duplicate.",
	event.ExactlyOnce: "%s adds e to the transaction.",
}

const sendAsyncDoc = "%s validates e and queues it without waiting: done is called\nonce with the outcome (nil once acknowledged) from a producer goroutine.\nBack-to-back calls batch like a hand-written sarama pipeline. It returns\nan error, and does not call done, if e is invalid or cannot be queued."

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
func emitSender(f *jen.File, s *Schema) {
	n := s.Names
	f.Line()
	doc := fmt.Sprintf("%s is what %s does, as an interface: code that sends the events\nof package %s can take a %s, and its tests a fake.", n.Sender, n.Producer, s.Package, n.Sender)
	comment(f, doc)
	f.Type().Id(n.Sender).InterfaceFunc(func(g *jen.Group) {
		m := &interfaceMethods{g: g}
		for _, gr := range s.Direct {
			for _, ev := range gr.Events {
				m.add(sendDoc(ev, fmt.Sprintf("%s sends one %s; see %s.%s.", ev.Send, ev.GoName, n.Producer, ev.Send)),
					jen.Id(ev.Send).Params(sendParams(ev)...).Error())
				if ev.SendAsync != "" {
					m.add(sendDoc(ev, fmt.Sprintf("%s queues one %s; see %s.%s.", ev.SendAsync, ev.GoName, n.Producer, ev.SendAsync)),
						jen.Id(ev.SendAsync).Params(sendAsyncParams(ev)...).Error())
				}
			}
		}
		if s.Tx != nil {
			m.add(fmt.Sprintf("%s opens a transaction; see %s.%s.", n.Begin, n.Producer, n.Begin),
				jen.Id(n.Begin).Params(ctx.Clone()).Params(jen.Id(n.Tx), jen.Error()))
			m.add(fmt.Sprintf("%s runs fn in a transaction; see %s.%s.", n.InTx, n.Producer, n.InTx),
				jen.Id(n.InTx).Params(ctx.Clone(), jen.Id("fn").Func().Params(jen.Id("tx").Id(n.Tx)).Error()).Error())
		}
	})
	f.Line()
	f.Var().Id("_").Id(n.Sender).Op("=").Parens(jen.Op("*").Id(n.Producer)).Parens(jen.Nil())
	if s.Tx == nil {
		return
	}
	f.Line()
	comment(f, fmt.Sprintf("%s is an open Kafka transaction: the events sent through it become visible\nto read_committed consumers together on Commit, or not at all. It is an\ninterface for the same reason as %s.", n.Tx, n.Sender))
	f.Type().Id(n.Tx).InterfaceFunc(func(g *jen.Group) {
		m := &interfaceMethods{g: g}
		for _, ev := range s.Tx.Events {
			m.add(sendDoc(ev, fmt.Sprintf(sendDocs[event.ExactlyOnce], ev.Send)),
				jen.Id(ev.Send).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error())
		}
		m.add("Commit makes every event of the transaction visible at once.", jen.Id("Commit").Params(ctx.Clone()).Error())
		m.add("Abort discards every event of the transaction.", jen.Id("Abort").Params(ctx.Clone()).Error())
	})
}

func emitProducer(f *jen.File, s *Schema) {
	n := s.Names
	f.Line()
	doc := fmt.Sprintf("%s sends the events of package %s, each through the producer its\nguarantee requires: at-most-once events fire and forget (acks=0),\nat-least-once events wait for an idempotent acks=all write", n.Producer, s.Package)
	if s.Tx != nil {
		doc += fmt.Sprintf(", exactly-once\nevents go through transactions (%s, %s)", n.Begin, n.InTx)
	}
	comment(f, doc+". It is safe for concurrent use.")
	f.Type().Id(n.Producer).StructFunc(func(g *jen.Group) {
		for _, gr := range s.Groups {
			g.Id(gr.ProducerField).Op("*").Add(rtKafka(gr.ProducerType))
		}
	})
	f.Line()
	doc = n.NewProducer + " connects the producers this schema's guarantees need."
	if s.Tx != nil {
		doc += "\ncfg.TransactionalID is required: it names this instance's transactional\nproducer (see kafka.ProducerConfig)."
	} else {
		doc += "\nThe schema has no exactly-once events, so cfg.TransactionalID is unused."
	}
	comment(f, doc)
	f.Func().Id(n.NewProducer).Params(jen.Id("cfg").Add(rtKafka("ProducerConfig"))).Params(jen.Op("*").Id(n.Producer), jen.Error()).BlockFunc(func(g *jen.Group) {
		g.Id("p").Op(":=").Op("&").Id(n.Producer).Values()
		g.Var().Err().Error()
		for _, gr := range s.Groups {
			// A transactional producer needs the TransactionalID too.
			arg := jen.Id("cfg").Dot("Config")
			if gr.Transactional {
				arg = jen.Id("cfg")
			}
			g.If(
				jen.List(jen.Id("p").Dot(gr.ProducerField), jen.Err()).Op("=").Add(rtKafka(gr.NewProducerFunc)).Call(arg),
				jen.Err().Op("!=").Nil(),
			).Block(
				jen.Id("p").Dot(n.Close).Call(),
				jen.Return(jen.Nil(), jen.Err()),
			)
		}
		g.Return(jen.Id("p"), jen.Nil())
	})
	f.Line()
	f.Commentf("%s flushes what is buffered and closes the producers.", n.Close)
	f.Func().Params(jen.Id("p").Op("*").Id(n.Producer)).Id(n.Close).Params().Error().BlockFunc(func(g *jen.Group) {
		g.Var().Id("errs").Index().Error()
		for _, gr := range s.Groups {
			field := jen.Id("p").Dot(gr.ProducerField)
			g.If(field.Clone().Op("!=").Nil()).Block(
				jen.Id("errs").Op("=").Append(jen.Id("errs"), field.Clone().Dot("Close").Call()),
			)
		}
		g.Return(jen.Qual("errors", "Join").Call(jen.Id("errs").Op("...")))
	})
	recv := jen.Id("p").Op("*").Id(n.Producer)
	for _, gr := range s.Direct {
		for _, ev := range gr.Events {
			f.Line()
			comment(f, sendDoc(ev, fmt.Sprintf(sendDocs[gr.Guarantee], ev.Send)))
			f.Func().Params(recv.Clone()).Id(ev.Send).Params(sendParams(ev)...).Error().Block(
				jen.Return(jen.Id("p").Dot(gr.ProducerField).Dot("Send").Call(jen.Id("ctx"), jen.Id("e"))),
			)
			if ev.SendAsync == "" {
				continue
			}
			f.Line()
			comment(f, sendDoc(ev, fmt.Sprintf(sendAsyncDoc, ev.SendAsync)))
			f.Func().Params(recv.Clone()).Id(ev.SendAsync).Params(sendAsyncParams(ev)...).Error().Block(
				jen.Return(jen.Id("p").Dot(gr.ProducerField).Dot("SendAsync").Call(jen.Id("ctx"), jen.Id("e"), jen.Id("done"))),
			)
		}
	}
	if s.Tx != nil {
		emitTx(f, n, s.Tx)
	}
}

// emitTx writes Begin and InTx and the unexported implementation of Tx.
func emitTx(f *jen.File, n PackageNames, gr *Group) {
	recv := jen.Id("p").Op("*").Id(n.Producer)
	f.Line()
	comment(f, fmt.Sprintf("%s opens a transaction. One transaction is open at a time per %s;\nend it with Commit or Abort.", n.Begin, n.Producer))
	f.Func().Params(recv.Clone()).Id(n.Begin).Params(ctx.Clone()).Params(jen.Id(n.Tx), jen.Error()).Block(
		jen.List(jen.Id("tx"), jen.Err()).Op(":=").Id("p").Dot(gr.ProducerField).Dot("Begin").Call(jen.Id("ctx")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.Return(jen.Id(n.TxImpl).Values(jen.Id("tx")), jen.Nil()),
	)
	f.Line()
	comment(f, fmt.Sprintf("%s runs fn in a transaction: it commits if fn returns nil and aborts\notherwise, so that nothing fn sent is ever partly visible.", n.InTx))
	f.Func().Params(recv.Clone()).Id(n.InTx).Params(ctx.Clone(), jen.Id("fn").Func().Params(jen.Id("tx").Id(n.Tx)).Error()).Error().Block(
		jen.Return(jen.Id("p").Dot(gr.ProducerField).Dot("InTx").Call(jen.Id("ctx"), jen.Func().Params(jen.Id("tx").Op("*").Add(rtKafka("Tx"))).Error().Block(
			jen.Return(jen.Id("fn").Call(jen.Id(n.TxImpl).Values(jen.Id("tx")))),
		))),
	)
	f.Line()
	f.Commentf("%s implements %s with the runtime's transaction.", n.TxImpl, n.Tx)
	f.Type().Id(n.TxImpl).Struct(jen.Id("tx").Op("*").Add(rtKafka("Tx")))
	txRecv := jen.Id("t").Id(n.TxImpl)
	for _, ev := range gr.Events {
		f.Line()
		f.Func().Params(txRecv.Clone()).Id(ev.Send).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
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

// sendDoc adds the event's deprecation to a send method's doc, so that
// linters flag code that still produces a deprecated event.
func sendDoc(ev *Event, doc string) string {
	return docComment(doc, "", ev.Deprecated, ev.GoName)
}

var handlerDoc = map[event.Guarantee]string{
	event.AtMostOnce:  "The record's offset is committed before the handler runs: a crash or an\nerror loses the event (errors are counted as dropped), it is never redelivered.",
	event.AtLeastOnce: "The offset is committed after the handler returns nil: a crash redelivers\nthe event, so the handler must tolerate duplicates. An error is retried\nwith backoff, then the record goes to the dead-letter topic.",
}

func emitConsumer(f *jen.File, s *Schema) {
	n := s.Names
	f.Line()
	comment(f, fmt.Sprintf("%s reads the events of package %s and dispatches them to typed\nhandlers, committing offsets as each event's guarantee requires. Register\nhandlers, then call Run. Exactly-once events are consumed through the\ngenerated pipeline functions.", n.Consumer, s.Package))
	f.Type().Id(n.Consumer).Struct(jen.Id("c").Op("*").Add(rtKafka("Consumer")))
	f.Line()
	comment(f, fmt.Sprintf("%s creates a consumer in the group cfg.GroupID. It routes records by\nce_type: a record of an event of this schema with no handler registered is\nskipped (committed, counted), an unknown ce_type is dead-lettered, and a\nrecord without ce_type is the event of its topic if the topic has only one.", n.NewConsumer))
	f.Func().Id(n.NewConsumer).Params(jen.Id("cfg").Add(rtKafka("ConsumerConfig"))).Params(jen.Op("*").Id(n.Consumer), jen.Error()).Block(
		jen.List(jen.Id("c"), jen.Err()).Op(":=").Add(rtKafka("NewConsumer")).Call(jen.Id("cfg")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		rtKafka("DeclareEvents").Call(jen.Id("c"), jen.Id(n.SchemaEvents).Op("...")),
		jen.Return(jen.Op("&").Id(n.Consumer).Values(jen.Id("c")), jen.Nil()),
	)
	f.Line()
	comment(f, "Run consumes until ctx is done, then finishes the handler in flight,\ncommits and closes. It returns an error if the consumer cannot go on.")
	f.Func().Params(jen.Id("c").Op("*").Id(n.Consumer)).Id("Run").Params(ctx.Clone()).Error().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Run").Call(jen.Id("ctx"))),
	)
	for _, gr := range s.Direct {
		for _, ev := range gr.Events {
			f.Line()
			comment(f, fmt.Sprintf("%s handles %s, an %s event.\n%s", ev.Handler, ev.GoName, gr.Guarantee, handlerDoc[gr.Guarantee]))
			f.Type().Id(ev.Handler).Func().Params(ctx.Clone(), jen.Id("e").Op("*").Id(ev.GoName), jen.Id("rec").Add(rtKafka(gr.RecordType))).Error()
			f.Line()
			f.Commentf("%s registers the handler for %s events (topic %s).", ev.Handle, ev.GoName, ev.Topic)
			f.Func().Params(jen.Id("c").Op("*").Id(n.Consumer)).Id(ev.Handle).Params(jen.Id("h").Id(ev.Handler)).Block(
				rtKafka(gr.HandleFunc).Call(jen.Id("c").Dot("c"), jen.Op("&").Id(ev.MetaVar), rtEvent("DecodeEvent").Index(jen.Id(ev.GoName)), jen.Id("h")),
			)
		}
	}
}

func emitPipeline(f *jen.File, n PackageNames, p *Pipeline) {
	in := p.Consumes
	eos := p.Guarantee == event.ExactlyOnce
	f.Line()
	if eos {
		comment(f, fmt.Sprintf("%s sends the events pipeline %s produces. What it emits is\ncommitted in one Kafka transaction with the consumed offset.", p.Emitter, p.Name))
	} else {
		comment(f, fmt.Sprintf("%s sends the events pipeline %s produces. The consumed offset\nis committed once everything emitted is acknowledged.", p.Emitter, p.Name))
	}
	f.Type().Id(p.Emitter).Struct(jen.Id("em").Op("*").Add(rtKafka("Emitter")))
	for _, ev := range p.Produces {
		f.Line()
		if eos {
			f.Commentf("%s adds e to the pipeline's current transaction.", ev.Emit)
		} else {
			f.Commentf("%s sends e through the pipeline's idempotent producer.", ev.Emit)
		}
		f.Func().Params(jen.Id("o").Id(p.Emitter)).Id(ev.Emit).Params(jen.Id("e").Op("*").Id(ev.GoName)).Error().Block(
			jen.Return(jen.Id("o").Dot("em").Dot("Emit").Call(jen.Id("e"))),
		)
	}
	f.Line()
	run, lead := "RunPipeline", fmt.Sprintf("%s runs pipeline %s exactly-once until ctx is done: it reads\n%s read_committed and commits each round's output and consumed\noffsets in one transaction. Records of the topic's other events are\nskipped; it sets cfg.Events to this schema's events.", p.Run, p.Name, in.Topic)
	if eos {
		comment(f, fmt.Sprintf("%s transforms one %s into the events it emits. It may run\nagain for the same input after a crash or rebalance, but only one run's\noutput is ever committed; side effects outside Kafka are not covered.", p.Handler, in.GoName))
	} else {
		names := make([]string, len(p.Produces))
		for i, ev := range p.Produces {
			names[i] = ev.GoName
		}
		comment(f, fmt.Sprintf("%s transforms one %s into the events it emits. A crash or a\nrebalance after the outputs are acknowledged and before the offset is\ncommitted runs it again and writes its outputs again: consumers of %s\nabsorb the repeats with their dedup store.", p.Handler, in.GoName, strings.Join(names, ", ")))
		run, lead = "RunAtLeastOncePipeline", fmt.Sprintf("%s runs pipeline %s at-least-once until ctx is done: it reads\n%s read_committed, sends the outputs through the idempotent\nproducer and commits the consumed offsets once they are acknowledged.\nRecords of the topic's other events are skipped; it sets cfg.Events to\nthis schema's events.", p.Run, p.Name, in.Topic)
	}
	f.Type().Id(p.Handler).Func().Params(ctx.Clone(), jen.Id("in").Op("*").Id(in.GoName), jen.Id("out").Id(p.Emitter)).Error()
	f.Line()
	comment(f, docComment(lead, p.Doc, false, ""))
	f.Func().Id(p.Run).Params(ctx.Clone(), jen.Id("cfg").Add(rtKafka("PipelineConfig")), jen.Id("h").Id(p.Handler)).Error().Block(
		jen.Id("cfg").Dot("Events").Op("=").Id(n.SchemaEvents),
		jen.Id("produces").Op(":=").Index().Op("*").Add(rtEvent("Type")).ValuesFunc(func(g *jen.Group) {
			for _, ev := range p.Produces {
				g.Op("&").Id(ev.MetaVar)
			}
		}),
		jen.Return(rtKafka(run).Call(
			jen.Id("ctx"), jen.Id("cfg"), jen.Op("&").Id(in.MetaVar), jen.Id("produces"),
			rtEvent("DecodeEvent").Index(jen.Id(in.GoName)),
			jen.Func().Params(ctx.Clone(), jen.Id("in").Op("*").Id(in.GoName), jen.Id("em").Op("*").Add(rtKafka("Emitter"))).Error().Block(
				jen.Return(jen.Id("h").Call(jen.Id("ctx"), jen.Id("in"), jen.Id(p.Emitter).Values(jen.Id("em")))),
			),
		)),
	)
}
