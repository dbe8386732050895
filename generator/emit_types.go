package generator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dave/jennifer/jen"
	"github.com/eventgen/eventgen/runtime/event"
)

// The runtime packages generated code imports: event (standard library
// only) from every file, kafka (sarama) from the Kafka file only.
const (
	eventPkg = "github.com/eventgen/eventgen/runtime/event"
	kafkaPkg = "github.com/eventgen/eventgen/runtime/kafka"
	dedupPkg = "github.com/eventgen/eventgen/runtime/dedup"
	pgxPkg   = "github.com/jackc/pgx/v5"
)

func rtEvent(name string) *jen.Statement { return jen.Qual(eventPkg, name) }
func rtKafka(name string) *jen.Statement { return jen.Qual(kafkaPkg, name) }

// emitTypes writes the event types file: one Go type per named type and
// event, with validation, JSON wire encoding, keys and metadata. The
// events come in parts of eventsPerPart, which render in parallel.
func emitTypes(s *Schema) []goPart {
	parts := []goPart{func(f *jen.File) { emitPreamble(s, f) }}
	for events := range slices.Chunk(s.Events, eventsPerPart) {
		parts = append(parts, func(f *jen.File) {
			for _, ev := range events {
				f.Line()
				emitEvent(f, s, ev)
			}
		})
	}
	return parts
}

// eventsPerPart keeps parts large enough to be worth a goroutine.
const eventsPerPart = 100

// emitPreamble writes the version check, the fingerprint and the types.
func emitPreamble(s *Schema, f *jen.File) {
	f.Comment("Checks, at compile time, that this file and the runtime it imports agree;")
	f.Comment("if a line below fails to compile, regenerate with the eventgen that matches")
	f.Comment("the github.com/eventgen/eventgen module in go.mod.")
	f.Const().Defs(
		jen.Id("_").Op("=").Add(rtEvent("EnforceVersion")).Call(jen.Lit(event.GenVersion).Op("-").Add(rtEvent("MinVersion"))),
		jen.Id("_").Op("=").Add(rtEvent("EnforceVersion")).Call(rtEvent("MaxVersion").Op("-").Lit(event.GenVersion)),
	)
	f.Line()
	f.Commentf("%s identifies the topics, guarantees and wire shapes of", s.Names.Fingerprint)
	f.Comment("every event in the schema: it changes when any of them does.")
	f.Const().Id(s.Names.Fingerprint).Op("=").Lit(s.Fingerprint)

	for _, t := range s.Types {
		f.Line()
		if t.IsEnum() {
			emitEnum(f, t)
		} else {
			emitRecord(f, t)
		}
	}
}

// comment writes text as `//` line comments (jennifer would make a block
// comment of multi-line text).
func comment(f *jen.File, text string) {
	for _, line := range strings.Split(text, "\n") {
		f.Comment(strings.TrimRight(line, " \t"))
	}
}

// commentCode is comment for use inside a declaration (struct fields).
func commentCode(text string) []jen.Code {
	var out []jen.Code
	for _, line := range strings.Split(text, "\n") {
		out = append(out, jen.Comment(strings.TrimRight(line, " \t")), jen.Line())
	}
	return out
}

// docComment is a declaration's doc: the schema's doc first, verbatim (it
// is the author's description and what godoc shows as the summary), then the
// generated paragraph, then a Deprecated: paragraph linters recognise.
func docComment(lead, doc string, deprecated bool, what string) string {
	var b strings.Builder
	if doc = strings.TrimSpace(doc); doc != "" {
		b.WriteString(doc)
		b.WriteString("\n\n")
	}
	b.WriteString(lead)
	if deprecated {
		b.WriteString("\n\nDeprecated: " + what + " is deprecated in the schema; stop producing it.")
	}
	return b.String()
}

