// Package plan is what the two halves of the VM harness agree on: the run
// plan that the host writes into the initramfs, and the markers that the guest
// prints on the serial console around each program it runs.
//
// The serial console also carries kernel messages and everything the tests
// print, so a marker carries a nonce chosen afresh by the host for every boot:
// no test output can forge one, and a marker from an earlier boot left in a
// log cannot be mistaken for one of this boot.
package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// Path is where the plan lies in the guest's file system.
const Path = "/vmtest/plan.json"

// SelfCheck is the name under which the guest's self-check is marked.
const SelfCheck = "selfcheck"

// Plan tells the guest what to run.
type Plan struct {
	// Kernel names the kernel in messages, e.g. "linux-6.1".
	Kernel string
	// Nonce is the token of this boot's markers: letters and digits only.
	Nonce string
	// Tests are the test binaries, run one after another in this order.
	Tests []Test
	// Args are appended to the command line of every test binary
	// (-test.v, -test.short, -test.run, -test.timeout).
	Args []string
	// Env is added, as KEY=VALUE, to the environment of every program the
	// guest runs, the self-check included.
	Env []string
	// Sysctls are "name=value" settings (e.g. "crypto.af_alg_restrict=0")
	// that the guest writes under /proc/sys before the self-check.
	Sysctls []string
	// TimeoutSeconds bounds each test binary; the guest kills one that runs
	// longer (the binary's own -test.timeout, set a little shorter, normally
	// fires first and prints the goroutines).
	TimeoutSeconds int
}

// Test is one test binary in the guest.
type Test struct {
	// Name is the package path relative to the module root ("." for the root
	// package); it has no spaces.
	Name string
	// Binary is the path of the static test binary.
	Binary string
	// Dir is the working directory: a copy of the package's directory, so
	// that testdata/ is found where `go test` would find it.
	Dir string
	// TimeoutSeconds, when not 0, bounds this binary instead of the plan's
	// TimeoutSeconds; the guest then passes it -test.timeout itself, 30 s
	// shorter, after the plan's Args.
	TimeoutSeconds int
}

// The kinds of marker.
const (
	Begin = "begin" // a program starts
	End   = "end"   // a program ended; Exit and Seconds are set
	Done  = "done"  // the guest ran everything and is about to power off
	Info  = "info"  // a fact about the guest for the host's summary
)

// Marker is one parsed marker line.
type Marker struct {
	Kind    string
	Name    string  // Begin, End
	Exit    int     // End: the exit status, -1 when killed by a signal
	Seconds float64 // End: the wall time of the program
	Key     string  // Info: one word
	Value   string  // Info: the rest of the line
}

const tag = "==vmtest=="

// BeginLine returns the marker printed before a program named name runs.
func BeginLine(nonce, name string) string {
	return fmt.Sprintf("%s %s %s %s", tag, nonce, Begin, name)
}

// EndLine returns the marker printed after a program ended.
func EndLine(nonce, name string, exit int, seconds float64) string {
	return fmt.Sprintf("%s %s %s %s exit=%d seconds=%.1f", tag, nonce, End, name, exit, seconds)
}

// DoneLine returns the marker printed when the guest has run everything.
func DoneLine(nonce string) string {
	return fmt.Sprintf("%s %s %s", tag, nonce, Done)
}

// InfoLine returns a marker that reports a fact about the guest (the kernel
// release, the driver that serves gcm(aes)) for the host's summary. key is one
// word; value may have spaces but no newline.
func InfoLine(nonce, key, value string) string {
	return fmt.Sprintf("%s %s %s %s %s", tag, nonce, Info, key, value)
}

// Parse reads a marker of the boot with the given nonce from one line of
// console output. The marker may come after other text on the line: a kernel
// message printed without a trailing newline, or a test's partial line, can
// precede it.
func Parse(line, nonce string) (Marker, bool) {
	prefix := tag + " " + nonce + " "
	i := strings.Index(line, prefix)
	if i < 0 || nonce == "" {
		return Marker{}, false
	}
	f := strings.Fields(line[i+len(prefix):])
	if len(f) == 0 {
		return Marker{}, false
	}
	switch m := (Marker{Kind: f[0]}); {
	case m.Kind == Done && len(f) == 1:
		return m, true
	case m.Kind == Info && len(f) >= 2:
		m.Key = f[1]
		m.Value = strings.Join(f[2:], " ")
		return m, true
	case m.Kind == Begin && len(f) == 2:
		m.Name = f[1]
		return m, true
	case m.Kind == End && len(f) == 4:
		m.Name = f[1]
		exit, ok1 := strings.CutPrefix(f[2], "exit=")
		secs, ok2 := strings.CutPrefix(f[3], "seconds=")
		var err1, err2 error
		m.Exit, err1 = strconv.Atoi(exit)
		m.Seconds, err2 = strconv.ParseFloat(secs, 64)
		if ok1 && ok2 && err1 == nil && err2 == nil {
			return m, true
		}
	}
	return Marker{}, false
}
