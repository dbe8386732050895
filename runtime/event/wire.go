package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file holds the building blocks of the JSON wire format that generated
// MarshalJSON/AppendJSON and UnmarshalJSON methods are made of. The format is
// documented in docs/wire-format.md: schema field names as keys, timestamps
// RFC 3339 in UTC, decimals and durations as strings, bytes as base64.

// AppendBool appends true or false.
func AppendBool(b []byte, v bool) []byte { return strconv.AppendBool(b, v) }

// AppendInt32 appends a JSON number.
func AppendInt32(b []byte, v int32) []byte { return strconv.AppendInt(b, int64(v), 10) }

// AppendInt64 appends a JSON number. Readers in languages whose numbers are
// doubles lose precision above 2^53; that is the JSON convention, documented.
func AppendInt64(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// AppendFloat64 appends a JSON number, or null for NaN and infinities, which
// JSON cannot carry (Validate rejects them before a producer sends).
func AppendFloat64(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// AppendString appends a JSON string, escaping quotes, backslashes and control
// characters, and replacing invalid UTF-8 with U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				const hexDigits = "0123456789abcdef"
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendBytes appends standard base64 (with padding) as a JSON string.
func AppendBytes(b []byte, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// AppendUUID appends the canonical form as a JSON string.
func AppendUUID(b []byte, v UUID) []byte {
	b = append(b, '"')
	b = v.appendText(b)
	return append(b, '"')
}

// AppendTime appends an RFC 3339 timestamp in UTC with as many fractional
// digits as needed.
func AppendTime(b []byte, v time.Time) []byte {
	b = append(b, '"')
	b = v.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// AppendDuration appends a duration in Go syntax ("1h30m0s") as a JSON string.
func AppendDuration(b []byte, v time.Duration) []byte {
	b = append(b, '"')
	b = append(b, v.String()...)
	return append(b, '"')
}

// AppendDecimal appends the decimal's text as a JSON string.
func AppendDecimal(b []byte, v Decimal) []byte { return AppendString(b, string(v)) }

// Record is a generated named record or enum type.
type Record interface {
	AppendJSON(b []byte) []byte
}

// AppendRecord appends a generated record or enum value.
func AppendRecord[T Record](b []byte, v T) []byte { return v.AppendJSON(b) }

// AppendList appends a JSON array; a nil slice is written as [].
func AppendList[T any](b []byte, v []T, elem func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, x)
	}
	return append(b, ']')
}

// AppendMap appends a JSON object with keys in sorted order, so that equal
// maps have equal bytes; a nil map is written as {}.
func AppendMap[T any](b []byte, v map[string]T, elem func([]byte, T) []byte) []byte {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sortStrings(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, k)
		b = append(b, ':')
		b = elem(b, v[k])
	}
	return append(b, '}')
}

// CloseObject finishes an object whose members were each appended as
// `,"name":value` starting at b[start]: the first comma becomes the opening
// brace. This keeps generated code free of "is this the first field" state
// when optional fields may be absent.
func CloseObject(b []byte, start int) []byte {
	if len(b) == start {
		return append(b, "{}"...)
	}
	b[start] = '{'
	return append(b, '}')
}

// Object is a JSON object being decoded by generated UnmarshalJSON methods.
// It collects every field error, each naming the field's path.
type Object struct {
	data    []byte
	members []member // in document order
	errs    []error
	// escaped holds the names that needed unescaping (rare).
	escaped []string
	// buf holds the members of small objects, saving an allocation.
	buf [8]member
}

// member is one name and raw value of an Object, as offsets into its
// document: the name is the bytes between its quotes, or, when it needed
// unescaping, escaped[esc-1]. Offsets instead of slices keep an Object of
// eight members in 256 bytes (a document is at most Kafka's record size).
type member struct {
	nameStart, nameEnd int32
	rawStart, rawEnd   int32
	esc                int32 // 0: the name needs no unescaping
}

func (o *Object) is(m *member, name string) bool {
	if m.esc > 0 {
		return o.escaped[m.esc-1] == name
	}
	return string(o.data[m.nameStart:m.nameEnd]) == name
}

// lookup returns the raw value of the member called name. A name that
// appears twice is read from its last occurrence, as encoding/json does.
func (o *Object) lookup(name string) ([]byte, bool) {
	for i := len(o.members) - 1; i >= 0; i-- {
		if m := &o.members[i]; o.is(m, name) {
			return o.data[m.rawStart:m.rawEnd:m.rawEnd], true
		}
	}
	return nil, false
}

// DecodeObject parses data as a JSON object. Unknown members are ignored, so
// that readers accept records from writers with newer, compatible schemas.
//
// The document is checked by a validating scanner (scan.go), then its
// members are split by one that can rely on that: every event decoded goes
// through here, and decoding into a map[string]json.RawMessage with
// encoding/json took half of a pipeline's per-record CPU. The rare
// malformed document is handed to encoding/json for its error message.
func DecodeObject(data []byte) (*Object, error) {
	if !validJSON(data) {
		return nil, &FieldError{Err: jsonError(data)}
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		if string(data[i:skipValue(data, i)]) == "null" {
			return nil, &FieldError{Err: errors.New("want a JSON object, got null")}
		}
		return nil, &FieldError{Err: jsonError(data)}
	}
	if len(data) > math.MaxInt32 {
		return nil, &FieldError{Err: errors.New("JSON document larger than 2 GiB")}
	}
	o := &Object{data: data}
	o.members = o.buf[:0]
	i = skipSpace(data, i+1)
	for data[i] != '}' {
		end := skipValue(data, i) // the name, a string
		m := member{nameStart: int32(i + 1), nameEnd: int32(end - 1)}
		if name := data[i+1 : end-1]; bytes.IndexByte(name, '\\') >= 0 || !utf8.Valid(name) {
			name, err := memberName(data[i:end])
			if err != nil {
				return nil, &FieldError{Err: err}
			}
			o.escaped = append(o.escaped, name)
			m.esc = int32(len(o.escaped))
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // ':'
		end = skipValue(data, i)
		m.rawStart, m.rawEnd = int32(i), int32(end)
		o.members = append(o.members, m)
		i = skipSpace(data, end)
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return o, nil
}

// jsonError is encoding/json's error for a document that is not a JSON
// object.
func jsonError(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	return errors.New("want a JSON object")
}

// memberName returns the name of a member from its quoted, valid JSON
// string; escapes and invalid UTF-8 (replaced by U+FFFD) as encoding/json
// reads them.
func memberName(quoted []byte) (string, error) {
	var name string
	err := json.Unmarshal(quoted, &name)
	return name, err
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the index just after the valid JSON value that starts
// at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		for i++; ; i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch data[i] {
			case '"':
				i = skipValue(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	default: // a number, true, false or null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// Err returns every field error found so far, joined, or nil.
func (o *Object) Err() error { return errors.Join(o.errs...) }

// fail records err under the member name. A joined error (a nested record's
// or a list's several problems) is split first, so that each problem keeps
// its own path: "items[1]", "total.cents".
func (o *Object) fail(name string, err error) {
	if je, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range je.Unwrap() {
			o.fail(name, e)
		}
		return
	}
	o.errs = append(o.errs, prefixField(name, err))
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// Field decodes a required member; a missing or null member is an error.
func Field[T any](o *Object, name string, dec func([]byte) (T, error)) T {
	raw, ok := o.lookup(name)
	if !ok || isNull(raw) {
		o.errs = append(o.errs, &FieldError{Path: name, Err: ErrMissingField})
		var zero T
		return zero
	}
	v, err := dec(raw)
	if err != nil {
		o.fail(name, err)
	}
	return v
}

// OptionalField decodes an optional member; missing or null gives nil.
func OptionalField[T any](o *Object, name string, dec func([]byte) (T, error)) *T {
	raw, ok := o.lookup(name)
	if !ok || isNull(raw) {
		return nil
	}
	v, err := dec(raw)
	if err != nil {
		o.fail(name, err)
		return nil
	}
	return &v
}

// OptionalList decodes an optional list member; missing or null gives nil.
func OptionalList[T any](o *Object, name string, dec func([]byte) ([]T, error)) []T {
	p := OptionalField(o, name, dec)
	if p == nil {
		return nil
	}
	return *p
}

// OptionalMap decodes an optional map member; missing or null gives nil.
func OptionalMap[T any](o *Object, name string, dec func([]byte) (map[string]T, error)) map[string]T {
	p := OptionalField(o, name, dec)
	if p == nil {
		return nil
	}
	return *p
}

// ErrMissingField reports a required member that is absent or null.
var ErrMissingField = errors.New("required field is missing")

// FieldError is a decoding or validation error at a field path such as
// "total.cents" or "items[2]".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

func decodeJSON[T any](raw []byte, what string) (T, error) {
	var v T
	if isNull(raw) {
		// encoding/json would leave v at zero; a null list element or map
		// value is not a zero, it is a missing value.
		return v, fmt.Errorf("want %s, got null", what)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("want %s: %w", what, err)
	}
	return v, nil
}

// DecodeBool decodes true or false.
func DecodeBool(raw []byte) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return decodeJSON[bool](raw, "a boolean")
}

// DecodeInt32 decodes an integer that fits in 32 bits.
func DecodeInt32(raw []byte) (int32, error) {
	if plainInteger(raw) {
		if v, err := strconv.ParseInt(string(raw), 10, 32); err == nil {
			return int32(v), nil
		}
	}
	return decodeJSON[int32](raw, "a 32-bit integer")
}

// DecodeInt64 decodes an integer that fits in 64 bits.
func DecodeInt64(raw []byte) (int64, error) {
	if plainInteger(raw) {
		if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return v, nil
		}
	}
	return decodeJSON[int64](raw, "a 64-bit integer")
}

// plainInteger reports whether raw is a JSON integer in the form strconv
// parses identically: -?(0|[1-9][0-9]*). Anything else (exponents,
// fractions, errors) takes encoding/json's path and its error messages.
func plainInteger(raw []byte) bool {
	i := 0
	if i < len(raw) && raw[i] == '-' {
		i++
	}
	if i == len(raw) || (raw[i] == '0' && i+1 != len(raw)) {
		return false
	}
	for ; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			return false
		}
	}
	return true
}

// DecodeFloat64 decodes a number.
func DecodeFloat64(raw []byte) (float64, error) { return decodeJSON[float64](raw, "a number") }

// DecodeString decodes a string.
func DecodeString(raw []byte) (string, error) {
	// Fast path: a quoted string with nothing to unescape, which is what
	// AppendString writes for most text.
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' {
		body := raw[1 : n-1]
		plain := true
		for _, c := range body {
			if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
				plain = false
				break
			}
		}
		if plain {
			return string(body), nil
		}
	}
	return decodeJSON[string](raw, "a string")
}