func emitEnum(f *jen.File, t *NamedType) {
	values := make([]string, len(t.Values))
	for i, v := range t.Values {
		values[i] = v.Value
	}
	comment(f, docComment(fmt.Sprintf("%s is an enum; its wire values are %s.", t.GoName, strings.Join(values, ", ")), t.Doc, false, ""))
	f.Type().Id(t.GoName).String()
	f.Line()
	f.Const().DefsFunc(func(g *jen.Group) {
		for _, v := range t.Values {
			g.Id(v.GoName).Id(t.GoName).Op("=").Lit(v.Value)
		}
	})
	f.Line()
	f.Commentf("%s returns every value of %s, in schema order.", t.ValuesFunc, t.GoName)
	f.Func().Id(t.ValuesFunc).Params().Index().Id(t.GoName).Block(
		jen.Return(jen.Index().Id(t.GoName).ValuesFunc(func(g *jen.Group) {
			for _, v := range t.Values {
				g.Id(v.GoName)
			}
		})),
	)
	f.Line()
	f.Commentf("Valid reports whether v is one of the declared values.")
	f.Func().Params(jen.Id("v").Id(t.GoName)).Id("Valid").Params().Bool().Block(
		jen.Switch(jen.Id("v")).Block(
			jen.CaseFunc(func(g *jen.Group) {
				for _, v := range t.Values {
					g.Id(v.GoName)
				}
			}).Block(jen.Return(jen.True())),
		),
		jen.Return(jen.False()),
	)
	f.Line()
	f.Commentf("Validate returns an error if v is not one of the declared values.")
	f.Func().Params(jen.Id("v").Id(t.GoName)).Id(methodValidate).Params().Error().Block(
		jen.If(jen.Op("!").Id("v").Dot("Valid").Call()).Block(
			jen.Return(jen.Qual("fmt", "Errorf").Call(jen.Lit(fmt.Sprintf("invalid %s %%q: want one of %s", t.Name, strings.Join(values, ", "))), jen.String().Call(jen.Id("v")))),
		),
		jen.Return(jen.Nil()),
	)
	f.Line()
	f.Commentf("AppendJSON appends v as a JSON string.")
	f.Func().Params(jen.Id("v").Id(t.GoName)).Id(methodAppendJSON).Params(jen.Id("b").Index().Byte()).Index().Byte().Block(
		jen.Return(rtEvent("AppendString").Call(jen.Id("b"), jen.String().Call(jen.Id("v")))),
	)
	f.Line()
	f.Commentf("UnmarshalJSON decodes a JSON string, rejecting undeclared values.")
	f.Func().Params(jen.Id("v").Op("*").Id(t.GoName)).Id(methodUnmarshalJSON).Params(jen.Id("data").Index().Byte()).Error().Block(
		jen.List(jen.Id("s"), jen.Err()).Op(":=").Add(rtEvent("DecodeString")).Call(jen.Id("data")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())),
		jen.If(jen.Err().Op(":=").Id(t.GoName).Call(jen.Id("s")).Dot(methodValidate).Call(), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())),
		jen.Op("*").Id("v").Op("=").Id(t.GoName).Call(jen.Id("s")),
		jen.Return(jen.Nil()),
	)
}

func emitRecord(f *jen.File, t *NamedType) {
	comment(f, docComment(fmt.Sprintf("%s is a record type.", t.GoName), t.Doc, false, ""))
	f.Type().Id(t.GoName).Struct(structFields(t.Fields)...)
	recv := jen.Id("r").Id(t.GoName)
	f.Line()
	f.Commentf("Validate reports every missing required value and invalid enum value.")
	f.Func().Params(recv.Clone()).Id(methodValidate).Params().Error().Block(validateBody(jen.Id("r"), t.Fields)...)
	emitJSON(f, t.GoName, jen.Id("r"), jen.Id("r").Id(t.GoName), jen.Id("r").Op("*").Id(t.GoName), t.Fields)
}

