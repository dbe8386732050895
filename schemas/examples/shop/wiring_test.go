package shop_test

import (
	"os/exec"
	"strings"
	"testing"
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
	if !strings.Contains(out, "cannot use func(ctx context.Context, e *shop.OrderPlaced, rec runtime.AtMostOnceRecord) error") ||
		!strings.Contains(out, "as shop.OrderPlacedHandler value") {
		t.Errorf("unexpected compiler error:\n%s", out)
	}
}
