package generator

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eventgen/eventgen/runtime/event"
)

// AsyncAPI 3.0 export. The document is written as YAML, in a fixed key
// order (yaml.v3 nodes, not maps), so that it is byte-identical run to run
// and reads top-down: info, channels (one per topic), operations (the
// generated Go API that sends and receives), components (messages with
// their payload and header schemas, record and enum types). What cannot be
// said in AsyncAPI (guarantees, dedup, idempotency keys, the outbox,
// pipelines) goes into x-eventgen-* extensions. docs/catalog.md lists the
// mapping.

// AsyncAPIVersion is the AsyncAPI version of the exported documents.
const AsyncAPIVersion = "3.0.0"

// kafkaBindingVersion is the version of the AsyncAPI Kafka bindings used.
const kafkaBindingVersion = "0.5.0"

// AsyncAPI returns the AsyncAPI 3.0.0 document of a valid schema, as YAML.
// source names the schema in the document's header comment, as seen from
// where the document goes (see AsyncAPISource).
func AsyncAPI(s *Schema, source string) (data []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("asyncapi: internal error while exporting (please report it with the schema): %v", p)
		}
	}()
	doc := asyncAPIDoc(s)
	var buf bytes.Buffer
	buf.WriteString("# " + Header + "\n# source: " + source + "\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc.n); err != nil {
		return nil, fmt.Errorf("asyncapi: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("asyncapi: %w", err)
	}
	return buf.Bytes(), nil
}

// AsyncAPISource is how the document written to outFile names schemaPath:
// relative to the file's directory; with no file (stdout), as given.
func AsyncAPISource(outFile, schemaPath string) string {
	if outFile == "" {
		return filepath.ToSlash(schemaPath)
	}
	return relSource(filepath.Dir(outFile), schemaPath)
}

// ymap is a YAML mapping whose keys keep the order they were set in.
type ymap struct{ n *yaml.Node }

func newMap() ymap { return ymap{&yaml.Node{Kind: yaml.MappingNode}} }

// set appends key: value; value is a string, bool, int, []string, ymap,
// []ymap or *yaml.Node.
func (m ymap) set(key string, value any) ymap {
	m.n.Content = append(m.n.Content, yamlScalar("!!str", key), yamlValue(value))
	return m
}

func yamlScalar(tag, v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
}

func yamlValue(v any) *yaml.Node {
	switch v := v.(type) {
	case string:
		return yamlScalar("!!str", v)
	case bool:
		return yamlScalar("!!bool", strconv.FormatBool(v))
	case int:
		return yamlScalar("!!int", strconv.Itoa(v))
	case int64:
		return yamlScalar("!!int", strconv.FormatInt(v, 10))
	case []string:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range v {
			seq.Content = append(seq.Content, yamlScalar("!!str", s))
		}
		return seq
	case ymap:
		return v.n
	case []ymap:
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, m := range v {
			seq.Content = append(seq.Content, m.n)
		}
		return seq
	case *yaml.Node:
		return v
	}
	panic(fmt.Sprintf("asyncapi: no YAML form for %T", v))
}

func ref(pointer string) ymap { return newMap().set("$ref", pointer) }