func emitEvent(f *jen.File, s *Schema, ev *Event) {
	lead := fmt.Sprintf("%s is published to topic %s with the %s guarantee.", ev.GoName, ev.Topic, ev.Guarantee)
	comment(f, docComment(lead, ev.Doc, ev.Deprecated, ev.GoName))
	f.Type().Id(ev.GoName).Struct(structFields(ev.Fields)...)
	f.Line()
	f.Var().Id("_").Add(rtEvent("Event")).Op("=").Parens(jen.Op("*").Id(ev.GoName)).Parens(jen.Nil())
	f.Line()
	f.Var().Id(ev.MetaVar).Op("=").Add(rtEvent("Type")).Values(eventMeta(s, ev)...)
	recv := jen.Id("e").Op("*").Id(ev.GoName)
	f.Line()
	f.Commentf("EventType returns the metadata of %s: topic, guarantee, CloudEvents type.", ev.GoName)
	f.Func().Params(recv.Clone()).Id(methodEventType).Params().Op("*").Add(rtEvent("Type")).Block(
		jen.Return(jen.Op("&").Id(ev.MetaVar)),
	)
	f.Line()
	if ev.Key != nil {
		f.Commentf("Key returns the partition key, field %s: events with equal keys keep their order.", ev.Key.Name)
		f.Func().Params(recv.Clone()).Id(methodKey).Params().String().Block(jen.Return(keyString(ev.Key)))
	} else {
		f.Comment("Key returns \"\": the schema gives no key, so records spread over partitions.")
		f.Func().Params(recv.Clone()).Id(methodKey).Params().String().Block(jen.Return(jen.Lit("")))
	}
	f.Line()
	switch len(ev.IdemKey) {
	case 0:
		f.Comment("IdempotencyKey returns \"\": the schema declares no idempotency_key.")
		f.Func().Params(recv.Clone()).Id(methodIdempotencyKey).Params().String().Block(jen.Return(jen.Lit("")))
	case 1:
		f.Commentf("IdempotencyKey identifies one logical event: field %s.", ev.IdemKey[0].Name)
		f.Func().Params(recv.Clone()).Id(methodIdempotencyKey).Params().String().Block(jen.Return(keyString(ev.IdemKey[0])))
	default:
		names := make([]string, len(ev.IdemKey))
		for i, k := range ev.IdemKey {
			names[i] = k.Name
		}
		f.Commentf("IdempotencyKey identifies one logical event: fields %s.", strings.Join(names, ", "))
		f.Func().Params(recv.Clone()).Id(methodIdempotencyKey).Params().String().Block(
			jen.Return(rtEvent("JoinKey").CallFunc(func(g *jen.Group) {
				for _, k := range ev.IdemKey {
					g.Add(keyString(k))
				}
			})),
		)
	}
	f.Line()
	f.Commentf("Validate reports every missing required value and invalid enum value.")
	f.Func().Params(recv.Clone()).Id(methodValidate).Params().Error().Block(validateBody(jen.Id("e"), ev.Fields)...)
	emitJSON(f, ev.GoName, jen.Id("e"), recv.Clone(), recv.Clone(), ev.Fields)
}

// eventMeta is the event.Type literal of ev, its fields in the order
// event.Type declares them; zero values are left out.
func eventMeta(s *Schema, ev *Event) []jen.Code {
	// One field a line, as gofmt prints a keyed literal written by hand.
	field := func(name string, v jen.Code) jen.Code { return jen.Line().Id(name).Op(":").Add(v) }
	meta := []jen.Code{
		field("Name", jen.Lit(ev.Name)),
		field("Topic", jen.Lit(ev.Topic)),
		field("Guarantee", rtEvent(guaranteeConst[ev.Guarantee])),
		field("CEType", jen.Lit(ev.CEType)),
		field("Source", jen.Lit(s.Source)),
		field("Fingerprint", jen.Lit(ev.Fingerprint)),
		field("Dedup", rtEvent(dedupConst[ev.Dedup])),
	}
	if ev.DedupTTL > 0 {
		meta = append(meta, field("DedupTTL", durationCode(ev.DedupTTL)))
	}
	if ev.Retention > 0 {
		meta = append(meta, field("Retention", durationCode(ev.Retention)))
	}
	if ev.Outbox {
		meta = append(meta, field("Outbox", jen.True()))
	}
	return append(meta, jen.Line())
}

var guaranteeConst = map[event.Guarantee]string{
	event.AtMostOnce: "AtMostOnce", event.AtLeastOnce: "AtLeastOnce", event.ExactlyOnce: "ExactlyOnce",
}

var dedupConst = map[event.DedupStore]string{
	event.DedupNone: "DedupNone", event.DedupPostgres: "DedupPostgres", event.DedupRedis: "DedupRedis",
}

