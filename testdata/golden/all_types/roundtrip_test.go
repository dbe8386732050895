package alltypes

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/eventgen/eventgen/runtime/event"
)

func ptr[T any](v T) *T { return &v }

// tenth is a variable so that tenth+0.2 is computed in float64, not folded
// exactly as a constant: it is 0.30000000000000004.
var tenth = 0.1

// full returns an Everything with every field, optional ones included, set
// to a value that is not its zero value.
func full() *Everything {
	at := time.Date(2024, 5, 1, 12, 30, 0, 120_000_000, time.UTC)
	label := "café"
	return &Everything{
		ID:     event.MustParseUUID("5f3c9a2e-8b1d-4c6e-9a7f-0e2d4b6c8a10"),
		Seq:    math.MinInt32,
		Big:    1<<53 + 1,
		Flag:   true,
		Ratio:  tenth + 0.2,
		Name:   "Zoë \"Z\" \\ \n\t<&>",
		Blob:   []byte{0, 1, 0xfe, 0xff},
		At:     at,
		Took:   90*time.Minute + 1500*time.Millisecond,
		Price:  "-12.50",
		Level:  LevelMidRange,
		Where:  Point{Lat: 52.52, Lng: -13.405, Label: &label},
		Box:    Box{Corners: []Point{{Lat: 1}, {Lng: 2}}, Tags: map[string]Level{"b": LevelLow, "a": LevelV12}},
		IDs:    []event.UUID{event.MustParseUUID("00000000-0000-4000-8000-000000000001"), event.NewUUID()},
		Grid:   [][]int64{{1, 2}, {}, {math.MaxInt64}},
		Prices: map[string]event.Decimal{"eur": "9.99", "usd": "+10", "": "0"},
		Nested: map[string][]Point{"x": {{Lat: 3, Lng: 4}}, "empty": {}},

		MaybeID:    ptr(event.MustParseUUID("ffffffff-ffff-4fff-bfff-ffffffffffff")),
		MaybeAt:    ptr(at.Add(time.Nanosecond)),
		MaybeLevel: ptr(LevelHIGH),
		MaybePoint: &Point{Lat: -1, Lng: 1e-300},
		MaybeList:  []time.Time{at, at.Add(-24 * time.Hour)},
		MaybeMap:   map[string]string{"k": "v", "quote\"key": "x"},
		MaybeBlob:  []byte("hi"),

		Key_:    "the key",
		HTTPURL: "https://example.com/?a=1&b=2",
	}
}

// minimal returns an Everything with only the required fields set.
func minimal() *Everything {
	e := full()
	e.MaybeID, e.MaybeAt, e.MaybeLevel, e.MaybePoint = nil, nil, nil, nil
	e.MaybeList, e.MaybeMap, e.MaybeBlob = nil, nil, nil
	return e
}

// paths lists the field path of every error joined in err.
func paths(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if je, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range je.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *event.FieldError
		if errors.As(err, &fe) {
			out = append(out, fe.Path)
			return
		}
		out = append(out, "<no path: "+err.Error()+">")
	}
	if err != nil {
		walk(err)
	}
	return out
}

func decode(t *testing.T, data []byte) *Everything {
	t.Helper()
	var e Everything
	if err := e.UnmarshalJSON(data); err != nil {
		t.Fatalf("UnmarshalJSON(%s): %v", data, err)
	}
	return &e
}

func TestRoundTripEveryField(t *testing.T) {
	for name, in := range map[string]*Everything{"full": full(), "minimal": minimal()} {
		t.Run(name, func(t *testing.T) {
			if err := in.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			data := in.AppendJSON(nil)
			if !json.Valid(data) {
				t.Fatalf("not JSON: %s", data)
			}
			out := decode(t, data)
			if !reflect.DeepEqual(in, out) {
				t.Errorf("round trip differs:\n in  %+v\n out %+v\n wire %s", in, out, data)
			}
			// Encoding again gives the same bytes: the form is canonical.
			if again := out.AppendJSON(nil); !bytes.Equal(again, data) {
				t.Errorf("re-encoding differs:\n%s\n%s", data, again)
			}
		})
	}
}

func TestAppendJSONAppends(t *testing.T) {
	prefix := []byte(`[1,`)
	got := full().AppendJSON(prefix)
	if !bytes.HasPrefix(got, prefix) || !json.Valid(append(got, ']')) {
		t.Errorf("AppendJSON does not append: %s", got)
	}
}

