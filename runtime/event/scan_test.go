package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

var scanSeeds = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `-0.5e-3`, `1E+2`, `true`, `false`, `null`, ` {"a" : [1, 2.5, "x\u00e9\n", {"b":null}] } `,
	`{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"\x01\"", "\"\xff\"",
	`{"a" 1}`, `{a:1}`, `[1 2]`, `tru`, `nul`, `{"a":1}x`, `{`, `[`, `"`, ``, `  `, `{"a":"b"`, `[[[]]]`,
	strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
	strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
	strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
}

// validLikeEncodingJSON fails t if validJSON and json.Valid disagree, or if
// splitArray's elements differ from encoding/json's.
func validLikeEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	if got, want := validJSON(data), json.Valid(data); got != want {
		t.Fatalf("validJSON(%.80q) = %v, json.Valid %v", data, got, want)
	}
	var want []json.RawMessage
	werr := json.Unmarshal(data, &want)
	got, err := splitArray(data)
	if (err != nil) != (werr != nil) {
		t.Fatalf("splitArray(%.80q): error %v, encoding/json %v", data, err, werr)
	}
	if len(got) != len(want) {
		t.Fatalf("splitArray(%.80q): %d elements, encoding/json %d", data, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("splitArray(%.80q)[%d] = %q, encoding/json %q", data, i, got[i], want[i])
		}
	}
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, s := range scanSeeds {
		validLikeEncodingJSON(t, []byte(s))
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { validLikeEncodingJSON(t, data) })
}