// durationCode writes d as a readable multiple of its largest exact unit: 168 * time.Hour.
func durationCode(d time.Duration) jen.Code {
	units := []struct {
		d    time.Duration
		name string
	}{{time.Hour, "Hour"}, {time.Minute, "Minute"}, {time.Second, "Second"}, {time.Millisecond, "Millisecond"}, {time.Microsecond, "Microsecond"}}
	for _, u := range units {
		if d%u.d == 0 {
			return jen.Lit(int(d/u.d)).Op("*").Qual("time", u.name)
		}
	}
	return jen.Qual("time", "Duration").Call(jen.Lit(int64(d)))
}

func structFields(fields []*Field) []jen.Code {
	out := make([]jen.Code, 0, len(fields))
	for _, fl := range fields {
		var c []jen.Code
		doc := strings.TrimSpace(fl.Doc)
		if fl.Optional {
			if doc != "" {
				doc += "\n"
			}
			doc += "Optional: " + absentMeaning(fl.Type) + " means absent."
		}
		tagged := isJSONTagName(fl.Wire)
		if !tagged {
			if doc != "" {
				doc += "\n"
			}
			doc += "Its JSON key, " + strconv.Quote(fl.Wire) + ", cannot be an encoding/json tag name: MarshalJSON and UnmarshalJSON read and write it."
		}
		if doc != "" {
			c = append(c, commentCode(doc)...)
		}
		field := jen.Id(fl.GoName).Add(fieldType(fl))
		if tagged {
			tag := fl.Wire
			if fl.Optional {
				tag += ",omitempty"
			}
			field = field.Tag(map[string]string{"json": tag})
		}
		c = append(c, field)
		out = append(out, jen.Add(c...))
	}
	return out
}

// isJSONTagName reports whether encoding/json takes k as a field name in a
// struct tag (its isValidTag): a key with a comma, a quote or a backslash
// would be misread, so such a field gets no json tag, and its doc names
// the key. The generated methods never read tags.
func isJSONTagName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", r):
		case unicode.IsLetter(r) || unicode.IsDigit(r):
		default:
			return false
		}
	}
	return true
}

// jsonKey is k as a JSON string, quotes included. Keys are printable
// (wireKeyProblem), so only the quote and the backslash need escaping;
// other characters, non-ASCII included, are valid JSON as they are.
func jsonKey(k string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(k) + `"`
}

func absentMeaning(t *Type) string {
	if byReference(t) {
		return "nil"
	}
	return "a nil pointer"
}

// byReference reports types whose nil value already means "absent".
func byReference(t *Type) bool {
	return t.Kind == KindList || t.Kind == KindMap || t.Kind == KindBytes
}

func fieldType(fl *Field) jen.Code {
	if fl.Optional && !byReference(fl.Type) {
		return jen.Op("*").Add(goType(fl.Type))
	}
	return goType(fl.Type)
}

func goType(t *Type) *jen.Statement {
	switch t.Kind {
	case KindBool:
		return jen.Bool()
	case KindInt32:
		return jen.Int32()
	case KindInt64:
		return jen.Int64()
	case KindFloat64:
		return jen.Float64()
	case KindString:
		return jen.String()
	case KindBytes:
		return jen.Index().Byte()
	case KindUUID:
		return rtEvent("UUID")
	case KindTimestamp:
		return jen.Qual("time", "Time")
	case KindDuration:
		return jen.Qual("time", "Duration")
	case KindDecimal:
		return rtEvent("Decimal")
	case KindList:
		return jen.Index().Add(goType(t.Elem))
	case KindMap:
		return jen.Map(jen.String()).Add(goType(t.Elem))
	case KindNamed:
		return jen.Id(t.Named.GoName)
	}
	panic(fmt.Sprintf("generator: unhandled kind %d", t.Kind)) // unreachable: compile resolves every type
}

// The runtime's wire functions for each scalar kind.
var (
	appendScalar = map[Kind]string{
		KindBool: "AppendBool", KindInt32: "AppendInt32", KindInt64: "AppendInt64", KindFloat64: "AppendFloat64",
		KindString: "AppendString", KindBytes: "AppendBytes", KindUUID: "AppendUUID", KindTimestamp: "AppendTime",
		KindDuration: "AppendDuration", KindDecimal: "AppendDecimal",
	}
	decodeScalar = map[Kind]string{
		KindBool: "DecodeBool", KindInt32: "DecodeInt32", KindInt64: "DecodeInt64", KindFloat64: "DecodeFloat64",
		KindString: "DecodeString", KindBytes: "DecodeBytes", KindUUID: "DecodeUUID", KindTimestamp: "DecodeTime",
		KindDuration: "DecodeDuration", KindDecimal: "DecodeDecimal",
	}
)