func TestEncodingJSONUsesTheWireForm(t *testing.T) {
	e := full()
	wire := e.AppendJSON(nil)
	// encoding/json re-escapes <, > and & in any Marshaler's output unless
	// told not to; with SetEscapeHTML(false) the bytes are the same.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	if std := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(std, wire) {
		t.Errorf("json.Encoder:\n%s\nAppendJSON:\n%s", std, wire)
	}
	std, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(std, []byte(`"name":"Zoë \"Z\" \\ \n\t\u003c\u0026\u003e"`)) {
		t.Errorf("json.Marshal: %s", std)
	}
	if out := decode(t, std); !reflect.DeepEqual(out, e) {
		t.Errorf("json.Marshal output decodes to %+v", out)
	}
	// Nested in a struct of the caller's, through the pointer and the
	// value-receiver record methods.
	type envelope struct {
		Event *Everything `json:"event"`
		Where Point       `json:"where"`
		Level Level       `json:"level"`
	}
	env := envelope{Event: e, Where: e.Where, Level: LevelV12}
	buf.Reset()
	if err := enc.Encode(env); err != nil {
		t.Fatal(err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	want := `{"event":` + string(wire) + `,"where":` + string(e.Where.AppendJSON(nil)) + `,"level":"v1.2"}`
	if string(b) != want {
		t.Errorf("envelope:\n got %s\nwant %s", b, want)
	}
	var back envelope
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, env) {
		t.Errorf("envelope round trip:\n%+v\n%+v", back, env)
	}
	// encoding/json reports the generated decoder's errors.
	var bad envelope
	if err := json.Unmarshal([]byte(`{"event":{},"where":{"lat":1,"lng":2},"level":"v1.2"}`), &bad); !errors.Is(err, event.ErrMissingField) {
		t.Errorf("json.Unmarshal of an empty event: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"level":"v2"}`), &bad); err == nil {
		t.Error("json.Unmarshal accepted an undeclared enum value")
	}
}

func TestWireFormOfEachType(t *testing.T) {
	e := minimal()
	e.At = time.Date(2024, 5, 1, 14, 30, 0, 0, time.FixedZone("CEST", 2*3600))
	e.Took = 90 * time.Minute
	e.Blob = []byte{0, 0xff}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.AppendJSON(nil), &m); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"id":       `"5f3c9a2e-8b1d-4c6e-9a7f-0e2d4b6c8a10"`,
		"seq":      `-2147483648`,
		"big":      `9007199254740993`,
		"flag":     `true`,
		"ratio":    `0.30000000000000004`,
		"blob":     `"AP8="`,
		"at":       `"2024-05-01T12:30:00Z"`,
		"took":     `"1h30m0s"`,
		"price":    `"-12.50"`,
		"level":    `"mid-range"`,
		"where":    `{"lat":52.52,"lng":-13.405,"label":"café"}`,
		"box":      `{"corners":[{"lat":1,"lng":0},{"lat":0,"lng":2}],"tags":{"a":"v1.2","b":"low"}}`,
		"grid":     `[[1,2],[],[9223372036854775807]]`,
		"prices":   `{"":"0","eur":"9.99","usd":"+10"}`,
		"nested":   `{"empty":[],"x":[{"lat":3,"lng":4}]}`,
		"key":      `"the key"`,
		"http_url": `"https://example.com/?a=1&b=2"`,
	} {
		if got := string(m[key]); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	for key := range m {
		if strings.HasPrefix(key, "maybe_") {
			t.Errorf("absent optional field %s was written", key)
		}
	}
	// Fields are written in schema order.
	wire := string(e.AppendJSON(nil))
	if !strings.HasPrefix(wire, `{"id":`) || !strings.HasSuffix(wire, `"http_url":"https://example.com/?a=1&b=2"}`) {
		t.Errorf("order: %s", wire)
	}
}

