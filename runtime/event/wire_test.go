package event_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
)

// money is a hand-written record in the shape the generator emits, so that
// nested paths can be tested without generated code.
type money struct {
	Cents    int64
	Currency string
	Rate     float64
}

func (m money) AppendJSON(b []byte) []byte {
	start := len(b)
	b = append(b, `,"cents":`...)
	b = event.AppendInt64(b, m.Cents)
	b = append(b, `,"currency":`...)
	b = event.AppendString(b, m.Currency)
	b = append(b, `,"rate":`...)
	b = event.AppendFloat64(b, m.Rate)
	return event.CloseObject(b, start)
}

func (m *money) UnmarshalJSON(data []byte) error {
	obj, err := event.DecodeObject(data)
	if err != nil {
		return err
	}
	m.Cents = event.Field(obj, "cents", event.DecodeInt64)
	m.Currency = event.Field(obj, "currency", event.DecodeString)
	m.Rate = event.Field(obj, "rate", event.DecodeFloat64)
	return obj.Err()
}

func (m money) Validate() error {
	var chk event.Validator
	chk.NonEmpty("currency", m.Currency)
	chk.Finite("rate", m.Rate)
	return chk.Err()
}

// paths lists the field paths of every FieldError in err, in order.
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

func TestScalarsRoundTrip(t *testing.T) {
	for _, v := range []bool{true, false} {
		b := event.AppendBool(nil, v)
		got, err := event.DecodeBool(b)
		if err != nil || got != v {
			t.Errorf("bool %v: %s → %v, %v", v, b, got, err)
		}
	}
	for _, v := range []int32{0, 1, -1, math.MaxInt32, math.MinInt32} {
		b := event.AppendInt32(nil, v)
		got, err := event.DecodeInt32(b)
		if err != nil || got != v {
			t.Errorf("int32 %d: %s → %d, %v", v, b, got, err)
		}
	}
	for _, v := range []int64{0, 42, -42, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64} {
		b := event.AppendInt64(nil, v)
		got, err := event.DecodeInt64(b)
		if err != nil || got != v {
			t.Errorf("int64 %d: %s → %d, %v", v, b, got, err)
		}
	}
	for _, v := range []float64{0, 1.5, -2.25, 1e21, 1e-7, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1 + 0.2} {
		b := event.AppendFloat64(nil, v)
		if !json.Valid(b) {
			t.Errorf("float64 %v: %s is not JSON", v, b)
		}
		got, err := event.DecodeFloat64(b)
		if err != nil || got != v {
			t.Errorf("float64 %v: %s → %v, %v", v, b, got, err)
		}
	}
}

func TestIntegersRejectWhatDoesNotFit(t *testing.T) {
	for _, raw := range []string{`2147483648`, `-2147483649`, `1.5`, `"1"`, `true`, `1e3`} {
		if v, err := event.DecodeInt32([]byte(raw)); err == nil {
			t.Errorf("DecodeInt32(%s) = %d, want an error", raw, v)
		}
	}
	for _, raw := range []string{`9223372036854775808`, `0.5`, `"7"`, `[]`} {
		if v, err := event.DecodeInt64([]byte(raw)); err == nil {
			t.Errorf("DecodeInt64(%s) = %d, want an error", raw, v)
		}
	}
	if _, err := event.DecodeFloat64([]byte(`"1.5"`)); err == nil {
		t.Error("DecodeFloat64 accepted a string")
	}
	if _, err := event.DecodeBool([]byte(`1`)); err == nil {
		t.Error("DecodeBool accepted a number")
	}
}

