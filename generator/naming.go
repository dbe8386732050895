package generator

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/eventgen/eventgen/runtime/event"
)

// Every name the generated code declares is decided here, once, and kept
// in the IR: emitters print these names and identifiers() lists them for
// the clash check, so the two cannot disagree.

// packageNames are the identifiers every generated package declares. Tx and
// producerTx are reserved even without exactly-once events, so that adding
// one never makes a schema name clash.
var packageNames = PackageNames{
	Fingerprint:  "SchemaFingerprint",
	Sender:       "Sender",
	Tx:           "Tx",
	TxImpl:       "producerTx",
	Producer:     "Producer",
	NewProducer:  "NewProducer",
	Consumer:     "Consumer",
	NewConsumer:  "NewConsumer",
	SchemaEvents: "schemaEvents",
	Close:        "Close",
	Begin:        "Begin",
	InTx:         "InTx",
}

// The methods generated on every record and event type. Fields may not take
// their names: compile suffixes such a field's Go name (Key_).
const (
	methodValidate      = "Validate"
	methodAppendJSON    = "AppendJSON"
	methodMarshalJSON   = "MarshalJSON"
	methodUnmarshalJSON = "UnmarshalJSON"
	// On events only, for the runtime's event.Event interface.
	methodEventType      = "EventType"
	methodKey            = "Key"
	methodIdempotencyKey = "IdempotencyKey"
)

var (
	recordMethods = []string{methodValidate, methodAppendJSON, methodMarshalJSON, methodUnmarshalJSON}
	eventMethods  = append([]string{methodEventType, methodKey, methodIdempotencyKey}, recordMethods...)
)

// groupTemplates are the runtime pieces of each guarantee, weakest first.
var groupTemplates = []Group{
	{Guarantee: event.AtMostOnce, ProducerField: "atMostOnce", ProducerType: "AtMostOnceProducer", NewProducerFunc: "NewAtMostOnceProducer",
		RecordType: "AtMostOnceRecord", HandleFunc: "HandleAtMostOnce"},
	{Guarantee: event.AtLeastOnce, ProducerField: "atLeastOnce", ProducerType: "AtLeastOnceProducer", NewProducerFunc: "NewAtLeastOnceProducer",
		RecordType: "AtLeastOnceRecord", HandleFunc: "HandleAtLeastOnce"},
	{Guarantee: event.ExactlyOnce, ProducerField: "transactional", ProducerType: "TransactionalProducer", NewProducerFunc: "NewTransactionalProducer",
		Transactional: true},
}

func nameType(nt *NamedType) {
	if nt.IsEnum() {
		nt.ValuesFunc = nt.GoName + "Values"
	}
}

func enumValueName(nt *NamedType, value string) string {
	return nt.GoName + snakeToCamel(value)
}

// nameEvent sets the names that follow from the event's name alone.
func nameEvent(s *Schema, ev *Event) {
	ev.MetaVar = lowerFirst(ev.GoName) + "Meta"
	ev.CEType = fmt.Sprintf("%s.%s.v%d", s.Package, ev.Name, max(ev.Version, 1))
	ev.Send = "Send" + ev.GoName
	ev.Handler = ev.GoName + "Handler"
	ev.Handle = "Handle" + ev.GoName
	ev.Emit = "Emit" + ev.GoName
	ev.Enqueue = "Enqueue" + ev.GoName
	ev.Anchor = strings.ToLower(ev.Name)
}

// nameEventSettings sets what follows from the event's resolved settings.
func nameEventSettings(ev *Event) {
	if ev.Guarantee == event.AtLeastOnce {
		ev.SendAsync = ev.Send + "Async"
	}
	ev.DedupDoc = dedupDoc(ev)
	ev.IgnoreDoc = ignoreDoc(ev)
}

// ignoreDoc lists the rules silenced for an event, with their reasons on
// one line each, for the docs.
func ignoreDoc(ev *Event) []string {
	var out []string
	for _, code := range slices.Sorted(maps.Keys(ev.Ignore)) {
		line := string(code)
		if title := codeTitle(code); title != "" {
			line += " (" + title + ")"
		}
		out = append(out, line+": "+strings.Join(strings.Fields(ev.Ignore[code]), " "))
	}
	return out
}

// dedupDoc is the docs' description of an event's dedup.
func dedupDoc(ev *Event) string {
	switch {
	case ev.Guarantee == event.AtMostOnce && ev.Dedup == event.DedupNone:
		return "not needed (never redelivered)"
	case ev.Dedup == event.DedupNone:
		return "none"
	}
	return ev.Dedup.String() + ", ttl " + formatDuration(ev.DedupTTL)
}

func namePipeline(p *Pipeline) {
	p.Emitter = p.GoName + "Emitter"
	p.Handler = p.GoName + "Handler"
	p.Run = "Run" + p.GoName
}

// groupEvents sorts the events into their guarantee groups.
func groupEvents(s *Schema) {
	for _, tmpl := range groupTemplates {
		g := &Group{}
		*g = tmpl
		for _, ev := range s.Events {
			if ev.Guarantee == g.Guarantee {
				ev.Group = g
				g.Events = append(g.Events, ev)
			}
		}
		if len(g.Events) == 0 {
			continue
		}
		s.Groups = append(s.Groups, g)
		if g.Transactional {
			s.Tx = g
		} else {
			s.Direct = append(s.Direct, g)
		}
	}
	for _, ev := range s.Events {
		if ev.Outbox {
			s.Outbox = append(s.Outbox, ev)
		}
		ev.Consume = consumeOf(ev)
		if ev.Consume == ConsumePostgres || ev.Consume == ConsumeExactlyOnce {
			s.Postgres = append(s.Postgres, ev)
			ev.BatchHandler = ev.GoName + "BatchHandler"
			ev.HandleBatch = ev.Handle + "Batch"
		}
		s.HasConsumer = s.HasConsumer || ev.Consume != ConsumeNone
	}
}

// consumeOf decides how the Consumer registers ev's handler.
func consumeOf(ev *Event) Consume {
	switch {
	case ev.Guarantee == event.ExactlyOnce && ev.Dedup == event.DedupPostgres:
		return ConsumeExactlyOnce
	case ev.Guarantee == event.ExactlyOnce, ev.Guarantee == 0:
		return ConsumeNone
	case ev.Guarantee == event.AtLeastOnce && ev.Dedup == event.DedupPostgres:
		return ConsumePostgres
	case ev.Guarantee == event.AtLeastOnce && ev.Dedup == event.DedupRedis:
		return ConsumeRedis
	}
	return ConsumePlain
}