// DecodeBytes decodes a standard base64 string.
func DecodeBytes(raw []byte) ([]byte, error) {
	s, err := DecodeString(raw)
	if err != nil {
		return nil, err
	}
	v, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("want base64: %w", err)
	}
	return v, nil
}

// DecodeUUID decodes a canonical UUID string.
func DecodeUUID(raw []byte) (UUID, error) {
	if n := len(raw); n == 38 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 {
		return parseUUID(raw[1 : n-1])
	}
	s, err := DecodeString(raw)
	if err != nil {
		return UUID{}, err
	}
	return ParseUUID(s)
}

// DecodeTime decodes an RFC 3339 timestamp and returns it in UTC.
func DecodeTime(raw []byte) (time.Time, error) {
	s, err := DecodeString(raw)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 timestamp: %w", err)
	}
	return t.UTC(), nil
}

// DecodeDuration decodes a duration in Go syntax, such as "1h30m".
func DecodeDuration(raw []byte) (time.Duration, error) {
	s, err := DecodeString(raw)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as \"1h30m\": %w", err)
	}
	return d, nil
}

// DecodeDecimal decodes a decimal string such as "-12.50".
func DecodeDecimal(raw []byte) (Decimal, error) {
	s, err := DecodeString(raw)
	if err != nil {
		return "", err
	}
	return ParseDecimal(s)
}

