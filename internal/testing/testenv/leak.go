package testenv

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// MainWithLeakCheck runs a package's tests, as a TestMain, and fails the
// package if goroutines of this module that the tests started outlive them
// (docs/ARCHITECTURE.md, house rule 13).
//
//	func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }
func MainWithLeakCheck(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to two seconds for every goroutine but the
// runtime's and the test framework's to end, and returns the stacks of those
// that did not.
func leakedGoroutines() string {
	var leaked []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked = leaked[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "ktls-go/ktls/") && !strings.Contains(g, "leakedGoroutines") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
	}
}
