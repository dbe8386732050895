package generator

import (
	"encoding/json"
	"go/token"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The JSON Schema is written by hand; these tests hold it to the loader and
// the compiler, so that a key or a value added to one and not the other fails
// here. cmd/eventgen's tests run a real validator (ajv) on the goldens.

// jsonSchemaDoc is the part of a JSON Schema these tests read.
type jsonSchemaDoc struct {
	Schema        string                    `json:"$schema"`
	Properties    map[string]*jsonSchemaDoc `json:"properties"`
	Definitions   map[string]*jsonSchemaDoc `json:"definitions"`
	PropertyNames *jsonSchemaDoc            `json:"propertyNames"`
	Ref           string                    `json:"$ref"`
	Enum          []any                     `json:"enum"`
	Not           *jsonSchemaDoc            `json:"not"`
	Pattern       string                    `json:"pattern"`
	AnyOf         []*jsonSchemaDoc          `json:"anyOf"`
	Description   string                    `json:"description"`
}

func readJSONSchema(t *testing.T) *jsonSchemaDoc {
	t.Helper()
	var doc jsonSchemaDoc
	if err := json.Unmarshal(JSONSchema(), &doc); err != nil {
		t.Fatalf("eventgen.schema.json is not valid JSON: %v", err)
	}
	return &doc
}

// def returns the definition named by ref ("#/definitions/x"), or s itself.
func (d *jsonSchemaDoc) def(s *jsonSchemaDoc) *jsonSchemaDoc {
	for s != nil && s.Ref != "" {
		s = d.Definitions[strings.TrimPrefix(s.Ref, "#/definitions/")]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func TestJSONSchemaKeysAreTheLoaders(t *testing.T) {
	d := readJSONSchema(t)
	if d.Schema != "http://json-schema.org/draft-07/schema#" {
		t.Errorf("$schema is %q; editors and ajv are tested with draft-07", d.Schema)
	}
	// Event keys that land in the loader with the branches of issue 10
	// (version: breaking changes; ignore: silencing a rule), so that the
	// JSON Schema has them already.
	pending := []string{"version", "ignore"}
	field := d.def(d.Definitions["field"].AnyOf[1])
	for _, c := range []struct {
		what   string
		props  map[string]*jsonSchemaDoc
		loader []string
		extra  []string
	}{
		{"the schema", d.Properties, topKeys, nil},
		{"defaults", d.Properties["defaults"].Properties, defaultKeys, nil},
		{"an event", d.Definitions["event"].Properties, eventKeys, pending},
		{"a type", d.Definitions["namedType"].Properties, typeKeys, nil},
		{"a field", field.Properties, fieldKeys, nil},
		{"dedup", d.Definitions["dedup"].Properties, dedupKeys, nil},
		{"a pipeline", d.Definitions["pipeline"].Properties, pipelineKeys, nil},
	} {
		got := sortedKeys(c.props)
		want := slices.Sorted(slices.Values(slices.Concat(c.loader, c.extra)))
		want = slices.Compact(want)
		if !slices.Equal(got, want) {
			t.Errorf("keys of %s: JSON Schema has %v, the loader reads %v (plus %v)", c.what, got, c.loader, c.extra)
		}
	}
}

func TestJSONSchemaValueSetsAreTheCompilers(t *testing.T) {
	d := readJSONSchema(t)
	enumStrings := func(s *jsonSchemaDoc) []string {
		var out []string
		for _, v := range d.def(s).Enum {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := enumStrings(d.Definitions["guarantee"]), slices.Sorted(slices.Values(guaranteeNames)); !slices.Equal(got, want) {
		t.Errorf("guarantees: JSON Schema has %v, the compiler %v", got, want)
	}
	if got, want := enumStrings(d.Definitions["dedup"].Properties["store"]), sortedKeys(dedupStores); !slices.Equal(got, want) {
		t.Errorf("dedup stores: JSON Schema has %v, the compiler %v", got, want)
	}
	ignore := d.Definitions["event"].Properties["ignore"].PropertyNames
	got := regexp.MustCompile(`EG[0-9]{3}`).FindAllString(ignore.Pattern, -1)
	slices.Sort(got)
	if want := silenceableWarnings(); !slices.Equal(got, want) {
		t.Errorf("ignore: JSON Schema lets %v be silenced, the compiler %v", got, want)
	}
	var reserved []string
	for _, k := range sortedKeys(predeclared) {
		reserved = append(reserved, k)
	}
	for tok := token.BREAK; tok <= token.VAR; tok++ {
		if tok.IsKeyword() {
			reserved = append(reserved, tok.String())
		}
	}
	slices.Sort(reserved)
	if got := enumStrings(d.Properties["package"].Not); !slices.Equal(got, reserved) {
		t.Errorf("package names: JSON Schema rejects %v, the compiler %v", got, reserved)
	}
}

// TestJSONSchemaPatternsAgreeWithTheCompiler runs the JSON Schema's
// patterns (Go's RE2 reads them as JavaScript does: they use no
// backreferences or lookaround) on samples that the compiler's own checks
// decide. Where a pattern is looser than the compiler (unbalanced brackets
// deeper than three levels in a type, say), the sample is left out: the
// JSON Schema may accept more than eventgen, never less.
func TestJSONSchemaPatternsAgreeWithTheCompiler(t *testing.T) {
	d := readJSONSchema(t)
	re := func(name string, s *jsonSchemaDoc) *regexp.Regexp {
		t.Helper()
		rx, err := regexp.Compile(s.Pattern)
		if err != nil || s.Pattern == "" {
			t.Fatalf("pattern of %s %q: %v", name, s.Pattern, err)
		}
		return rx
	}
	check := func(name string, s *jsonSchemaDoc, want func(string) bool, samples ...string) {
		t.Helper()
		rx := re(name, s)
		var not *regexp.Regexp
		if s.Not != nil && s.Not.Pattern != "" {
			not = re(name+" (not)", s.Not)
		}
		for _, v := range samples {
			got := rx.MatchString(v) && (not == nil || !not.MatchString(v))
			if s.Not != nil {
				got = got && !slices.Contains(s.Not.Enum, any(v))
			}
			if got != want(v) {
				t.Errorf("%s %q: JSON Schema says valid=%v, eventgen says %v", name, v, got, want(v))
			}
		}
	}
	check("an UpperCamelCase name", d.Definitions["upperCamelName"], isUpperCamel,
		"OrderPlaced", "V2Order", "X", "order_placed", "Order_Status", "Order.Shipped", "ship-orders", "money", "", "Ünter")
	check("a field name", d.Definitions["fieldName"], isLowerSnake,
		"order_id", "line2", "http_url", "a", "Street", "zip-code", "orderId", "amount_", "paid__at", "2fa_used", "_internal", "")
	check("an enum value", d.Definitions["enumValue"], isEnumValue,
		"pending", "in-progress", "HIGH", "v1.2", "a_b", "", "2nd-try", "on hold", "-x")
	check("a topic", d.Definitions["event"].Properties["topic"], func(s string) bool { return topicProblem(s) == "" },
		"shop.orders.placed", "a", "A-b_c.9", ".", "..", "", "shop/orders", "shop orders", "ÜBER", strings.Repeat("a", 245), strings.Repeat("a", 246))
	check("a duration", d.Definitions["duration"], func(s string) bool {
		v, err := time.ParseDuration(s) // the compiler does not trim quoted values
		return err == nil && v > 0
	}, "168h", "30m", "1h30m", "90s", "1.5h", ".5h", "5.h", "10ms", "3µs", "3us", "7d", "one week", "168", "0", "0s", "0.0h", "-1h", "", "h", ".h", "1h 30m", " 168h", "+2h", "1h-30m")
	check("an ignore code", d.Definitions["event"].Properties["ignore"].PropertyNames, func(s string) bool { return silenceable(Code(s)) },
		"EG018", "EG024", "EB001", "EB010", "EB018", "EB019", "EB020", "EB000", "EB999", "EG022", "EG099", "eg024", "EG24", "EB1", "EB0001", "")
	check("a json key", d.def(d.Definitions["field"].AnyOf[1]).Properties["json"], func(s string) bool { return wireKeyProblem(s) == "" },
		"paymentId", "payment_id", `a"b`, `a\b`, "Größe", "a b", "$ref", "", "a\tb", "a\nb", "\x7f", "\u0085")
	typeOK := func(s string) bool {
		c := &compiler{types: map[string]*NamedType{"Money": {Name: "Money"}, "Point": {Name: "Point"}}}
		p := typeParser{src: strings.TrimSpace(s)}
		_, err := p.parse(c)
		return err == "" && p.pos == len(p.src)
	}
	check("a field type", d.Definitions["type"], typeOK,
		"string", "int64", "Money", " uuid ", "list<string>", "list <string>", "map<string,Money>", "map< string , list<Point> >",
		"map<string,list<map<string,Point>>>", "list<list<list<list<int32>>>>",
		"strng", "int", "boolean", "list string", "list<>", "list<string>!", "", "map<int64,Money>", "map<string",
		"list<string", "map<string,string>>", "list<list<string>", "strings")
}
