package main

import (
	"fmt"
	"strings"
	"testing"
)

// statsOutput has three rows of BenchmarkSend: 10 runs clearly apart, 10
// runs interleaved, 5 runs apart.
func statsOutput() string {
	base := []int{1000, 1010, 990, 1005, 995, 1020, 980, 1002, 998, 1015}
	fast := []int{1500, 1480, 1510, 1530, 1490, 1470, 1520, 1505, 1495, 1540}
	b2 := []int{800, 810, 790, 805, 795, 820, 780, 802, 798, 815}
	same := []int{801, 812, 788, 806, 797, 818, 779, 803, 799, 816}
	b3 := []int{500, 510, 490, 505, 495}
	u3 := []int{600, 610, 590, 605, 595}
	var in strings.Builder
	in.WriteString("goos: linux\ngoarch: amd64\npkg: github.com/ktls-go/ktls/benchmarks\ncpu: Test CPU\n")
	line := func(size, conn string, mbs int) {
		fmt.Fprintf(&in, "BenchmarkSend/size=%s/conn=%s-2 100 1000 ns/op %d MB/s\n", size, conn, mbs)
	}
	for i := range base {
		line("16KiB", "crypto-tls", base[i])
		line("16KiB", "ktls-userspace", fast[i])
		line("1MiB", "crypto-tls", b2[i])
		line("1MiB", "ktls-userspace", same[i])
		if i < len(b3) {
			line("64KiB", "crypto-tls", b3[i])
			line("64KiB", "ktls-userspace", u3[i])
		}
	}
	return in.String()
}

// TestLikeBenchstat checks the table against benchstat's own reading of
// statsOutput, from golang.org/x/perf at the version of go.mod:
//
//	$ go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col /conn -filter .unit:MB/s stats.txt
//	                  │   crypto-tls   │             ktls-userspace              │
//	                  │      B/s       │       B/s        vs base                │
//	Send/size=16KiB-2   954.6Mi ± 1%     1432.9Mi ± 2%    +50.10% (p=0.000 n=10)
//	Send/size=1MiB-2    763.9Mi ± 2%      764.8Mi ± 2%          ~ (p=0.912 n=10)
//	Send/size=64KiB-2   476.8Mi ±  ∞ ¹    572.2Mi ±  ∞ ¹  +20.00% (p=0.008 n=5)
//	geomean             703.2Mi           855.9Mi         +21.72%
//	¹ need >= 6 samples for confidence interval at level 0.95
//
// (benchstat shows MB/s as B/s in MiB: 954.6Mi B/s is 1,001 MB/s.) The
// medians, ±, p-values, n and the note are the same; +50.10% is 1.50×,
// +20.00% is 1.20×, and +21.72% the geometric mean 1.22×.
func TestLikeBenchstat(t *testing.T) {
	runs, err := parse(strings.NewReader(statsOutput()), "stats.txt")
	if err != nil {
		t.Fatal(err)
	}
	f := families(runs[0])[0]
	var b strings.Builder
	f.markdown(&b, "stats", "", nil)
	want := `
### Send: bulk send

**× crypto/tls MB/s (higher is faster); median of 5 to 10 runs**

| size | crypto/tls MB/s | ktls-userspace |
|---|---:|---:|
| 16 KiB | 1,001 ±1% | 1.50× ±2% (p=0.000 n=10) |
| 1 MiB | 801 ±2% | ~1.00× ±2% (p=0.912 n=10) |
| 64 KiB | 500 ±∞ ¹ | 1.20× ±∞ (p=0.008 n=5) ¹ |
| **geometric mean** |  | **1.22×** |

- ¹ need >= 6 samples for confidence interval at level 0.95
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	// The chart: bars at the ratios of the medians, whiskers pairing the
	// two intervals (10 runs: the 2nd and 9th of the sorted runs, see
	// TestSummarize) where both sides have one, "~" where benchstat says ~.
	c, ok := newChart(f, "stats")
	if !ok {
		t.Fatal("no chart")
	}
	fast, same, few := c.groups[0].bars[0], c.groups[1].bars[0], c.groups[2].bars[0]
	if !near(fast.r, 1502.5/1001) || !near(fast.lo, 1480.0/1015) || !near(fast.hi, 1530.0/990) || !fast.measured() || fast.noisy() {
		t.Errorf("16 KiB bar %+v", fast)
	}
	if !same.noisy() || !same.measured() {
		t.Errorf("1 MiB bar %+v: want ~ and whiskers", same)
	}
	if few.noisy() || few.measured() {
		t.Errorf("64 KiB bar %+v: want significant, no whiskers", few)
	}
	if !strings.Contains(c.subtitle, "~: not significant (p > 0.05)") || !strings.Contains(c.subtitle, "whiskers: both medians' 95% confidence intervals") {
		t.Errorf("subtitle %q: want ~ and the whiskers explained", c.subtitle)
	}
}

// TestSignificanceNeedsRuns: the same tenfold difference is "~" with 3
// runs a side, the most extreme p-value 3 and 3 runs can give being 0.1,
// and significant with 4 (2/C(8,4) = 0.029).
func TestSignificanceNeedsRuns(t *testing.T) {
	for _, tt := range []struct {
		runs  int
		noisy bool
		p     float64
	}{{3, true, 0.1}, {4, false, 2.0 / 70}} {
		var in strings.Builder
		for i := range tt.runs {
			fmt.Fprintf(&in, "BenchmarkSend/conn=crypto-tls 1 1 ns/op %d MB/s\n", 100+i)
			fmt.Fprintf(&in, "BenchmarkSend/conn=ktls-kernel 1 1 ns/op %d MB/s\n", 1000+i)
		}
		runs, err := parse(strings.NewReader(in.String()), "x")
		if err != nil {
			t.Fatal(err)
		}
		f := families(runs[0])[0]
		x, ok := f.rows[0].ratio("ktls-kernel", baseline, "MB/s")
		if !ok || x.noisy() != tt.noisy || !near(x.cmp.P, tt.p) {
			t.Errorf("%d runs: %s, p %v, want noisy %v, p %v", tt.runs, x, x.cmp.P, tt.noisy, tt.p)
		}
	}
}