// DecodeRecord decodes a generated record or enum type.
func DecodeRecord[T any, PT interface {
	*T
	UnmarshalJSON([]byte) error
}](raw []byte) (T, error) {
	var v T
	err := PT(&v).UnmarshalJSON(raw)
	return v, err
}

// DecodeList decodes a JSON array, reporting each bad element by index.
func DecodeList[T any](raw []byte, elem func([]byte) (T, error)) ([]T, error) {
	items, err := splitArray(raw)
	if err != nil {
		return nil, fmt.Errorf("want an array: %w", err)
	}
	out := make([]T, len(items))
	var errs []error
	for i, item := range items {
		v, err := elem(item)
		if err != nil {
			errs = append(errs, prefixPath("["+strconv.Itoa(i)+"]", err))
			continue
		}
		out[i] = v
	}
	return out, errors.Join(errs...)
}

// splitArray returns the raw elements of the JSON array raw (encoding/json's
// error for anything else).
func splitArray(raw []byte) ([][]byte, error) {
	i := skipSpace(raw, 0)
	if !validJSON(raw) || raw[i] != '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		if items == nil { // null
			return nil, nil
		}
		return nil, errors.New("want a JSON array")
	}
	var items [][]byte
	for i = skipSpace(raw, i+1); raw[i] != ']'; {
		end := skipValue(raw, i)
		items = append(items, raw[i:end])
		if i = skipSpace(raw, end); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return items, nil
}