// appendFunc is a func([]byte, T) []byte value for t.
func appendFunc(t *Type) jen.Code {
	switch t.Kind {
	case KindNamed:
		return rtEvent("AppendRecord").Index(jen.Id(t.Named.GoName))
	case KindList:
		return rtEvent("ListAppender").Call(appendFunc(t.Elem))
	case KindMap:
		return rtEvent("MapAppender").Call(appendFunc(t.Elem))
	}
	return rtEvent(appendScalar[t.Kind])
}

// appendCall appends value v of type t to b.
func appendCall(t *Type, v jen.Code) jen.Code {
	b := jen.Id("b")
	switch t.Kind {
	case KindNamed:
		return jen.Add(v).Dot(methodAppendJSON).Call(b)
	case KindList:
		return rtEvent("AppendList").Call(b, v, appendFunc(t.Elem))
	case KindMap:
		return rtEvent("AppendMap").Call(b, v, appendFunc(t.Elem))
	}
	return rtEvent(appendScalar[t.Kind]).Call(b, v)
}

// decodeFunc is a func([]byte) (T, error) value for t.
func decodeFunc(t *Type) jen.Code {
	switch t.Kind {
	case KindNamed:
		return rtEvent("DecodeRecord").Index(jen.Id(t.Named.GoName))
	case KindList:
		return rtEvent("ListOf").Call(decodeFunc(t.Elem))
	case KindMap:
		return rtEvent("MapOf").Call(decodeFunc(t.Elem))
	}
	return rtEvent(decodeScalar[t.Kind])
}

// checkFunc is a func(*runtime.Validator, string, T) value for t, or nil
// when no value of t can be invalid.
func checkFunc(t *Type) jen.Code {
	method := func(name string) jen.Code {
		return jen.Parens(jen.Op("*").Add(rtEvent("Validator"))).Dot(name)
	}
	switch t.Kind {
	case KindUUID:
		return method("UUID")
	case KindTimestamp:
		return method("Time")
	case KindFloat64:
		return method("Finite")
	case KindDecimal:
		return method("Decimal")
	case KindNamed:
		return rtEvent("Nested").Index(jen.Id(t.Named.GoName))
	case KindList:
		if elem := checkFunc(t.Elem); elem != nil {
			return rtEvent("ListChecker").Call(elem)
		}
	case KindMap:
		if elem := checkFunc(t.Elem); elem != nil {
			return rtEvent("MapChecker").Call(elem)
		}
	}
	return nil
}

// checkStmt validates value v of field fl, or returns nil.
func checkStmt(fl *Field, v jen.Code) jen.Code {
	chk := jen.Id("chk")
	path := jen.Lit(fl.Wire) // errors name what a record carries
	t := fl.Type
	switch t.Kind {
	case KindString:
		if fl.IsKey {
			return chk.Dot("NonEmpty").Call(path, v)
		}
		return nil
	case KindUUID:
		return chk.Dot("UUID").Call(path, v)
	case KindTimestamp:
		return chk.Dot("Time").Call(path, v)
	case KindFloat64:
		return chk.Dot("Finite").Call(path, v)
	case KindDecimal:
		return chk.Dot("Decimal").Call(path, v)
	case KindNamed:
		return rtEvent("Nested").Call(jen.Op("&").Id("chk"), path, v)
	case KindList:
		if elem := checkFunc(t.Elem); elem != nil {
			return rtEvent("List").Call(jen.Op("&").Id("chk"), path, v, elem)
		}
	case KindMap:
		if elem := checkFunc(t.Elem); elem != nil {
			return rtEvent("Map").Call(jen.Op("&").Id("chk"), path, v, elem)
		}
	}
	return nil
}

func validateBody(recv *jen.Statement, fields []*Field) []jen.Code {
	var body []jen.Code
	for _, fl := range fields {
		field := recv.Clone().Dot(fl.GoName)
		if fl.Optional && !byReference(fl.Type) {
			if s := checkStmt(fl, jen.Op("*").Add(field.Clone())); s != nil {
				body = append(body, jen.If(field.Clone().Op("!=").Nil()).Block(s))
			}
			continue
		}
		if s := checkStmt(fl, field); s != nil {
			body = append(body, s)
		}
	}
	if len(body) == 0 {
		return []jen.Code{jen.Return(jen.Nil())}
	}
	return append([]jen.Code{jen.Var().Id("chk").Add(rtEvent("Validator"))}, append(body, jen.Return(jen.Id("chk").Dot("Err").Call()))...)
}

