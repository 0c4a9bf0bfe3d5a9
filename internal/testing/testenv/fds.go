package testenv

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// OpenFDs returns the number of file descriptors the process has open, or
// -1 where /proc/self/fd does not exist (not Linux); on Linux, failing to
// read it fails the test.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		if runtime.GOOS == "linux" {
			t.Fatalf("reading /proc/self/fd: %v", err)
		}
		return -1
	}
	return len(ents)
}

// FDTable lists the open file descriptors and what each refers to, for a
// failure message; empty where /proc/self/fd does not exist.
func FDTable() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}
