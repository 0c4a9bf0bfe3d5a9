package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

// program is what one program in a guest (the self-check or a test binary)
// did, read from the console.
type program struct {
	name             string
	pass, fail, skip int      // top-level tests, from --- PASS/FAIL/SKIP lines
	failed           []string // names of the failed top-level tests
	began, ended     bool
	exit             int
	seconds          float64
}

// failures is how many failures the program counts for: its failed tests,
// or one if it failed without naming a test (a panic, a timeout, a crash, a
// build without tests that exits non-zero), never ran, or never finished.
func (p *program) failures() int {
	switch {
	case p.fail > 0:
		return p.fail
	case !p.began || !p.ended || p.exit != 0:
		return 1
	}
	return 0
}

// kernelResult collects one guest's console output.
type kernelResult struct {
	kernel   kernel
	nonce    string
	programs []*program // the self-check, then the test binaries, in plan order
	cur      *program   // the program running now
	info     []string   // "key: value" facts from the self-check
	done     bool       // the guest printed its done marker
	problems []string   // what went wrong outside any test
	elapsed  time.Duration
}

func newKernelResult(k kernel, nonce string, tests []plan.Test) *kernelResult {
	r := &kernelResult{kernel: k, nonce: nonce}
	r.programs = append(r.programs, &program{name: plan.SelfCheck})
	for _, t := range tests {
		r.programs = append(r.programs, &program{name: t.Name})
	}
	return r
}

// testLine matches the result line of a top-level test in `go test -v`
// output; subtests' lines are indented, so they do not match.
var testLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+)`)

// feed reads one console line (without its line end). It returns the
// marker when the line is one.
func (r *kernelResult) feed(line string) (plan.Marker, bool) {
	m, ok := plan.Parse(line, r.nonce)
	if !ok {
		if r.cur != nil {
			if sm := testLine.FindStringSubmatch(line); sm != nil {
				switch sm[1] {
				case "PASS":
					r.cur.pass++
				case "FAIL":
					r.cur.fail++
					r.cur.failed = append(r.cur.failed, sm[2])
				case "SKIP":
					r.cur.skip++
				}
			}
		}
		return m, false
	}
	switch m.Kind {
	case plan.Begin:
		r.cur = r.program(m.Name)
		r.cur.began = true
	case plan.End:
		p := r.program(m.Name)
		p.ended, p.exit, p.seconds = true, m.Exit, m.Seconds
		r.cur = nil
	case plan.Info:
		r.info = append(r.info, m.Key+": "+m.Value)
	case plan.Done:
		r.done = true
	}
	return m, true
}

func (r *kernelResult) program(name string) *program {
	for _, p := range r.programs {
		if p.name == name {
			return p
		}
	}
	// Not in the plan: still count it rather than lose it.
	p := &program{name: name}
	r.programs = append(r.programs, p)
	return p
}

// counts returns the kernel's totals of top-level tests. A failure outside
// any test (the guest hung, crashed or never booted) counts as one more.
func (r *kernelResult) counts() (passed, failed, skipped int) {
	for _, p := range r.programs {
		passed += p.pass
		skipped += p.skip
		failed += p.failures()
	}
	if !r.done && failed == 0 {
		failed++
	}
	return passed, failed, skipped
}

func (r *kernelResult) ok() bool {
	_, failed, _ := r.counts()
	return failed == 0
}

// selfCheckFailed reports whether the guest's self-check failed or never
// finished: then no result of this kernel can be trusted.
func (r *kernelResult) selfCheckFailed() bool {
	return r.programs[0].failures() > 0
}

// closingLine is the line that closes a kernel's run, exactly
// "<kernel>: N passed, N failed", the form CI reads.
func (r *kernelResult) closingLine() string {
	passed, failed, _ := r.counts()
	return fmt.Sprintf("%s: %d passed, %d failed", r.kernel.name, passed, failed)
}

// failureNotes lists, for the summary, what failed.
func (r *kernelResult) failureNotes() []string {
	var notes []string
	if r.selfCheckFailed() && r.programs[0].began {
		notes = append(notes, "the self-check failed: this guest lacks what the tests need, so none of its results count")
	}
	for _, p := range r.programs {
		switch {
		case !p.began:
			notes = append(notes, p.name+": never ran")
		case p.fail > 0:
			notes = append(notes, fmt.Sprintf("%s: %s", p.name, strings.Join(p.failed, ", ")))
		case !p.ended:
			notes = append(notes, p.name+": never finished")
		case p.exit != 0:
			notes = append(notes, fmt.Sprintf("%s: exit status %d without a failed test (panic, timeout or crash; see its output)", p.name, p.exit))
		}
	}
	return append(notes, r.problems...)
}