// emitJSON writes AppendJSON, MarshalJSON and UnmarshalJSON.
func emitJSON(f *jen.File, name string, recv *jen.Statement, valRecv, ptrRecv *jen.Statement, fields []*Field) {
	f.Line()
	f.Commentf("AppendJSON appends the wire form of %s to b (see docs/wire-format.md).", name)
	f.Func().Params(valRecv).Id(methodAppendJSON).Params(jen.Id("b").Index().Byte()).Index().Byte().BlockFunc(func(g *jen.Group) {
		g.Id("start").Op(":=").Len(jen.Id("b"))
		for _, fl := range fields {
			field := recv.Clone().Dot(fl.GoName)
			key := jen.Id("b").Op("=").Append(jen.Id("b"), jen.Lit(","+jsonKey(fl.Wire)+":").Op("..."))
			switch {
			case fl.Optional && fl.Type.Kind == KindNamed:
				// A method call dereferences the pointer itself.
				g.If(field.Clone().Op("!=").Nil()).Block(key, jen.Id("b").Op("=").Add(appendCall(fl.Type, field.Clone())))
			case fl.Optional && !byReference(fl.Type):
				g.If(field.Clone().Op("!=").Nil()).Block(key, jen.Id("b").Op("=").Add(appendCall(fl.Type, jen.Op("*").Add(field.Clone()))))
			case fl.Optional:
				g.If(field.Clone().Op("!=").Nil()).Block(key, jen.Id("b").Op("=").Add(appendCall(fl.Type, field.Clone())))
			default:
				g.Add(key)
				g.Id("b").Op("=").Add(appendCall(fl.Type, field.Clone()))
			}
		}
		g.Return(rtEvent("CloseObject").Call(jen.Id("b"), jen.Id("start")))
	})
	f.Line()
	f.Commentf("MarshalJSON implements json.Marshaler with the wire form.")
	f.Func().Params(valRecv.Clone()).Id(methodMarshalJSON).Params().Params(jen.Index().Byte(), jen.Error()).Block(
		jen.Return(recv.Clone().Dot(methodAppendJSON).Call(jen.Nil()), jen.Nil()),
	)
	f.Line()
	f.Commentf("UnmarshalJSON decodes the wire form, reporting every missing required field.")
	f.Func().Params(ptrRecv).Id(methodUnmarshalJSON).Params(jen.Id("data").Index().Byte()).Error().BlockFunc(func(g *jen.Group) {
		g.List(jen.Id("obj"), jen.Err()).Op(":=").Add(rtEvent("DecodeObject")).Call(jen.Id("data"))
		g.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err()))
		for _, fl := range fields {
			var call jen.Code
			args := []jen.Code{jen.Id("obj"), jen.Lit(fl.Wire), decodeFunc(fl.Type)}
			switch {
			case !fl.Optional:
				call = rtEvent("Field").Call(args...)
			case fl.Type.Kind == KindMap:
				call = rtEvent("OptionalMap").Call(args...)
			case byReference(fl.Type):
				call = rtEvent("OptionalList").Call(args...)
			default:
				call = rtEvent("OptionalField").Call(args...)
			}
			g.Add(recv.Clone().Dot(fl.GoName)).Op("=").Add(call)
		}
		g.Return(jen.Id("obj").Dot("Err").Call())
	})
}

// keyString converts a key field to its string form.
func keyString(fl *Field) jen.Code {
	v := jen.Id("e").Dot(fl.GoName)
	switch fl.Type.Kind {
	case KindUUID:
		return v.Dot("String").Call()
	case KindInt32:
		return jen.Qual("strconv", "FormatInt").Call(jen.Int64().Call(v), jen.Lit(10))
	case KindInt64:
		return jen.Qual("strconv", "FormatInt").Call(v, jen.Lit(10))
	case KindNamed:
		return jen.String().Call(v)
	}
	return v
}
