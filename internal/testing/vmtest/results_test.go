package main

import (
	"strings"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

const nonce = "5eed"

func feedAll(r *kernelResult, text string) {
	for _, line := range strings.Split(text, "\n") {
		r.feed(line)
	}
}

func newTestResult(names ...string) *kernelResult {
	var tests []plan.Test
	for _, n := range names {
		tests = append(tests, plan.Test{Name: n})
	}
	return newKernelResult(kernel{name: "linux-6.1"}, nonce, tests)
}

// A guest in which everything ran: the self-check, a package whose tests
// pass and skip (with subtests and parallel output), and a package with a
// failing test.
func TestCountsFullRun(t *testing.T) {
	r := newTestResult("internal/testing/testenv", "conn")
	feedAll(r, strings.Join([]string{
		"[    1.234] Run /init as init process",
		plan.BeginLine(nonce, plan.SelfCheck),
		"=== RUN   SelfCheckKTLS",
		"--- PASS: SelfCheckKTLS (0.01s)",
		"=== RUN   SelfCheckAFALG",
		"    gcm(aes): generic-gcm-aesni (module aesni_intel, priority 400)",
		plan.InfoLine(nonce, "gcm(aes)", "generic-gcm-aesni (module aesni_intel, priority 400)"),
		"--- PASS: SelfCheckAFALG (0.01s)",
		"PASS",
		plan.EndLine(nonce, plan.SelfCheck, 0, 0.1),
		plan.BeginLine(nonce, "internal/testing/testenv"),
		"=== RUN   TestKernelFeatures",
		"=== RUN   TestKernelFeatures/ktls",
		"--- PASS: TestKernelFeatures (0.02s)",
		"    --- PASS: TestKernelFeatures/ktls (0.01s)",
		"=== RUN   TestHostOnly",
		"--- SKIP: TestHostOnly (0.00s)",
		"PASS",
		plan.EndLine(nonce, "internal/testing/testenv", 0, 0.5),
		plan.BeginLine(nonce, "conn"),
		"--- PASS: TestA (0.00s)",
		"--- FAIL: TestB (0.10s)",
		"    --- FAIL: TestB/tls13 (0.10s)",
		"FAIL",
		plan.EndLine(nonce, "conn", 1, 0.7),
		plan.DoneLine(nonce),
	}, "\n"))
	passed, failed, skipped := r.counts()
	if passed != 4 || failed != 1 || skipped != 1 {
		t.Errorf("counts = %d passed, %d failed, %d skipped; want 4, 1, 1", passed, failed, skipped)
	}
	if got := r.closingLine(); got != "linux-6.1: 4 passed, 1 failed" {
		t.Errorf("closing line %q", got)
	}
	if r.selfCheckFailed() || r.ok() {
		t.Errorf("selfCheckFailed = %v, ok = %v", r.selfCheckFailed(), r.ok())
	}
	notes := strings.Join(r.failureNotes(), "\n")
	if !strings.Contains(notes, "conn: TestB") || strings.Contains(notes, "tls13") {
		t.Errorf("notes %q", notes)
	}
	if len(r.info) != 1 || !strings.HasPrefix(r.info[0], "gcm(aes): generic-gcm-aesni") {
		t.Errorf("info = %q", r.info)
	}
}

// A test binary that panics (or hits -test.timeout) exits non-zero without
// a --- FAIL line; a guest that hangs in the next binary never finishes it
// and never runs the one after.
func TestCountsCrashAndHang(t *testing.T) {
	r := newTestResult("a", "b", "c")
	feedAll(r, strings.Join([]string{
		plan.BeginLine(nonce, plan.SelfCheck),
		"--- PASS: SelfCheckKTLS (0.01s)",
		plan.EndLine(nonce, plan.SelfCheck, 0, 0.1),
		plan.BeginLine(nonce, "a"),
		"--- PASS: TestA (0.00s)",
		"panic: test timed out after 5m0s",
		plan.EndLine(nonce, "a", 2, 300),
		plan.BeginLine(nonce, "b"),
		"=== RUN   TestHangs",
	}, "\n"))
	passed, failed, _ := r.counts()
	// a: 1 (exit 2), b: 1 (never finished), c: 1 (never ran).
	if passed != 2 || failed != 3 {
		t.Errorf("counts = %d passed, %d failed; want 2, 3", passed, failed)
	}
	notes := strings.Join(r.failureNotes(), "\n")
	for _, want := range []string{"a: exit status 2", "b: never finished", "c: never ran"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

// A failed self-check fails the kernel even if every test passed, and a
// forged marker with another nonce is only output.
func TestSelfCheckFailure(t *testing.T) {
	r := newTestResult("a")
	feedAll(r, strings.Join([]string{
		plan.BeginLine(nonce, plan.SelfCheck),
		"--- FAIL: SelfCheckKTLS (0.01s)",
		plan.EndLine(nonce, plan.SelfCheck, 1, 0.1),
		plan.BeginLine(nonce, "a"),
		plan.EndLine("otherboot", "a", 0, 1),
		"--- PASS: TestA (0.00s)",
		plan.EndLine(nonce, "a", 0, 0.1),
		plan.DoneLine(nonce),
	}, "\n"))
	if !r.selfCheckFailed() || r.ok() {
		t.Errorf("selfCheckFailed = %v, ok = %v", r.selfCheckFailed(), r.ok())
	}
	if got := r.closingLine(); got != "linux-6.1: 1 passed, 1 failed" {
		t.Errorf("closing line %q", got)
	}
}

// A guest that never boots fails every planned program.
func TestNoBoot(t *testing.T) {
	r := newTestResult("a")
	feedAll(r, "Kernel panic - not syncing: VFS: Unable to mount root fs")
	if _, failed, _ := r.counts(); failed != 2 {
		t.Errorf("failed = %d, want 2", failed)
	}
	// Everything ran but the done marker is missing: one failure more.
	r = newTestResult()
	feedAll(r, plan.BeginLine(nonce, plan.SelfCheck)+"\n"+plan.EndLine(nonce, plan.SelfCheck, 0, 1))
	if _, failed, _ := r.counts(); failed != 1 {
		t.Errorf("failed = %d without the done marker, want 1", failed)
	}
}
