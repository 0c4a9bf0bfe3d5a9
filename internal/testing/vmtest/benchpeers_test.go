package main

import "testing"

// TestBenchRunNeedsBenchFlag: the test binary has no -bench flag of
// vmtest's, so no run here ships the benchmark proxies, benchmarks or not.
func TestBenchRunNeedsBenchFlag(t *testing.T) {
	if _, ok := benchRun([]testPkg{{rel: benchPackage}}); ok {
		t.Error("benchRun without -bench")
	}
}