func TestTimestampsComeOutInUTC(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	e := minimal()
	e.At = time.Date(2024, 1, 1, 9, 0, 0, 5, tokyo)
	e.MaybeAt = ptr(time.Date(2023, 12, 31, 20, 0, 0, 0, time.FixedZone("EST", -5*3600)))
	e.MaybeList = []time.Time{time.Date(2024, 6, 1, 0, 0, 0, 0, tokyo)}
	data := e.AppendJSON(nil)
	for _, want := range []string{`"at":"2024-01-01T00:00:00.000000005Z"`, `"maybe_at":"2024-01-01T01:00:00Z"`, `"maybe_list":["2024-05-31T15:00:00Z"]`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("%s not in %s", want, data)
		}
	}
	out := decode(t, data)
	for name, pair := range map[string][2]time.Time{
		"at":         {e.At, out.At},
		"maybe_at":   {*e.MaybeAt, *out.MaybeAt},
		"maybe_list": {e.MaybeList[0], out.MaybeList[0]},
	} {
		if !pair[0].Equal(pair[1]) || pair[1].Location() != time.UTC {
			t.Errorf("%s: %v became %v (%v)", name, pair[0], pair[1], pair[1].Location())
		}
	}
	// Any offset is accepted on decode, and converted to UTC.
	data = bytes.Replace(data, []byte(`"at":"2024-01-01T00:00:00.000000005Z"`), []byte(`"at":"2024-01-01T09:00:00.000000005+09:00"`), 1)
	if out := decode(t, data); out.At != e.At.UTC() {
		t.Errorf("offset timestamp decoded to %v", out.At)
	}
}

func TestMissingRequiredFieldsAllReported(t *testing.T) {
	var e Everything
	err := e.UnmarshalJSON([]byte(`{}`))
	want := []string{"id", "seq", "big", "flag", "ratio", "name", "blob", "at", "took", "price",
		"level", "where", "box", "ids", "grid", "prices", "nested", "key", "http_url"}
	if got := paths(err); !slices.Equal(got, want) {
		t.Errorf("paths:\n got %q\nwant %q", got, want)
	}
	if !errors.Is(err, event.ErrMissingField) {
		t.Error("not ErrMissingField")
	}
	// null is missing, too; nested records report their own fields.
	err = e.UnmarshalJSON(bytes.Replace(minimal().AppendJSON(nil), []byte(`"name":"Zo`), []byte(`"name":null,"x":"Zo`), 1))
	if got := paths(err); !slices.Equal(got, []string{"name"}) {
		t.Errorf("null name: %q (%v)", got, err)
	}
	data := bytes.Replace(minimal().AppendJSON(nil), []byte(`{"lat":52.52,`), []byte(`{`), 1)
	data = bytes.Replace(data, []byte(`"corners":[{"lat":1,"lng":0},{"lat":0,"lng":2}]`), []byte(`"corners":[{"lat":1,"lng":0},{}]`), 1)
	err = e.UnmarshalJSON(data)
	if got := paths(err); !slices.Equal(got, []string{"where.lat", "box.corners[1].lat", "box.corners[1].lng"}) {
		t.Errorf("nested: %q (%v)", got, err)
	}
	for _, bad := range []string{`null`, `[]`, `"x"`, `{"id":`} {
		if err := e.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("UnmarshalJSON(%s) succeeded", bad)
		}
	}
}

func TestInvalidEnum(t *testing.T) {
	good := string(full().AppendJSON(nil))
	for _, tc := range []struct{ from, to, path string }{
		{`"level":"mid-range"`, `"level":"Mid-Range"`, "level"},
		{`"level":"mid-range"`, `"level":""`, "level"},
		{`"level":"mid-range"`, `"level":1`, "level"},
		{`"a":"v1.2"`, `"a":"v2"`, `box.tags["a"]`},
		{`"maybe_level":"HIGH"`, `"maybe_level":"high"`, "maybe_level"},
	} {
		var e Everything
		err := e.UnmarshalJSON([]byte(strings.Replace(good, tc.from, tc.to, 1)))
		if got := paths(err); !slices.Equal(got, []string{tc.path}) {
			t.Errorf("%s: paths %q (%v)", tc.to, got, err)
		}
	}
	var l Level
	if err := l.UnmarshalJSON([]byte(`"medium"`)); err == nil || !strings.Contains(err.Error(), "want one of low, mid-range, HIGH, v1.2") {
		t.Errorf("Level.UnmarshalJSON: %v", err)
	}
	if !LevelHIGH.Valid() || Level("high").Valid() || Level("").Valid() {
		t.Error("Valid")
	}
	if !slices.Equal(LevelValues(), []Level{"low", "mid-range", "HIGH", "v1.2"}) {
		t.Errorf("LevelValues = %q", LevelValues())
	}

	// Set in Go code, an undeclared value is caught by Validate.
	e := full()
	e.Level = "nope"
	e.MaybeLevel = ptr(Level(""))
	e.Box.Tags["c"] = "LOW"
	e.Nested["x"] = append(e.Nested["x"], Point{Lat: math.NaN()})
	err := e.Validate()
	want := []string{"level", `box.tags["c"]`, `nested["x"][1].lat`, "maybe_level"}
	if got := paths(err); !slices.Equal(got, want) {
		t.Errorf("Validate paths:\n got %q\nwant %q\n%v", got, want, err)
	}
}

