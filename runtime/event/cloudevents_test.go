package event

import (
	"context"
	"strings"
	"testing"
)

func TestWithTraceparent(t *testing.T) {
	const v00 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, c := range []struct {
		in, want string
	}{
		{v00, v00},
		// A later version keeps its first four fields, as version 00: the
		// extra fields, of any length, are not propagated.
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("x", 1<<20), v00},
		{"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", v00},
		// Invalid values are ignored.
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", ""},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", ""},
		{"short", ""},
	} {
		got := Traceparent(WithTraceparent(context.Background(), c.in))
		if got != c.want {
			t.Errorf("WithTraceparent(%.70q): Traceparent %q, want %q", c.in, got, c.want)
		}
	}
}