// jsonPointerToken escapes one JSON Pointer reference token (RFC 6901).
func jsonPointerToken(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func channelRef(topic string) string { return "#/channels/" + jsonPointerToken(topic) }

func messageRef(ev *Event) string {
	return channelRef(ev.Topic) + "/messages/" + jsonPointerToken(ev.Name)
}

func asyncAPIDoc(s *Schema) ymap {
	doc := newMap()
	doc.set("asyncapi", AsyncAPIVersion)
	doc.set("info", newMap().
		set("title", "Events of package "+s.Package).
		// The schema has no API version of its own: the fingerprint
		// changes whenever an event's wire shape, topic or guarantee does.
		set("version", s.Fingerprint).
		set("description", "The events of package `"+s.Package+"` (CloudEvents source `"+s.Source+"`), exported by eventgen. "+
			"`version` is the schema fingerprint. No servers are listed: brokers are deployment configuration."))
	doc.set("defaultContentType", event.ContentTypeJSON)

	// Channels: one per topic, in order of first appearance.
	channels := newMap()
	var topics []string
	topicEvents := map[string][]*Event{}
	for _, ev := range s.Events {
		if topicEvents[ev.Topic] == nil {
			topics = append(topics, ev.Topic)
		}
		topicEvents[ev.Topic] = append(topicEvents[ev.Topic], ev)
	}
	for _, topic := range topics {
		evs := topicEvents[topic]
		msgs := newMap()
		for _, ev := range evs {
			msgs.set(ev.Name, ref("#/components/messages/"+jsonPointerToken(ev.Name)))
		}
		binding := newMap().set("topic", topic)
		if r := topicRetention(evs); r > 0 {
			binding.set("topicConfiguration", newMap().set("retention.ms", r.Milliseconds()))
		}
		binding.set("bindingVersion", kafkaBindingVersion)
		ch := newMap().
			set("address", topic).
			set("messages", msgs).
			set("bindings", newMap().set("kafka", binding)).
			set("x-eventgen-guarantee", evs[0].Guarantee.String())
		channels.set(topic, ch)
	}
	doc.set("channels", channels)
	doc.set("operations", asyncAPIOperations(s))

	components := newMap()
	schemas := newMap()
	for _, t := range s.Types {
		schemas.set(t.Name, namedTypeSchema(t))
	}
	schemas.set(headersSchema, cloudEventHeaders(s))
	components.set("schemas", schemas)
	messages := newMap()
	for _, ev := range s.Events {
		messages.set(ev.Name, eventMessage(ev))
	}
	components.set("messages", messages)
	doc.set("components", components)

	if len(s.Pipelines) > 0 {
		pipes := newMap()
		for _, p := range s.Pipelines {
			pm := newMap()
			if p.Doc != "" {
				pm.set("description", strings.TrimSpace(p.Doc))
			}
			var produces []string
			for _, ev := range p.Produces {
				produces = append(produces, ev.Name)
			}
			pm.set("guarantee", p.Guarantee.String()).
				set("consumes", p.Consumes.Name).
				set("produces", produces).
				set("run", p.Run)
			pipes.set(p.Name, pm)
		}
		doc.set("x-eventgen-pipelines", pipes)
	}
	return doc
}

// topicRetention is the retention the events of a topic agree on, or 0.
func topicRetention(evs []*Event) (r time.Duration) {
	for i, ev := range evs {
		if i > 0 && ev.Retention != r {
			return 0
		}
		r = ev.Retention
	}
	return r
}

// asyncAPIOperations are the generated Go API: operation ids name the
// method that sends or receives (Producer.SendOrderPlaced,
// Consumer.HandleOrderPlaced, RunIssueReceipts, ...).
func asyncAPIOperations(s *Schema) ymap {
	ops := newMap()
	op := func(id, action string, ev *Event, summary string) ymap {
		o := newMap().
			set("action", action).
			set("channel", ref(channelRef(ev.Topic))).
			set("summary", summary).
			set("messages", []ymap{ref(messageRef(ev))}).
			set("x-eventgen-guarantee", ev.Guarantee.String())
		ops.set(id, o)
		return o
	}
	for _, ev := range s.Events {
		if ev.Group != nil && ev.Group.Transactional {
			op(s.Names.Tx+"."+ev.Send, "send", ev, "Send "+ev.Name+" in a Kafka transaction ("+s.Names.Producer+"."+s.Names.Begin+" or "+s.Names.InTx+").")
		} else {
			op(s.Names.Producer+"."+ev.Send, "send", ev, "Send "+ev.Name+".")
		}
	}
	for _, g := range s.Direct {
		for _, ev := range g.Events {
			o := op(s.Names.Consumer+"."+ev.Handle, "receive", ev, "Handle "+ev.Name+" ("+ev.Guarantee.String()+").")
			if ev.Guarantee == event.AtLeastOnce {
				o.set("x-eventgen-dead-letter-topic", ev.Topic+deadLetterSuffix)
			}
		}
	}
	for _, p := range s.Pipelines {
		how, in := "in one transaction", "in the pipeline's transaction"
		if p.Guarantee != event.ExactlyOnce {
			how, in = "through the idempotent producer, committing the offset once they are acknowledged", "through the pipeline's idempotent producer"
		}
		o := op(p.Run, "receive", p.Consumes, "Pipeline "+p.Name+": consume "+p.Consumes.Name+" and emit its outputs "+how+".")
		o.set("x-eventgen-pipeline", p.Name).set("x-eventgen-dead-letter-topic", p.Consumes.Topic+deadLetterSuffix)
		for _, ev := range p.Produces {
			op(p.Emitter+"."+ev.Emit, "send", ev, "Pipeline "+p.Name+": emit "+ev.Name+" "+in+".").
				set("x-eventgen-pipeline", p.Name)
		}
	}
	return ops
}

func eventMessage(ev *Event) ymap {
	m := newMap().set("name", ev.Name).set("title", ev.Name)
	if ev.Doc != "" {
		m.set("description", strings.TrimSpace(ev.Doc))
	}
	m.set("contentType", event.ContentTypeJSON)
	m.set("headers", eventHeaders(ev))
	payload := recordSchema("", ev.Fields) // the doc is the message's
	if ev.Deprecated {
		payload.set("deprecated", true)
	}
	m.set("payload", payload)
	kb := newMap()
	if ev.Key != nil {
		kb.set("key", keySchema(ev.Key))
	}
	kb.set("bindingVersion", kafkaBindingVersion)
	m.set("bindings", newMap().set("kafka", kb))

	m.set("x-eventgen-guarantee", ev.Guarantee.String())
	if ev.Key != nil {
		m.set("x-eventgen-key", ev.Key.Wire)
	}
	idem := []string{}
	for _, f := range ev.IdemKey {
		idem = append(idem, f.Wire)
	}
	m.set("x-eventgen-idempotency-key", idem)
	dedup := newMap().set("store", ev.Dedup.String())
	if ev.Dedup != event.DedupNone {
		dedup.set("ttl", formatDuration(ev.DedupTTL))
	}
	if ev.DedupWhy != "" {
		dedup.set("reason", ev.DedupWhy)
	}
	m.set("x-eventgen-dedup", dedup)
	m.set("x-eventgen-outbox", ev.Outbox)
	if ev.Retention > 0 {
		m.set("x-eventgen-retention", formatDuration(ev.Retention))
	}
	m.set("x-eventgen-fingerprint", ev.Fingerprint)
	return m
}

// headersSchema is the components.schemas key of the record headers every
// eventgen producer writes (runtime/kafka.CloudEventHeaders). Type names
// are identifiers, so the dot keeps it apart from the schema's own.
const headersSchema = "eventgen.CloudEventsHeaders"

func cloudEventHeaders(s *Schema) ymap {
	str := func(desc string) ymap { return newMap().set("type", "string").set("description", desc) }
	props := newMap().
		set(event.HeaderSpecVersion, str("CloudEvents spec version.").set("const", event.SpecVersion)).
		set(event.HeaderID, str("A fresh UUID per send; dedup uses the idempotency key instead.").set("format", "uuid")).
		set(event.HeaderType, str("CloudEvents type: <package>.<Event>.v<version>; each message fixes it.")).
		set(event.HeaderSource, str("CloudEvents source.").set("const", s.Source)).
		set(event.HeaderTime, str("Send time, RFC 3339 in UTC.").set("format", "date-time")).
		set(event.HeaderContentType, str("CloudEvents datacontenttype.").set("const", event.ContentTypeJSON)).
		set(event.HeaderTraceparent, str("W3C trace context of the sender, when it has one.").
			set("pattern", "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"))
	return newMap().
		set("type", "object").
		set("description", "Record headers: the CloudEvents Kafka protocol binding in binary mode, and W3C trace context.").
		set("required", []string{event.HeaderSpecVersion, event.HeaderID, event.HeaderType, event.HeaderSource, event.HeaderTime, event.HeaderContentType}).
		set("properties", props)
}

// eventHeaders are the shared headers with the event's CloudEvents type.
func eventHeaders(ev *Event) ymap {
	return newMap().
		set("type", "object").
		set("allOf", []ymap{ref("#/components/schemas/" + headersSchema)}).
		set("properties", newMap().set(event.HeaderType, newMap().set("type", "string").set("const", ev.CEType)))
}

func namedTypeSchema(t *NamedType) ymap {
	if t.IsEnum() {
		m := newMap()
		if t.Doc != "" {
			m.set("description", strings.TrimSpace(t.Doc))
		}
		m.set("type", "string")
		var values []string
		for _, v := range t.Values {
			values = append(values, v.Value)
		}
		return m.set("enum", values)
	}
	return recordSchema(t.Doc, t.Fields)
}

// recordSchema is an event's or record's JSON object (docs/wire-format.md):
// required fields are always written; optional ones may be absent.
// Unknown members are allowed, as readers ignore them.
func recordSchema(doc string, fields []*Field) ymap {
	m := newMap()
	if doc != "" {
		m.set("description", strings.TrimSpace(doc))
	}
	m.set("type", "object")
	var required []string
	props := newMap()
	for _, f := range fields {
		if !f.Optional {
			required = append(required, f.Wire)
		}
		fs := typeSchema(f.Type)
		if f.Doc != "" {
			if f.Type.Kind == KindNamed {
				// Keywords beside $ref are ignored (JSON Schema draft 7).
				fs = newMap().set("description", strings.TrimSpace(f.Doc)).set("allOf", []ymap{fs})
			} else {
				fs.set("description", strings.TrimSpace(f.Doc))
			}
		}
		props.set(f.Wire, fs)
	}
	if len(required) > 0 {
		m.set("required", required)
	}
	return m.set("properties", props)
}

// Patterns of the string forms in docs/wire-format.md.
const (
	decimalPattern = `^[-+]?[0-9]+(\.[0-9]+)?$`
	// Go's time.ParseDuration syntax.
	durationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
)

// typeSchema is the JSON Schema of a field type's wire form.
func typeSchema(t *Type) ymap {
	m := newMap()
	switch t.Kind {
	case KindBool:
		m.set("type", "boolean")
	case KindInt32:
		m.set("type", "integer").set("format", "int32")
	case KindInt64:
		m.set("type", "integer").set("format", "int64")
	case KindFloat64:
		m.set("type", "number").set("format", "double")
	case KindString:
		m.set("type", "string")
	case KindBytes:
		m.set("type", "string").set("contentEncoding", "base64")
	case KindUUID:
		m.set("type", "string").set("format", "uuid")
	case KindTimestamp:
		m.set("type", "string").set("format", "date-time")
	case KindDuration:
		m.set("type", "string").set("pattern", durationPattern).set("x-eventgen-type", "duration")
	case KindDecimal:
		m.set("type", "string").set("pattern", decimalPattern).set("x-eventgen-type", "decimal")
	case KindList:
		m.set("type", "array").set("items", typeSchema(t.Elem))
	case KindMap:
		m.set("type", "object").set("additionalProperties", typeSchema(t.Elem))
	case KindNamed:
		return ref("#/components/schemas/" + jsonPointerToken(t.Named.Name))
	default:
		panic(fmt.Sprintf("no JSON Schema for type kind %d", t.Kind))
	}
	return m
}

// keySchema is the schema of the Kafka record key: the key field as text
// (UTF-8 bytes), integers in decimal.
func keySchema(f *Field) ymap {
	desc := "Field " + f.Wire + " of the event, as text."
	switch f.Type.Kind {
	case KindInt32, KindInt64:
		return newMap().set("type", "string").set("pattern", `^-?[0-9]+$`).set("description", desc+" An integer is written in decimal.")
	case KindNamed:
		return newMap().set("description", desc).set("allOf", []ymap{typeSchema(f.Type)})
	}
	return typeSchema(f.Type).set("description", desc)
}