func TestFloatNotFiniteIsNull(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := string(event.AppendFloat64(nil, v)); got != "null" {
			t.Errorf("AppendFloat64(%v) = %s, want null", v, got)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	inputs := []string{
		"", "plain", `quote " inside`, `back\slash`, "new\nline", "tab\there", "cr\rhere",
		"\x00\x01\x1f", "\x7f", "<script>&amp;</script>", "é ü 世界 🎉", "\u2028\u2029",
		"bad utf8 \xff\xfe end", "\xc3", "truncated \xe4\xb8", "\xed\xa0\x80 surrogate",
		"ends with backslash \\", `{"json": "inside"}`,
	}
	for _, s := range inputs {
		got := event.AppendString(nil, s)
		if !json.Valid(got) {
			t.Errorf("AppendString(%q) = %s: not valid JSON", s, got)
			continue
		}
		var ours, theirs string
		if err := json.Unmarshal(got, &ours); err != nil {
			t.Fatal(err)
		}
		std, _ := json.Marshal(s)
		if err := json.Unmarshal(std, &theirs); err != nil {
			t.Fatal(err)
		}
		// Both replace invalid UTF-8 with U+FFFD; everything else survives.
		if ours != theirs {
			t.Errorf("AppendString(%q) decodes to %q, encoding/json's form to %q", s, ours, theirs)
		}
		back, err := event.DecodeString(got)
		if err != nil || back != ours {
			t.Errorf("DecodeString(%s) = %q, %v", got, back, err)
		}
	}
	for s, want := range map[string]string{
		`a"b`:      `"a\"b"`,
		`a\b`:      `"a\\b"`,
		"a\nb\tc":  `"a\nb\tc"`,
		"\x01":     `"\u0001"`,
		"\x1f":     `"\u001f"`,
		"x\xffy":   `"x\ufffdy"`,
		"<&>":      `"<&>"`,
		"世界":       `"世界"`,
		"\u2028":   "\"\u2028\"",
		"\r":       `"\r"`,
		"\x00 end": `"\u0000 end"`,
	} {
		if got := string(event.AppendString(nil, s)); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, v := range [][]byte{{}, {0}, {0xff, 0xfe, 0xfd}, []byte("hello, world"), {1, 2, 3, 4}} {
		b := event.AppendBytes(nil, v)
		std, _ := json.Marshal(v) // encoding/json also writes standard base64 with padding
		if string(b) != string(std) {
			t.Errorf("AppendBytes(%v) = %s, encoding/json %s", v, b, std)
		}
		got, err := event.DecodeBytes(b)
		if err != nil || !slices.Equal(got, v) {
			t.Errorf("DecodeBytes(%s) = %v, %v", b, got, err)
		}
	}
	if got := string(event.AppendBytes(nil, nil)); got != `""` {
		t.Errorf("AppendBytes(nil) = %s", got)
	}
	for _, raw := range []string{`"AQID"`, `"AQIDBA=="`} {
		if _, err := event.DecodeBytes([]byte(raw)); err != nil {
			t.Errorf("DecodeBytes(%s): %v", raw, err)
		}
	}
	// Unpadded, URL-safe alphabet, not a string.
	for _, raw := range []string{`"AQIDBA"`, `"-_8="`, `[1,2]`, `"!!"`} {
		if v, err := event.DecodeBytes([]byte(raw)); err == nil {
			t.Errorf("DecodeBytes(%s) = %v, want an error", raw, v)
		}
	}
}

func TestUUID(t *testing.T) {
	const canon = "123e4567-e89b-12d3-a456-426614174000"
	u, err := event.ParseUUID(canon)
	if err != nil {
		t.Fatal(err)
	}
	if u.String() != canon {
		t.Errorf("String() = %s", u)
	}
	upper, err := event.ParseUUID(strings.ToUpper(canon))
	if err != nil || upper != u {
		t.Errorf("upper case: %v, %v", upper, err)
	}
	if got := string(event.AppendUUID(nil, upper)); got != `"`+canon+`"` {
		t.Errorf("AppendUUID writes %s, want lower case", got)
	}
	got, err := event.DecodeUUID([]byte(`"` + strings.ToUpper(canon) + `"`))
	if err != nil || got != u {
		t.Errorf("DecodeUUID: %v, %v", got, err)
	}
	for _, bad := range []string{
		"", "123e4567e89b12d3a456426614174000", "{123e4567-e89b-12d3-a456-426614174000}",
		"urn:uuid:123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-42661417400g",
		"123e4567+e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-4266141740000",
		"123e456-7e89b-12d3-a456-426614174000",
	} {
		if v, err := event.ParseUUID(bad); err == nil {
			t.Errorf("ParseUUID(%q) = %v, want an error", bad, v)
		}
	}
	if _, err := event.DecodeUUID([]byte(`42`)); err == nil {
		t.Error("DecodeUUID accepted a number")
	}
	var zero event.UUID
	if !zero.IsZero() || zero.String() != "00000000-0000-0000-0000-000000000000" {
		t.Errorf("zero UUID: %v %s", zero.IsZero(), zero)
	}
	n := event.NewUUID()
	if n.IsZero() || n == event.NewUUID() {
		t.Error("NewUUID is not random")
	}
	if s := n.String(); s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
		t.Errorf("NewUUID %s is not version 4, variant RFC 9562", s)
	}
	text, _ := u.MarshalText()
	var back event.UUID
	if err := back.UnmarshalText(text); err != nil || back != u {
		t.Errorf("text round trip: %v, %v", back, err)
	}
	if err := back.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText accepted nope")
	}
	if event.MustParseUUID(canon) != u {
		t.Error("MustParseUUID")
	}
	defer func() {
		if recover() == nil {
			t.Error("MustParseUUID did not panic")
		}
	}()
	event.MustParseUUID("nope")
}