// DecodeMap decodes a JSON object of values, reporting each bad value by key.
func DecodeMap[T any](raw []byte, elem func([]byte) (T, error)) (map[string]T, error) {
	var items map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("want an object: %w", err)
	}
	out := make(map[string]T, len(items))
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	sortStrings(keys) // errors in a stable order
	var errs []error
	for _, k := range keys {
		v, err := elem(items[k])
		if err != nil {
			errs = append(errs, prefixPath("["+strconv.Quote(k)+"]", err))
			continue
		}
		out[k] = v
	}
	return out, errors.Join(errs...)
}

// prefixPath puts an index or key in front of an error's field path; each
// error of a joined error gets it.
func prefixPath(p string, err error) error {
	if je, ok := err.(interface{ Unwrap() []error }); ok {
		errs := je.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = prefixPath(p, e)
		}
		return errors.Join(out...)
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe.Path == "" {
		return &FieldError{Path: p, Err: fe.Err}
	}
	return prefixField(p, err)
}

func sortStrings(s []string) { slices.Sort(s) }

// ListAppender returns an appender for []T, for nested lists and maps.
func ListAppender[T any](elem func([]byte, T) []byte) func([]byte, []T) []byte {
	return func(b []byte, v []T) []byte { return AppendList(b, v, elem) }
}

// MapAppender returns an appender for map[string]T, for nested lists and maps.
func MapAppender[T any](elem func([]byte, T) []byte) func([]byte, map[string]T) []byte {
	return func(b []byte, v map[string]T) []byte { return AppendMap(b, v, elem) }
}

// ListOf returns a decoder for []T from a decoder for T.
func ListOf[T any](elem func([]byte) (T, error)) func([]byte) ([]T, error) {
	return func(raw []byte) ([]T, error) { return DecodeList(raw, elem) }
}

// MapOf returns a decoder for map[string]T from a decoder for T.
func MapOf[T any](elem func([]byte) (T, error)) func([]byte) (map[string]T, error) {
	return func(raw []byte) (map[string]T, error) { return DecodeMap(raw, elem) }
}

// DecodeEvent decodes a generated event type from its wire form; generated
// consumers pass it as the decoder of their records.
func DecodeEvent[T any, PT interface {
	*T
	Event
}](data []byte) (PT, error) {
	var v T
	p := PT(&v)
	if err := p.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return p, nil
}
