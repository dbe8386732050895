package event

import "fmt"

// Decimal is an exact decimal number kept in its textual form, so that no
// digit is lost to binary floating point. Its wire form is a JSON string such
// as "-12.50". Arithmetic is left to the application (for example math/big).
type Decimal string

// ParseDecimal checks that s is a decimal number: an optional sign, digits,
// and an optional fraction (no exponent, no spaces).
func ParseDecimal(s string) (Decimal, error) {
	if !validDecimal(s) {
		return "", fmt.Errorf("invalid decimal %q: want digits with an optional sign and fraction, like -12.50", s)
	}
	return Decimal(s), nil
}

func validDecimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
		digits++
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		frac := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
			frac++
		}
		if frac == 0 {
			return false
		}
	}
	return i == len(s)
}

// Valid reports whether d is a well-formed decimal.
func (d Decimal) Valid() bool { return validDecimal(string(d)) }

// String returns the decimal's text.
func (d Decimal) String() string { return string(d) }

// MarshalText implements encoding.TextMarshaler; it rejects malformed values.
func (d Decimal) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("invalid decimal %q", string(d))
	}
	return []byte(d), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Decimal) UnmarshalText(b []byte) error {
	v, err := ParseDecimal(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
