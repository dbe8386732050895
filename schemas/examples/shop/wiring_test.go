package shop_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventgen/eventgen/runtime/event"
)

// TestWrongGuaranteeDoesNotCompile builds a program that registers an
// at-most-once handler for an at-least-once event and expects the compiler
// to refuse it; the same program with the right record type must build, so
// the test fails if the failure had another cause.
func TestWrongGuaranteeDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs with the go command; skipped in -short mode")
	}
	build := func(dir string) (string, error) {
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", t.TempDir()+"/out", "./testdata/"+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := build("rightguarantee"); err != nil {
		t.Fatalf("control program does not build: %v\n%s", err, out)
	}
	out, err := build("wrongguarantee")
	if err == nil {
		t.Fatal("an at-most-once handler was accepted for an at-least-once event")
	}
	if !strings.Contains(out, "cannot use func(ctx context.Context, e *shop.PriceChanged, rec kafka.AtMostOnceRecord) error") ||
		!strings.Contains(out, "as shop.PriceChangedHandler value") {
		t.Errorf("unexpected compiler error:\n%s", out)
	}
}

// TestWrongStoreDoesNotCompile: a handler of a postgres-dedup event wired
// to a store without transactions, and a redis-dedup event wired to a
// PostgreSQL-typed store, are compile errors; the control with the right
// stores builds.
func TestWrongStoreDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs with the go command; skipped in -short mode")
	}
	build := func(dir string) (string, error) {
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", t.TempDir()+"/out", "./testdata/"+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := build("rightstore"); err != nil {
		t.Fatalf("control program does not build: %v\n%s", err, out)
	}
	out, err := build("wrongstore")
	if err == nil {
		t.Fatal("handlers wired to the wrong dedup stores compiled")
	}
	for _, want := range []string{
		"cannot use dedup.NewMemory[dedup.NoTx](0) (value of type *dedup.Memory[dedup.NoTx]) as dedup.Store[pgx.Tx] value",
		"cannot use dedup.NewMemory[pgx.Tx](0) (value of type *dedup.Memory[pgx.Tx]) as dedup.Store[dedup.NoTx] value",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("compiler error lacks %q:\n%s", want, out)
		}
	}
}

// TestVersionHandshake compiles the package with its generated file changed
// to claim a code version outside what the runtime supports (older, then
// newer), through a build overlay; both must fail on the handshake line.
func TestVersionHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with the go command; skipped in -short mode")
	}
	src, err := os.ReadFile("shop_events.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("shop_events.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	v := event.GenVersion
	for _, tc := range []struct{ name, old, new string }{
		{"older than the runtime supports", fmt.Sprintf("event.EnforceVersion(%d - event.MinVersion)", v), fmt.Sprintf("event.EnforceVersion(%d - event.MinVersion)", event.MinVersion-1)},
		{"newer than the runtime supports", fmt.Sprintf("event.EnforceVersion(event.MaxVersion - %d)", v), fmt.Sprintf("event.EnforceVersion(event.MaxVersion - %d)", event.MaxVersion+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(src), tc.old) {
				t.Fatalf("generated file lacks %q", tc.old)
			}
			dir := t.TempDir()
			changed := filepath.Join(dir, "shop_events.gen.go")
			if err := os.WriteFile(changed, []byte(strings.Replace(string(src), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {abs: changed}})
			overlayPath := filepath.Join(dir, "overlay.json")
			if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), "go", "build", "-overlay", overlayPath, ".").CombinedOutput()
			if err == nil {
				t.Fatal("a generated file with a mismatched version compiled")
			}
			if !strings.Contains(string(out), "overflows event.EnforceVersion") {
				t.Errorf("the build failed elsewhere than on the handshake lines:\n%s", out)
			}
		})
	}
}