func TestValidateZeroValue(t *testing.T) {
	var e Everything
	want := []string{"id", "at", "price", "level"}
	if got := paths(e.Validate()); !slices.Equal(got, want) {
		t.Errorf("zero Everything: %q, want %q", got, want)
	}
	f := full()
	f.Ratio = math.Inf(1)
	f.Price = "1e3"
	f.IDs[1] = event.UUID{}
	f.MaybeList[1] = time.Time{}
	f.MaybeID = &event.UUID{}
	want = []string{"ratio", "price", "ids[1]", "maybe_id", "maybe_list[1]"}
	if got := paths(f.Validate()); !slices.Equal(got, want) {
		t.Errorf("bad values: %q, want %q", got, want)
	}
	if !errors.Is(f.Validate(), event.ErrRequired) {
		t.Error("not ErrRequired")
	}
}

func TestOptionalFields(t *testing.T) {
	e := minimal()
	data := e.AppendJSON(nil)
	if bytes.Contains(data, []byte("maybe_")) {
		t.Errorf("absent optional fields written: %s", data)
	}
	// Absent and null both decode as absent.
	withNulls := bytes.Replace(data, []byte(`{"id"`), []byte(`{"maybe_id":null,"maybe_at":null,"maybe_level":null,"maybe_point":null,"maybe_list":null,"maybe_map":null,"maybe_blob":null,"id"`), 1)
	for _, d := range [][]byte{data, withNulls} {
		if out := decode(t, d); !reflect.DeepEqual(out, e) {
			t.Errorf("decoded %s to %+v", d, out)
		}
	}
	// Present but empty is not absent.
	e.MaybeList, e.MaybeMap, e.MaybeBlob = []time.Time{}, map[string]string{}, []byte{}
	data = e.AppendJSON(nil)
	for _, want := range []string{`"maybe_list":[]`, `"maybe_map":{}`, `"maybe_blob":""`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("%s not in %s", want, data)
		}
	}
	out := decode(t, data)
	if out.MaybeList == nil || out.MaybeMap == nil || out.MaybeBlob == nil {
		t.Errorf("empty optional fields decoded as absent: %+v", out)
	}
	// A point's optional label.
	p := Point{Lat: 1, Lng: 2}
	if got := string(p.AppendJSON(nil)); got != `{"lat":1,"lng":2}` {
		t.Errorf("Point = %s", got)
	}
}

func TestDecimalsAreStrings(t *testing.T) {
	e := minimal()
	e.Price = "123456789012345678901234567890.000000000000000000001"
	data := e.AppendJSON(nil)
	if !bytes.Contains(data, []byte(`"price":"123456789012345678901234567890.000000000000000000001"`)) {
		t.Errorf("price: %s", data)
	}
	if out := decode(t, data); out.Price != e.Price {
		t.Errorf("price %s became %s", e.Price, out.Price)
	}
	var x Everything
	err := x.UnmarshalJSON(bytes.Replace(data, []byte(`"price":"123456789012345678901234567890.000000000000000000001"`), []byte(`"price":12.5`), 1))
	if got := paths(err); !slices.Equal(got, []string{"price"}) {
		t.Errorf("a JSON number for a decimal: %q (%v)", got, err)
	}
	err = x.UnmarshalJSON(bytes.Replace(data, []byte(`"eur":"9.99"`), []byte(`"eur":"9,99"`), 1))
	if got := paths(err); !slices.Equal(got, []string{`prices["eur"]`}) {
		t.Errorf("a malformed decimal: %q (%v)", got, err)
	}
}

