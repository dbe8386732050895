package event

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Validator collects the problems generated Validate methods find, each
// with its field path, so that one call reports all of them.
type Validator struct {
	errs []error
}

// Err returns every problem found, joined, or nil.
func (v *Validator) Err() error { return errors.Join(v.errs...) }

// Check records err (if any) under path; nested field paths are kept.
func (v *Validator) Check(path string, err error) {
	if err == nil {
		return
	}
	var je interface{ Unwrap() []error }
	if errors.As(err, &je) {
		for _, e := range je.Unwrap() {
			v.Check(path, e)
		}
		return
	}
	v.errs = append(v.errs, prefixField(path, err))
}

func prefixField(path string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Path != "" {
		sep := "."
		if strings.HasPrefix(fe.Path, "[") {
			sep = ""
		}
		return &FieldError{Path: path + sep + fe.Path, Err: fe.Err}
	}
	return &FieldError{Path: path, Err: err}
}

// ErrRequired reports a required value that holds its zero value where zero
// is never meaningful: a nil UUID, a zero timestamp, an empty key.
var ErrRequired = errors.New("required value is empty")

// UUID requires a non-nil UUID.
func (v *Validator) UUID(path string, u UUID) {
	if u.IsZero() {
		v.errs = append(v.errs, &FieldError{Path: path, Err: ErrRequired})
	}
}

// Time requires a non-zero timestamp.
func (v *Validator) Time(path string, t time.Time) {
	if t.IsZero() {
		v.errs = append(v.errs, &FieldError{Path: path, Err: ErrRequired})
	}
}

// NonEmpty requires a non-empty string (used for key fields).
func (v *Validator) NonEmpty(path string, s string) {
	if s == "" {
		v.errs = append(v.errs, &FieldError{Path: path, Err: ErrRequired})
	}
}

// Finite requires a finite number: JSON has no NaN or infinity.
func (v *Validator) Finite(path string, f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		v.errs = append(v.errs, &FieldError{Path: path, Err: errors.New("not a finite number")})
	}
}

// Decimal requires a well-formed decimal.
func (v *Validator) Decimal(path string, d Decimal) {
	if !d.Valid() {
		_, err := ParseDecimal(string(d))
		v.errs = append(v.errs, &FieldError{Path: path, Err: err})
	}
}

// List checks each element of a list with check.
func List[T any](v *Validator, path string, items []T, check func(*Validator, string, T)) {
	for i, x := range items {
		check(v, path+"["+strconv.Itoa(i)+"]", x)
	}
}

// Map checks each value of a map with check, in sorted key order.
func Map[T any](v *Validator, path string, items map[string]T, check func(*Validator, string, T)) {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		check(v, path+"["+strconv.Quote(k)+"]", items[k])
	}
}

// Validatable is a generated record or enum type.
type Validatable interface{ Validate() error }

// Nested checks a generated record or enum value.
func Nested[T Validatable](v *Validator, path string, x T) { v.Check(path, x.Validate()) }

// JoinKey joins the parts of a composite key into one string. Each part is
// escaped so that different tuples never give equal strings: '\' and '|'
// are escaped with '\', and parts are separated by '|'.
func JoinKey(parts ...string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('|')
		}
		for j := 0; j < len(p); j++ {
			if p[j] == '\\' || p[j] == '|' {
				b.WriteByte('\\')
			}
			b.WriteByte(p[j])
		}
	}
	return b.String()
}

// ListChecker returns a check for []T from a check for T.
func ListChecker[T any](check func(*Validator, string, T)) func(*Validator, string, []T) {
	return func(v *Validator, path string, items []T) { List(v, path, items, check) }
}

// MapChecker returns a check for map[string]T from a check for T.
func MapChecker[T any](check func(*Validator, string, T)) func(*Validator, string, map[string]T) {
	return func(v *Validator, path string, items map[string]T) { Map(v, path, items, check) }
}