func TestTime(t *testing.T) {
	berlin := time.FixedZone("CEST", 2*3600)
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), `"2024-05-01T12:00:00Z"`},
		{time.Date(2024, 5, 1, 14, 0, 0, 0, berlin), `"2024-05-01T12:00:00Z"`},
		{time.Date(2024, 5, 1, 12, 0, 0, 500_000_000, time.UTC), `"2024-05-01T12:00:00.5Z"`},
		{time.Date(2024, 5, 1, 12, 0, 0, 1, time.UTC), `"2024-05-01T12:00:00.000000001Z"`},
		{time.Date(1999, 12, 31, 23, 59, 59, 123456000, time.UTC), `"1999-12-31T23:59:59.123456Z"`},
	} {
		got := string(event.AppendTime(nil, tc.in))
		if got != tc.want {
			t.Errorf("AppendTime(%v) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := event.DecodeTime([]byte(got))
		if err != nil || !back.Equal(tc.in) || back.Location() != time.UTC {
			t.Errorf("DecodeTime(%s) = %v, %v", got, back, err)
		}
	}
	// A monotonic clock reading is dropped, the instant kept.
	now := time.Now()
	back, err := event.DecodeTime(event.AppendTime(nil, now))
	if err != nil || !back.Equal(now) {
		t.Errorf("now: %v, %v", back, err)
	}
	// Any offset is accepted on decode and converted to UTC.
	back, err = event.DecodeTime([]byte(`"2024-05-01T14:00:00.25+02:00"`))
	if err != nil || back != time.Date(2024, 5, 1, 12, 0, 0, 250_000_000, time.UTC) {
		t.Errorf("offset: %v, %v", back, err)
	}
	for _, bad := range []string{`"2024-05-01"`, `"2024-05-01 12:00:00Z"`, `"2024-05-01T12:00:00"`, `1714564800`, `"yesterday"`} {
		if v, err := event.DecodeTime([]byte(bad)); err == nil {
			t.Errorf("DecodeTime(%s) = %v, want an error", bad, v)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * time.Minute:         `"1h30m0s"`,
		0:                        `"0s"`,
		-1500 * time.Millisecond: `"-1.5s"`,
		168 * time.Hour:          `"168h0m0s"`,
		time.Nanosecond:          `"1ns"`,
	} {
		got := string(event.AppendDuration(nil, d))
		if got != want {
			t.Errorf("AppendDuration(%v) = %s, want %s", d, got, want)
		}
		back, err := event.DecodeDuration([]byte(got))
		if err != nil || back != d {
			t.Errorf("DecodeDuration(%s) = %v, %v", got, back, err)
		}
	}
	for raw, want := range map[string]time.Duration{`"90m"`: 90 * time.Minute, `"1.5h"`: 90 * time.Minute, `"3us"`: 3 * time.Microsecond} {
		if got, err := event.DecodeDuration([]byte(raw)); err != nil || got != want {
			t.Errorf("DecodeDuration(%s) = %v, %v", raw, got, err)
		}
	}
	for _, bad := range []string{`"7d"`, `"1 hour"`, `3600`, `""`} {
		if v, err := event.DecodeDuration([]byte(bad)); err == nil {
			t.Errorf("DecodeDuration(%s) = %v, want an error", bad, v)
		}
	}
}

func TestDecimal(t *testing.T) {
	for _, s := range []string{"0", "-12.50", "+3", "007", "1.000000000000000000000000001", "123456789012345678901234567890"} {
		d, err := event.ParseDecimal(s)
		if err != nil || string(d) != s || !d.Valid() {
			t.Errorf("ParseDecimal(%q) = %q, %v", s, d, err)
		}
		b := event.AppendDecimal(nil, d)
		if string(b) != `"`+s+`"` {
			t.Errorf("AppendDecimal(%s) = %s", s, b)
		}
		back, err := event.DecodeDecimal(b)
		if err != nil || back != d {
			t.Errorf("DecodeDecimal(%s) = %q, %v", b, back, err)
		}
	}
	for _, s := range []string{"", "-", "+", ".5", "5.", "1e3", "1,5", " 1", "1 ", "--1", "1.2.3", "NaN", "Inf", "0x10", "١٢"} {
		if d, err := event.ParseDecimal(s); err == nil {
			t.Errorf("ParseDecimal(%q) = %q, want an error", s, d)
		}
		if event.Decimal(s).Valid() {
			t.Errorf("Decimal(%q).Valid() = true", s)
		}
	}
	// A decimal is a string on the wire: a JSON number could round.
	if _, err := event.DecodeDecimal([]byte(`12.5`)); err == nil {
		t.Error("DecodeDecimal accepted a JSON number")
	}
	if _, err := event.Decimal("1e3").MarshalText(); err == nil {
		t.Error("MarshalText accepted 1e3")
	}
	var d event.Decimal
	if err := d.UnmarshalText([]byte("-0.01")); err != nil || d != "-0.01" || d.String() != "-0.01" {
		t.Errorf("UnmarshalText: %q, %v", d, err)
	}
}

func TestListsAndMaps(t *testing.T) {
	if got := string(event.AppendList[int64](nil, nil, event.AppendInt64)); got != "[]" {
		t.Errorf("nil list = %s", got)
	}
	if got := string(event.AppendMap[string](nil, nil, event.AppendString)); got != "{}" {
		t.Errorf("nil map = %s", got)
	}
	m := map[string]int32{"b": 2, "a": 1, "é": 4, `q"k`: 3, "": 0}
	got := string(event.AppendMap(nil, m, event.AppendInt32))
	if want := `{"":0,"a":1,"b":2,"q\"k":3,"é":4}`; got != want {
		t.Errorf("AppendMap = %s, want %s (sorted keys, escaped)", got, want)
	}
	back, err := event.DecodeMap([]byte(got), event.DecodeInt32)
	if err != nil || !reflect.DeepEqual(back, m) {
		t.Errorf("DecodeMap = %v, %v", back, err)
	}

	grid := [][]int64{{1, 2}, {}, {3}}
	b := event.AppendList(nil, grid, event.ListAppender(event.AppendInt64))
	if string(b) != "[[1,2],[],[3]]" {
		t.Errorf("nested list = %s", b)
	}
	gridBack, err := event.ListOf(event.ListOf(event.DecodeInt64))(b)
	if err != nil || !reflect.DeepEqual(gridBack, grid) {
		t.Errorf("nested list back = %v, %v", gridBack, err)
	}

	nested := map[string]map[string]string{"x": {"k": "v"}, "a": {}}
	b = event.AppendMap(nil, nested, event.MapAppender(event.AppendString))
	if string(b) != `{"a":{},"x":{"k":"v"}}` {
		t.Errorf("nested map = %s", b)
	}
	nestedBack, err := event.MapOf(event.MapOf(event.DecodeString))(b)
	if err != nil || !reflect.DeepEqual(nestedBack, nested) {
		t.Errorf("nested map back = %v, %v", nestedBack, err)
	}

	recs := []money{{Cents: 1, Currency: "EUR"}, {Cents: -2, Currency: "USD", Rate: 0.5}}
	b = event.AppendList(nil, recs, event.AppendRecord[money])
	if string(b) != `[{"cents":1,"currency":"EUR","rate":0},{"cents":-2,"currency":"USD","rate":0.5}]` {
		t.Errorf("records = %s", b)
	}
	recsBack, err := event.ListOf(event.DecodeRecord[money])(b)
	if err != nil || !reflect.DeepEqual(recsBack, recs) {
		t.Errorf("records back = %v, %v", recsBack, err)
	}

	// null is not a zero value inside a list or map: it is rejected.
	_, err = event.DecodeList([]byte(`[1,null,"x"]`), event.DecodeInt64)
	if got := paths(err); !slices.Equal(got, []string{"[1]", "[2]"}) {
		t.Errorf("null element: %q (%v)", got, err)
	}
	_, err = event.DecodeMap([]byte(`{"a":null,"b":""}`), event.DecodeString)
	if got := paths(err); !slices.Equal(got, []string{`["a"]`}) {
		t.Errorf("null map value: %q (%v)", got, err)
	}
	if _, err := event.DecodeList([]byte(`{"a":1}`), event.DecodeInt64); err == nil {
		t.Error("DecodeList accepted an object")
	}
	if _, err := event.DecodeMap([]byte(`[1]`), event.DecodeInt64); err == nil {
		t.Error("DecodeMap accepted an array")
	}
}

func TestCloseObject(t *testing.T) {
	b := []byte("prefix:")
	start := len(b)
	if got := string(event.CloseObject(b, start)); got != "prefix:{}" {
		t.Errorf("empty object = %s", got)
	}
	b = append(b, `,"a":1,"b":2`...)
	if got := string(event.CloseObject(b, start)); got != `prefix:{"a":1,"b":2}` {
		t.Errorf("object = %s", got)
	}
}

func TestDecodeObject(t *testing.T) {
	for _, bad := range []string{`null`, `[]`, `"x"`, `1`, `{`, ``, `{"a":1}x`} {
		if _, err := event.DecodeObject([]byte(bad)); err == nil {
			t.Errorf("DecodeObject(%q) succeeded", bad)
		}
	}
	// Unknown members are ignored: a newer writer may add fields.
	var m money
	if err := json.Unmarshal([]byte(`{"cents":5,"currency":"EUR","rate":1,"extra":{"x":[1,2]}}`), &m); err != nil {
		t.Fatal(err)
	}
	if m != (money{Cents: 5, Currency: "EUR", Rate: 1}) {
		t.Errorf("decoded %+v", m)
	}
}

func TestFieldAndOptionalField(t *testing.T) {
	obj, err := event.DecodeObject([]byte(`{"a":1,"n":null,"s":"x","l":[1],"m":{"k":2},"ln":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if v := event.Field(obj, "a", event.DecodeInt64); v != 1 {
		t.Errorf("a = %d", v)
	}
	if p := event.OptionalField(obj, "s", event.DecodeString); p == nil || *p != "x" {
		t.Errorf("s = %v", p)
	}
	if p := event.OptionalField(obj, "absent", event.DecodeString); p != nil {
		t.Errorf("absent = %v", *p)
	}
	if p := event.OptionalField(obj, "n", event.DecodeString); p != nil {
		t.Errorf("null = %v", *p)
	}
	if l := event.OptionalList(obj, "l", event.ListOf(event.DecodeInt64)); !slices.Equal(l, []int64{1}) {
		t.Errorf("l = %v", l)
	}
	if l := event.OptionalList(obj, "ln", event.ListOf(event.DecodeInt64)); l != nil {
		t.Errorf("ln = %v", l)
	}
	if m := event.OptionalMap(obj, "m", event.MapOf(event.DecodeInt64)); m["k"] != 2 {
		t.Errorf("m = %v", m)
	}
	if m := event.OptionalMap(obj, "absent", event.MapOf(event.DecodeInt64)); m != nil {
		t.Errorf("absent map = %v", m)
	}
	if err := obj.Err(); err != nil {
		t.Fatalf("no error expected yet: %v", err)
	}
	// Missing and null required members, and a bad optional one: all reported.
	event.Field(obj, "missing", event.DecodeInt64)
	event.Field(obj, "n", event.DecodeString)
	if p := event.OptionalField(obj, "s", event.DecodeInt64); p != nil {
		t.Errorf("bad optional decoded to %v", *p)
	}
	err = obj.Err()
	if want := []string{"missing", "n", "s"}; !slices.Equal(paths(err), want) {
		t.Errorf("paths = %q, want %q (%v)", paths(err), want, err)
	}
	if !errors.Is(err, event.ErrMissingField) {
		t.Errorf("errors.Is(err, ErrMissingField) is false: %v", err)
	}
	if !strings.Contains(err.Error(), "missing: required field is missing") {
		t.Errorf("message: %v", err)
	}
}

func TestFieldErrorPaths(t *testing.T) {
	type doc struct {
		total money
		items []money
		grid  [][]int64
		byKey map[string][]money
		tags  map[string]string
	}
	decode := func(data string) error {
		var d doc
		obj, err := event.DecodeObject([]byte(data))
		if err != nil {
			return err
		}
		d.total = event.Field(obj, "total", event.DecodeRecord[money])
		d.items = event.Field(obj, "items", event.ListOf(event.DecodeRecord[money]))
		d.grid = event.Field(obj, "grid", event.ListOf(event.ListOf(event.DecodeInt64)))
		d.byKey = event.Field(obj, "by_key", event.MapOf(event.ListOf(event.DecodeRecord[money])))
		d.tags = event.Field(obj, "tags", event.MapOf(event.DecodeString))
		return obj.Err()
	}
	ok := `{"cents":1,"currency":"EUR","rate":0}`
	err := decode(`{
		"total": {"cents":"1","rate":0},
		"items": [` + ok + `, ` + ok + `, {"cents":1.5,"currency":"EUR","rate":0}, 7],
		"grid": [[1],[2,"x"],[3,4,null]],
		"by_key": {"b": [` + ok + `, {"currency":"EUR","rate":0}], "a\"q": 5},
		"tags": {"k": 1}
	}`)
	want := []string{
		"total.cents", "total.currency",
		"items[2].cents", "items[3]",
		"grid[1][1]", "grid[2][2]",
		`by_key["a\"q"]`, `by_key["b"][1].cents`,
		`tags["k"]`,
	}
	if got := paths(err); !slices.Equal(got, want) {
		t.Errorf("paths:\n got %q\nwant %q\n%v", got, want, err)
	}
	var fe *event.FieldError
	if !errors.As(err, &fe) || fe.Path != "total.cents" {
		t.Errorf("errors.As gives %v", fe)
	}
	if !errors.Is(err, event.ErrMissingField) {
		t.Error("a missing nested field is not ErrMissingField")
	}
	if !strings.Contains(err.Error(), `by_key["b"][1].cents: required field is missing`) {
		t.Errorf("message:\n%v", err)
	}
	// A nested value that is not an object names the field.
	err = decode(`{"total": [], "items": [], "grid": [], "by_key": {}, "tags": {}}`)
	if got := paths(err); !slices.Equal(got, []string{"total"}) {
		t.Errorf("paths = %q (%v)", got, err)
	}
	if err := decode(`{"total":` + ok + `,"items":[],"grid":[],"by_key":{},"tags":{}}`); err != nil {
		t.Errorf("valid document: %v", err)
	}
}

func TestFieldErrorFormatting(t *testing.T) {
	inner := errors.New("boom")
	fe := &event.FieldError{Path: "a.b[1]", Err: inner}
	if fe.Error() != "a.b[1]: boom" || !errors.Is(fe, inner) {
		t.Errorf("%v", fe)
	}
	if (&event.FieldError{Err: inner}).Error() != "boom" {
		t.Error("a FieldError without a path prints only its error")
	}
}

func TestValidator(t *testing.T) {
	var chk event.Validator
	if chk.Err() != nil {
		t.Fatal("empty validator has an error")
	}
	chk.UUID("id", event.UUID{})
	chk.UUID("ok_id", event.NewUUID())
	chk.Time("at", time.Time{})
	chk.Time("ok_at", time.Now())
	chk.NonEmpty("name", "")
	chk.NonEmpty("ok_name", "x")
	chk.Finite("nan", math.NaN())
	chk.Finite("inf", math.Inf(-1))
	chk.Finite("ok_f", 1.5)
	chk.Decimal("price", "1e3")
	chk.Decimal("ok_price", "1.5")
	event.Nested(&chk, "total", money{Rate: math.Inf(1)})
	event.Nested(&chk, "ok_total", money{Currency: "EUR"})
	event.List(&chk, "ids", []event.UUID{event.NewUUID(), {}, {}}, (*event.Validator).UUID)
	event.List(&chk, "items", []money{{Currency: "EUR"}, {}}, event.Nested[money])
	event.Map(&chk, "prices", map[string]event.Decimal{"b": "x", "a": "y", "c": "1"}, (*event.Validator).Decimal)
	event.Map(&chk, "nested", map[string][]money{"k": {{}, {Currency: "EUR"}}}, event.ListChecker(event.Nested[money]))
	event.List(&chk, "grid", [][]float64{{1}, {2, math.NaN()}}, event.ListChecker((*event.Validator).Finite))
	event.List(&chk, "maps", []map[string]time.Time{{"x": {}}}, event.MapChecker((*event.Validator).Time))
	chk.Check("plain", errors.New("custom"))
	chk.Check("skipped", nil)
	err := chk.Err()
	want := []string{
		"id", "at", "name", "nan", "inf", "price",
		"total.currency", "total.rate",
		"ids[1]", "ids[2]",
		"items[1].currency",
		`prices["a"]`, `prices["b"]`,
		`nested["k"][0].currency`,
		"grid[1][1]",
		`maps[0]["x"]`,
		"plain",
	}
	if got := paths(err); !slices.Equal(got, want) {
		t.Errorf("paths:\n got %q\nwant %q", got, want)
	}
	if !errors.Is(err, event.ErrRequired) {
		t.Error("errors.Is(err, ErrRequired) is false")
	}
}

func TestJoinKey(t *testing.T) {
	if event.JoinKey("only|one\\") != "only|one\\" {
		t.Error("a single part is returned as is")
	}
	if got := event.JoinKey("a", "b", "c"); got != "a|b|c" {
		t.Errorf("JoinKey = %q", got)
	}
	if got := event.JoinKey(`a|b`, `c\`); got != `a\|b|c\\` {
		t.Errorf("JoinKey escapes: %q", got)
	}
	// Within one arity (an event's idempotency key always has the same
	// number of parts), different tuples give different keys.
	alphabet := []string{"", "a", "|", `\`, `\|`, `|\`, "a|", `a\`}
	for arity := 2; arity <= 3; arity++ {
		seen := map[string][]string{}
		var gen func(prefix []string)
		gen = func(prefix []string) {
			if len(prefix) == arity {
				k := event.JoinKey(prefix...)
				if prev, ok := seen[k]; ok {
					t.Errorf("JoinKey(%q) = JoinKey(%q) = %q", prefix, prev, k)
				}
				seen[k] = slices.Clone(prefix)
				return
			}
			for _, s := range alphabet {
				gen(append(prefix, s))
			}
		}
		gen(nil)
	}
}

// TestDecodeFastPathsMatchEncodingJSON checks that the fast paths for
// strings, integers and booleans accept and reject exactly what
// encoding/json does, with the same values.
func TestDecodeFastPathsMatchEncodingJSON(t *testing.T) {
	inputs := []string{
		`0`, `-0`, `7`, `-7`, `01`, `-01`, `+1`, `1.0`, `1e3`, `9223372036854775807`, `9223372036854775808`,
		`-9223372036854775808`, `2147483647`, `2147483648`, `-2147483649`, `""`, `"a"`, `"a b/c"`, `"é"`,
		`"a\"b"`, `"a\\b"`, `"\u0041"`, "\"\x01\"", `"unterminated`, `true`, `false`, `null`, `tru`, `"true"`, ` 1`, `1 `,
	}
	for _, in := range inputs {
		raw := []byte(in)
		check := func(name string, got any, gotErr error, want any, wantErr error) {
			t.Helper()
			if (gotErr == nil) != (wantErr == nil) || (gotErr == nil && got != want) {
				t.Errorf("%s(%s) = %v, %v; encoding/json: %v, %v", name, in, got, gotErr, want, wantErr)
			}
		}
		var s string
		sErr := json.Unmarshal(raw, &s)
		if in == "null" {
			sErr = errors.New("null")
		}
		gs, err := event.DecodeString(raw)
		check("DecodeString", gs, err, s, sErr)
		var i64 int64
		iErr := json.Unmarshal(raw, &i64)
		if in == "null" {
			iErr = errors.New("null")
		}
		gi, err := event.DecodeInt64(raw)
		check("DecodeInt64", gi, err, i64, iErr)
		var i32 int32
		i32Err := json.Unmarshal(raw, &i32)
		if in == "null" {
			i32Err = errors.New("null")
		}
		g32, err := event.DecodeInt32(raw)
		check("DecodeInt32", g32, err, i32, i32Err)
		var b bool
		bErr := json.Unmarshal(raw, &b)
		if in == "null" {
			bErr = errors.New("null")
		}
		gb, err := event.DecodeBool(raw)
		check("DecodeBool", gb, err, b, bErr)
	}
}

// decodeObjectLikeEncodingJSON checks that DecodeObject accepts exactly the
// documents encoding/json decodes into a map[string]json.RawMessage, and
// finds the same members with the same raw values (the last of a repeated
// name, as encoding/json keeps it).
func decodeObjectLikeEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	var want map[string]json.RawMessage
	werr := json.Unmarshal(data, &want)
	obj, err := event.DecodeObject(data)
	if (werr != nil || want == nil) != (err != nil) {
		t.Fatalf("DecodeObject(%q): error %v, encoding/json: %v (map %v)", data, err, werr, want)
	}
	if err != nil {
		return
	}
	for name, raw := range want {
		got := event.Field(obj, name, func(b []byte) ([]byte, error) { return b, nil })
		if string(got) != string(raw) && !(string(raw) == "null" && got == nil) {
			t.Errorf("DecodeObject(%q): member %q = %q, encoding/json %q", data, name, got, raw)
		}
	}
}

func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	for _, doc := range []string{
		`{}`, ` { } `, "\t{\n\"a\" : 1 ,\r\n\"b\":[1, {\"c\":\"}\"}], \"d\": {\"e\":\"]\\\"{\"}}\n",
		`{"a":1,"a":2}`, `{"a\u0062":"x","\u00e9t\u00e9":true,"q\"uote":null}`,
		`{"s":"back\\slash","n":-1.5e+10,"t":true,"f":false,"z":null}`,
		`{"nested":{"deep":[[[{"x":"[{"}]]],"y":"}"}}`,
		`null`, `[]`, `"x"`, `1`, `{`, ``, `{"a":1}x`, `{"a":}`, `{"a" 1}`, `{a:1}`, `{"a":1,}`,
		`{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":01}`, `{"a":[1,]}`, `  `,
	} {
		decodeObjectLikeEncodingJSON(t, []byte(doc))
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, doc := range []string{`{"a":1,"b":"x","c":[1,{"d":null}]}`, `{"a":1,"a":2}`, `{"\u00e9":"\""}`, `null`, `[1]`, `{"a":`} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) { decodeObjectLikeEncodingJSON(t, data) })
}