func TestBytesAreBase64(t *testing.T) {
	e := minimal()
	for _, tc := range []struct {
		blob []byte
		wire string
	}{
		{[]byte{}, `""`},
		{[]byte("f"), `"Zg=="`},
		{[]byte("fo"), `"Zm8="`},
		{[]byte("foo"), `"Zm9v"`},
		{[]byte{0xfb, 0xff}, `"+/8="`},
	} {
		e.Blob = tc.blob
		data := e.AppendJSON(nil)
		if !bytes.Contains(data, []byte(`"blob":`+tc.wire)) {
			t.Errorf("blob %v: %s", tc.blob, data)
		}
		if out := decode(t, data); !bytes.Equal(out.Blob, tc.blob) {
			t.Errorf("blob %v became %v", tc.blob, out.Blob)
		}
	}
	var x Everything
	for _, bad := range []string{`"-_8="`, `"Zg"`, `"***"`} {
		err := x.UnmarshalJSON(bytes.Replace(e.AppendJSON(nil), []byte(`"blob":"+/8="`), []byte(`"blob":`+bad), 1))
		if got := paths(err); !slices.Equal(got, []string{"blob"}) {
			t.Errorf("blob %s: %q (%v)", bad, got, err)
		}
	}
}

func TestKeys(t *testing.T) {
	e := full()
	if e.Key() != "5f3c9a2e-8b1d-4c6e-9a7f-0e2d4b6c8a10" {
		t.Errorf("Key = %q", e.Key())
	}
	if want := event.JoinKey("5f3c9a2e-8b1d-4c6e-9a7f-0e2d4b6c8a10", "-2147483648", "mid-range"); e.IdempotencyKey() != want {
		t.Errorf("IdempotencyKey = %q, want %q", e.IdempotencyKey(), want)
	}
	// A redelivery decodes to the same keys.
	out := decode(t, e.AppendJSON(nil))
	if out.Key() != e.Key() || out.IdempotencyKey() != e.IdempotencyKey() {
		t.Error("keys changed in a round trip")
	}
	et := e.EventType()
	if et.Topic != "test.everything" || et.Guarantee != event.AtLeastOnce || et.CEType != "alltypes.Everything.v1" ||
		et.Source != "urn:eventgen:test" || et.Dedup != event.DedupRedis || et.DedupTTL != 24*time.Hour || et.Retention != 12*time.Hour {
		t.Errorf("EventType = %+v", et)
	}
	var l Legacy
	if l.Key() != "" || l.IdempotencyKey() != "" || l.EventType().Dedup != event.DedupNone {
		t.Errorf("Legacy keys: %q %q", l.Key(), l.IdempotencyKey())
	}
}

// sanitize is what a JSON string decoder gives back for s: each byte of
// invalid UTF-8 becomes U+FFFD.
func sanitize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte
		i += n
	}
	return b.String()
}

func TestStringsStayValidJSON(t *testing.T) {
	inputs := []string{
		"", `"`, `\`, `\"`, "\x00", "\x1f", "\x7f", "\u2028\u2029", "</script>", "\xff", "\xc3\x28",
		"\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "日本語", "🎉", "a\r\nb", "{\"k\":[1]}", `\u0041`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			switch rng.IntN(4) {
			case 0:
				b[i] = byte(rng.IntN(0x20)) // control characters
			case 1:
				b[i] = `"\/{}[]:,`[rng.IntN(9)]
			case 2:
				b[i] = byte(0x80 + rng.IntN(0x80)) // UTF-8 fragments
			default:
				b[i] = byte(0x20 + rng.IntN(0x5f))
			}
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		e := minimal()
		e.Name, e.Key_ = s, s
		e.Where.Label = &s
		e.Prices = map[string]event.Decimal{s: "1"}
		e.MaybeMap = map[string]string{s: s}
		data := e.AppendJSON(nil)
		if !json.Valid(data) {
			t.Fatalf("%q: not JSON: %s", s, data)
		}
		out := decode(t, data)
		want := sanitize(s)
		if out.Name != want || out.Key_ != want || *out.Where.Label != want || out.MaybeMap[want] != want {
			t.Errorf("%q came back as %q", s, out.Name)
		}
		if _, ok := out.Prices[want]; !ok {
			t.Errorf("map key %q came back as %q", s, slices.Collect(func(yield func(string) bool) {
				for k := range out.Prices {
					yield(k)
				}
			}))
		}
		// encoding/json reads the same text.
		var std map[string]any
		if err := json.Unmarshal(data, &std); err != nil || std["name"] != want {
			t.Errorf("%q: encoding/json reads %q (%v)", s, std["name"], err)
		}
	}
}
