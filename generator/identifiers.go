package generator

// goIdent is one identifier the generated code declares where two schema
// names could clash: at package level, or a method of Producer (named
// "Producer.SendX"), since two events must not share a Send method.
type goIdent struct {
	name string
	// what names the identifier's origin in diagnostics, e.g. "event
	// Refund (its generated RefundHandler)".
	what string
	// pos is where the schema names it; zero for identifiers every
	// generated package declares.
	pos Pos
	// event is the event whose own name this is, nil otherwise.
	event *Event
	// base is the identifier this one is derived from: if base clashes,
	// this one is not checked, as it would only clash again.
	base *goIdent
}

// identifiers lists every identifier the emitters declare, in the order
// the clash check meets them: the package's own names, then types, events
// and pipelines in schema order. An emitter that declares a new name adds
// it to the IR and here.
func (s *Schema) identifiers() []*goIdent {
	n := s.Names
	var ids []*goIdent
	for _, name := range []string{n.Fingerprint, n.Sender, n.Producer, n.NewProducer, n.Consumer, n.NewConsumer, n.SchemaEvents, n.Tx, n.TxImpl,
		n.producerMethod(n.Close), n.producerMethod(n.Begin), n.producerMethod(n.InTx)} {
		ids = append(ids, &goIdent{name: name})
	}
	for _, t := range s.Types {
		ids = append(ids, typeIdentifiers(t)...)
	}
	for _, ev := range s.Events {
		ids = append(ids, eventIdentifiers(n, ev)...)
	}
	for _, p := range s.Pipelines {
		what := "pipeline " + p.Name
		for _, name := range []string{p.Handler, p.Emitter, p.Run} {
			ids = append(ids, &goIdent{name: name, what: what + " (its generated " + name + ")", pos: p.Pos})
		}
	}
	return ids
}

func typeIdentifiers(t *NamedType) []*goIdent {
	ids := []*goIdent{{name: t.GoName, what: "type " + t.Name, pos: t.Pos}}
	if t.IsEnum() {
		ids = append(ids, &goIdent{name: t.ValuesFunc, what: "type " + t.Name + " (its generated " + t.ValuesFunc + " function)", pos: t.Pos})
	}
	for _, v := range t.Values {
		ids = append(ids, &goIdent{name: v.GoName, what: "enum value " + t.Name + "." + v.Value, pos: v.Pos})
	}
	return ids
}

func eventIdentifiers(n PackageNames, ev *Event) []*goIdent {
	own := &goIdent{name: ev.GoName, what: "event " + ev.Name, pos: ev.Pos, event: ev}
	ids := []*goIdent{own}
	derived := func(name string) {
		ids = append(ids, &goIdent{name: name, what: "event " + ev.Name + " (its generated " + name + ")", pos: ev.Pos, base: own})
	}
	derived(ev.Handler)
	if ev.BatchHandler != "" {
		// Two events' handler types or Handle methods can meet here:
		// X's XBatchHandler and HandleXBatch are XBatch's XBatchHandler
		// and HandleXBatch.
		derived(ev.BatchHandler)
		derived(n.consumerMethod(ev.HandleBatch))
	}
	derived(n.consumerMethod(ev.Handle))
	derived(ev.MetaVar)
	derived(ev.Enqueue)
	if ev.Group != nil && !ev.Group.Transactional {
		derived(n.producerMethod(ev.Send))
		if ev.SendAsync != "" {
			derived(n.producerMethod(ev.SendAsync))
		}
	}
	return ids
}

// consumerMethod is how a Consumer method is named in the clash check.
func (n PackageNames) consumerMethod(name string) string { return n.Consumer + "." + name }

// producerMethod is how a Producer method is named in the clash check.
func (n PackageNames) producerMethod(name string) string { return n.Producer + "." + name }
