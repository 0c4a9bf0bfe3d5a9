package main

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	inf := math.Inf(1)
	for _, tt := range []struct {
		in      []float64
		med     float64
		lo, hi  float64
		warning bool
	}{
		// Fewer than 6 runs: a median, no interval, benchstat's warning.
		{[]float64{5}, 5, -inf, inf, true},
		{[]float64{3, 1, 2}, 2, -inf, inf, true},
		{[]float64{4, 1, 3, 2}, 2.5, -inf, inf, true},
		// With 5, the binomial interval's upper order statistic exists,
		// its lower does not: still no interval, as benchstat's "± ∞".
		{[]float64{7, 7, 100, 7, 1}, 7, -inf, 100, true},
		// 6 runs: the interval is the 1st to 6th order statistic, the
		// narrowest whose binomial coverage 1-2·2⁻⁶ = 0.969 reaches 0.95.
		{[]float64{6, 1, 5, 2, 4, 3}, 3.5, 1, 6, false},
		// 10 runs: 2nd to 9th, coverage 1-2·11/1024 = 0.979 (3rd to 8th
		// would be 1-2·56/1024 = 0.891).
		{[]float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, 5.5, 2, 9, false},
		// 8 runs: not 2nd to 7th (1-2·9/256 = 0.930), but an interval one
		// order statistic narrower than min to max will do, 1st to 7th:
		// 1-1/256-9/256 = 0.961. 9 runs: 2nd to 8th (1-2·10/512 = 0.961).
		{[]float64{8, 1, 7, 2, 6, 3, 5, 4}, 4.5, 1, 7, false},
		{[]float64{9, 1, 8, 2, 7, 3, 6, 4, 5}, 5, 2, 8, false},
	} {
		in := slices.Clone(tt.in)
		got, ok := summarize(tt.in)
		if !ok || got.med != tt.med || got.lo != tt.lo || got.hi != tt.hi || got.n != len(tt.in) {
			t.Errorf("summarize(%v) = median %v [%v, %v] n=%d, want %v [%v, %v]", tt.in, got.med, got.lo, got.hi, got.n, tt.med, tt.lo, tt.hi)
		}
		want := []string(nil)
		if tt.warning {
			want = []string{"need >= 6 samples for confidence interval at level 0.95"}
		}
		if !reflect.DeepEqual(got.warnings, want) || got.hasCI() == tt.warning {
			t.Errorf("summarize(%v): warnings %q, hasCI %v", tt.in, got.warnings, got.hasCI())
		}
		if !reflect.DeepEqual(in, tt.in) {
			t.Errorf("summarize sorted its argument: %v", tt.in)
		}
	}
	if _, ok := summarize(nil); ok {
		t.Error("summarize(nil) reported a value")
	}
}

// exactUTestP is the two-sided p-value of the Mann-Whitney U test by
// enumeration, an independent check of benchmath's: every way of drawing
// len(x) of the pooled runs (no ties), the share whose U is at least as far
// from its mean as the observed one.
func exactUTestP(x, y []float64) float64 {
	pool := append(slices.Clone(x), y...)
	slices.Sort(pool)
	inX := make([]bool, len(pool))
	for i, v := range pool {
		inX[i] = slices.Contains(x, v)
	}
	u := func(mask []bool) float64 { // pairs (a in x, b in y) with a > b
		n, ys := 0.0, 0.0
		for _, isX := range mask {
			if isX {
				n += ys
			} else {
				ys++
			}
		}
		return n
	}
	mean := float64(len(x)*len(y)) / 2
	obs := math.Abs(u(inX) - mean)
	var extreme, total float64
	mask := make([]bool, len(pool))
	var walk func(i, left int)
	walk = func(i, left int) {
		if left == 0 {
			total++
			if math.Abs(u(mask)-mean) >= obs-1e-9 {
				extreme++
			}
			return
		}
		for j := i; j <= len(pool)-left; j++ {
			mask[j] = true
			walk(j+1, left-1)
			mask[j] = false
		}
	}
	walk(0, len(x))
	return extreme / total
}

func TestRatio(t *testing.T) {
	s := func(xs ...float64) summary { v, _ := summarize(xs); return v }
	inf := math.Inf(1)
	for _, tt := range []struct {
		name      string
		x, base   []float64
		r, lo, hi float64
		p         float64
		noisy     bool
		str       string
		warnings  []string
	}{
		// 6 runs each, apart: the smallest p 6 and 6 runs can give, 2/C(12,6).
		{"faster", []float64{1400, 1450, 1500, 1500, 1550, 1600}, []float64{990, 995, 1000, 1000, 1005, 1010},
			1.5, 1400.0 / 1010, 1600.0 / 990, 2.0 / 924, false, "1.50× ±7% (p=0.002 n=6)", nil},
		{"slower", []float64{450, 480, 500, 501, 520, 550}, []float64{990, 995, 1000, 1001, 1005, 1010},
			500.5 / 1000.5, 450.0 / 1010, 550.0 / 990, 2.0 / 924, false, "0.50× ±10% (p=0.002 n=6)", nil},
		// Interleaved: no significant difference, "~".
		{"interleaved", []float64{791, 799, 803, 807, 812, 817}, []float64{790, 798, 802, 806, 810, 815},
			805.0 / 804, 791.0 / 815, 817.0 / 790, -1, true, "~1.00× ±2% (p=0.699 n=6)", nil},
		// 5 runs: significant, but no interval, and the note says why.
		{"five runs", []float64{600, 610, 590, 605, 595}, []float64{500, 510, 490, 505, 495},
			1.2, -inf, inf, 2.0 / 252, false, "1.20× ±∞ (p=0.008 n=5)",
			[]string{"need >= 6 samples for confidence interval at level 0.95"}},
		// 3 runs: not even a difference as large as this one can be
		// significant; benchstat says how many runs it would take.
		{"three runs", []float64{200, 210, 205}, []float64{100, 101, 102}, 205.0 / 101, -inf, inf, 0.1, true, "~2.03× ±∞ (p=0.100 n=3)",
			[]string{"need >= 6 samples for confidence interval at level 0.95", "need >= 4 samples to detect a difference at alpha level 0.05"}},
		// Unequal runs per side: n=baseline+conn.
		{"unequal", []float64{150, 151, 152, 153, 154, 155, 156}, []float64{100, 101, 102, 103, 104, 105},
			153 / 102.5, 150.0 / 105, 156.0 / 100, 2.0 / 1716, false, "1.49× ±2% (p=0.001 n=6+7)", nil},
	} {
		got, ok := compare(s(tt.x...), s(tt.base...))
		if !ok {
			t.Errorf("%s: no ratio", tt.name)
			continue
		}
		if !near(got.r, tt.r) || !near(got.lo, tt.lo) && got.lo != tt.lo || !near(got.hi, tt.hi) && got.hi != tt.hi {
			t.Errorf("%s: got %.4f [%.4f, %.4f], want %.4f [%.4f, %.4f]", tt.name, got.r, got.lo, got.hi, tt.r, tt.lo, tt.hi)
		}
		if want := exactUTestP(tt.x, tt.base); !near(got.cmp.P, want) {
			t.Errorf("%s: p = %v, enumeration gives %v", tt.name, got.cmp.P, want)
		}
		if tt.p >= 0 && !near(got.cmp.P, tt.p) {
			t.Errorf("%s: p = %v, want %v", tt.name, got.cmp.P, tt.p)
		}
		if got.noisy() != tt.noisy || got.String() != tt.str {
			t.Errorf("%s: noisy %v %q, want %v %q", tt.name, got.noisy(), got.String(), tt.noisy, tt.str)
		}
		if got.measured() != (tt.warnings == nil) {
			t.Errorf("%s: measured %v with warnings %q", tt.name, got.measured(), tt.warnings)
		}
		if !reflect.DeepEqual(got.warnings, tt.warnings) {
			t.Errorf("%s: warnings %q, want %q", tt.name, got.warnings, tt.warnings)
		}
	}
	if _, ok := compare(s(1), s(0)); ok {
		t.Error("a ratio against zero")
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestGeomean(t *testing.T) {
	if g := geomean([]float64{1.5, 1.0 / 1.5, 4, 0.25}); !near(g, 1) {
		t.Errorf("geomean = %v, want 1", g)
	}
	if g := geomean([]float64{2, 8}); !near(g, 4) {
		t.Errorf("geomean = %v, want 4", g)
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 0.5: "0.500", 0.01234: "0.0123", 1: "1.00", 12.34: "12.3", 239.45: "239", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := number(in); got != want {
			t.Errorf("number(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{812: "812 ns", 4276: "4.28 µs", 400000: "400 µs", 1.5e6: "1.50 ms", 2e9: "2.00 s"} {
		if got := duration(in); got != want {
			t.Errorf("duration(%v) = %q, want %q", in, got, want)
		}
	}
	for _, tt := range [][3]string{
		{"size", "16KiB", "16 KiB"}, {"size", "1MiB", "1 MiB"}, {"size", "1048576", "1 MiB"},
		{"size", "1000", "1000 B"}, {"suite", "TLS13-AES128GCM", "TLS13-AES128GCM"}, {"n", "256MiB", "256 MiB"},
	} {
		if got := showValue(tt[0], tt[1]); got != tt[2] {
			t.Errorf("showValue(%q, %q) = %q, want %q", tt[0], tt[1], got, tt[2])
		}
	}
}

// sendOutput has three runs of two rows; the second row lacks tcp, and
// userspace's runs there overlap crypto/tls's. Three runs are too few for a
// confidence interval or a significant difference: the golden shows
// benchstat's warnings.
const sendOutput = `goos: linux
goarch: amd64
pkg: github.com/ktls-go/ktls/benchmarks
cpu: Test CPU @ 3.00GHz
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=tcp-4             100  1000 ns/op  2000 MB/s  0 B/MiB  0.50 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=crypto-tls-4      100  1000 ns/op  1000 MB/s  64 B/MiB  1.00 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=ktls-userspace-4  100  1000 ns/op  1500 MB/s  16 B/MiB  0.80 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=1MiB/conn=crypto-tls-4       100  1000 ns/op   800 MB/s  64 B/MiB  1.00 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=1MiB/conn=ktls-userspace-4   100  1000 ns/op   800 MB/s  16 B/MiB  0.90 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=tcp-4             100  1000 ns/op  2100 MB/s  0 B/MiB  0.50 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=crypto-tls-4      100  1000 ns/op   990 MB/s  64 B/MiB  1.00 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=ktls-userspace-4  100  1000 ns/op  1400 MB/s  16 B/MiB  0.80 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=1MiB/conn=crypto-tls-4       100  1000 ns/op   810 MB/s  64 B/MiB  1.00 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=1MiB/conn=ktls-userspace-4   100  1000 ns/op   820 MB/s  16 B/MiB  0.90 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=tcp-4             100  1000 ns/op  1900 MB/s  0 B/MiB  0.50 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=crypto-tls-4      100  1000 ns/op  1010 MB/s  64 B/MiB  1.00 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=16KiB/conn=ktls-userspace-4  100  1000 ns/op  1600 MB/s  16 B/MiB  0.80 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=1MiB/conn=crypto-tls-4       100  1000 ns/op   790 MB/s  64 B/MiB  1.00 cpu-s/GiB
BenchmarkSend/suite=TLS13-AES128GCM/size=1MiB/conn=ktls-userspace-4   100  1000 ns/op   790 MB/s  16 B/MiB  0.90 cpu-s/GiB
BenchmarkHandshake/suite=TLS13-AES128GCM/conn=crypto-tls-4  1000  400000 ns/op  40000 B/op  400 allocs/op
BenchmarkHandshake/suite=TLS13-AES128GCM/conn=ktls-kernel-4 1000  420000 ns/op  42000 B/op  420 allocs/op
PASS
ok  	github.com/ktls-go/ktls/benchmarks	1.0s
`

const sendGolden = `# Results

## native

- Input: ` + "`native.txt`" + `
- Machine: a test machine
- Go reports: ` + "`goos: linux`, `goarch: amd64`, `cpu: Test CPU @ 3.00GHz`" + `
- Package: ` + "`github.com/ktls-go/ktls/benchmarks`" + `
- Command: ` + "`go test -bench . -count 3 ./benchmarks | tee native.txt`" + `

The statistics are benchstat's (golang.org/x/perf/benchmath, no assumption about the distribution of the runs). Each ratio is a conn's median over the repeated runs divided by crypto/tls's median in the same row. ± is the 95% confidence interval of a median, in percent of it (∞ with fewer than 6 runs, too few for one). p is the Mann-Whitney U test's p-value of the conn's runs against crypto/tls's, n the runs per side (crypto/tls's first where they differ); ~ marks a ratio whose difference from 1× is not significant (p > 0.05). Numbered notes are benchstat's warnings. – means not measured.

### Send: bulk send

**× crypto/tls MB/s (higher is faster); median of 3 runs**

| suite | size | crypto/tls MB/s | tcp | ktls-userspace |
|---|---|---:|---:|---:|
| TLS13-AES128GCM | 16 KiB | 1,000 ±∞ ¹ | ~2.00× ±∞ (p=0.100 n=3) ¹ ² | ~1.50× ±∞ (p=0.100 n=3) ¹ ² |
| TLS13-AES128GCM | 1 MiB | 800 ±∞ ¹ | – | ~1.00× ±∞ (p=1.000 n=3) ¹ ² |
| **geometric mean** |  |  | **2.00×** (1 of 2 rows) | **1.22×** |

- ¹ need >= 6 samples for confidence interval at level 0.95
- ² need >= 4 samples to detect a difference at alpha level 0.05

**Bytes allocated per MiB moved (B/MiB), lower is better**

| suite | size | tcp | crypto-tls | ktls-userspace |
|---|---|---:|---:|---:|
| TLS13-AES128GCM | 16 KiB | 0 | 64.0 | 16.0 |
| TLS13-AES128GCM | 1 MiB | – | 64.0 | 16.0 |

**CPU seconds per GiB moved (cpu-s/GiB, user + system of the whole process), lower is better**

| suite | size | tcp | crypto-tls | ktls-userspace |
|---|---|---:|---:|---:|
| TLS13-AES128GCM | 16 KiB | 0.500 | 1.00 | 0.800 |
| TLS13-AES128GCM | 1 MiB | – | 1.00 | 0.900 |

![Send, native: × crypto/tls MB/s (higher is faster)](results/send-native.png)

### Handshake: handshake + install

**× crypto/tls time per op (lower is faster); one run**

| suite | crypto/tls time/op | ktls-kernel |
|---|---:|---:|
| TLS13-AES128GCM | 400 µs ¹ | ~1.05× ±∞ (p=1.000 n=1) ¹ ² |

- ¹ need >= 6 samples for confidence interval at level 0.95
- ² need >= 4 samples to detect a difference at alpha level 0.05

**Bytes allocated per operation (B/op), lower is better**

| suite | crypto-tls | ktls-kernel |
|---|---:|---:|
| TLS13-AES128GCM | 40,000 | 42,000 |

**Allocations per operation (allocs/op), lower is better**

| suite | crypto-tls | ktls-kernel |
|---|---:|---:|
| TLS13-AES128GCM | 400 | 420 |

![Handshake, native: × crypto/tls time per op (lower is faster)](results/handshake-native.png)
`

// writeInput writes an input file into a fresh folder.
func writeInput(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMarkdownGolden(t *testing.T) {
	in := writeInput(t, "native.txt", sendOutput)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run([]string{"-o", out, "-title", "Results", "-links", "results/", "-machine", "a test machine",
		"-command", "go test -bench . -count 3 ./benchmarks | tee native.txt", in}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(md); got != sendGolden {
		t.Errorf("results.md:\n%s\nwant:\n%s", got, sendGolden)
	}
	for _, name := range []string{"send-native.png", "handshake-native.png", "results.md"} {
		if !strings.Contains(stdout.String(), filepath.Join(out, name)+"\n") {
			t.Errorf("stdout does not list %s:\n%s", name, stdout.String())
		}
	}
}

func TestVMSections(t *testing.T) {
	in := writeInput(t, "bench-vm.txt", vmOutput)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-o", out, in}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## vm-linux-6.1\n\n- Input: `bench-vm.txt`, lines `[linux-6.1]`\n",
		"- Kernel: `linux-6.1` (`6.1.0-38-amd64`)\n",
		"## vm-linux-7.3\n",
		// 6.1 skipped OpenSSL: no anchor column.
		// One run: no interval, no significance, as benchstat says.
		"| size | crypto/tls MB/s | ktls-kernel |\n|---|---:|---:|\n| 256 MiB | 2,684 ¹ | ~2.00× ±∞ (p=1.000 n=1) ¹ ² |\n",
		"| size | crypto/tls MB/s | ktls-kernel | openssl-ktls | ktls-kernel ÷ openssl-ktls |\n" +
			"|---|---:|---:|---:|---:|\n" +
			"| 256 MiB | 2,684 ¹ | ~2.50× ±∞ (p=1.000 n=1) ¹ ² | ~2.20× ±∞ (p=1.000 n=1) ¹ ² | ~1.14× ±∞ (p=1.000 n=1) ¹ ² |\n",
		"![Sendfile, vm-linux-7.3: × crypto/tls MB/s (higher is faster)](sendfile-vm-linux-7.3.png)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	for _, name := range []string{"sendfile-vm-linux-6.1.png", "sendfile-vm-linux-7.3.png"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
}

// TestGeneric: a family the report does not know, keyed by the older
// engine= and without MB/s, and one without any conn, pass through.
func TestGeneric(t *testing.T) {
	in := `BenchmarkWrite/size=1024/engine=userspace  10  200 ns/op
BenchmarkWrite/size=1024/engine=crypto-tls  10  100 ns/op
BenchmarkWrite/size=1024/engine=kernel  10  50 ns/op
BenchmarkWrite/size=1024/engine=fancy  10  50 ns/op
BenchmarkOther/small  10  7 ns/op
BenchmarkOther/big  10  9 ns/op
`
	runs, err := parse(strings.NewReader(in), "x")
	if err != nil {
		t.Fatal(err)
	}
	fams := families(runs[0])
	if len(fams) != 2 {
		t.Fatalf("%d families", len(fams))
	}
	w, o := fams[0], fams[1]
	if w.throughput || !reflect.DeepEqual(w.conns, []string{"crypto-tls", "userspace", "kernel", "fancy"}) || !reflect.DeepEqual(w.rowKeys, []string{"size"}) {
		t.Errorf("Write: throughput %v, conns %q, rows %q", w.throughput, w.conns, w.rowKeys)
	}
	var b strings.Builder
	w.markdown(&b, "x", "", nil)
	if want := "| 1 KiB | 100 ns ¹ | ~2.00× ±∞ (p=1.000 n=1) ¹ ² | ~0.50× ±∞ (p=1.000 n=1) ¹ ² | ~0.50× ±∞ (p=1.000 n=1) ¹ ² |\n"; !strings.Contains(b.String(), want) {
		t.Errorf("Write lacks %q:\n%s", want, b.String())
	}
	if _, ok := newChart(o, "x"); ok {
		t.Error("a chart without crypto/tls")
	}
	b.Reset()
	o.markdown(&b, "x", "", nil)
	if want := "| case | ns/op |\n|---|---:|\n| small | 7.00 ns |\n| big | 9.00 ns |\n"; !strings.Contains(b.String(), want) {
		t.Errorf("Other lacks %q:\n%s", want, b.String())
	}
}

func TestChart(t *testing.T) {
	runs, err := parse(strings.NewReader(sendOutput), "native.txt")
	if err != nil {
		t.Fatal(err)
	}
	f := families(runs[0])[0]
	c, ok := newChart(f, "native")
	if !ok {
		t.Fatal("no chart")
	}
	if !reflect.DeepEqual(c.conns, []string{"tcp", "ktls-userspace"}) || len(c.groups) != 2 || c.groups[1].bars[0].ok {
		t.Fatalf("chart %+v", c)
	}
	data, err := c.encode()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := newFaces()
	if err != nil {
		t.Fatal(err)
	}
	w, h := c.size(fs)
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("image is %v, want %dx%d", b, w, h)
	}
	// Wide enough for a page, and taller with more rows.
	if w < 1400 || w > 2400 || h < 300 {
		t.Errorf("image is %dx%d", w, h)
	}
	c.groups = append(c.groups, c.groups...)
	if _, h2 := c.size(fs); h2 <= h {
		t.Errorf("four groups are %d high, two %d", h2, h)
	}
	c.groups = c.groups[:2]
	again, err := c.encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Error("the same chart encoded to different bytes")
	}
}

func TestTicks(t *testing.T) {
	for _, tt := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0.85, 1.38, []float64{0.9, 1, 1.1, 1.2, 1.3}},
		{0.5, 1.9, []float64{0.6, 0.8, 1, 1.2, 1.4, 1.6, 1.8}},
		{0.3, 8, []float64{0.5, 1, 2, 4, 8}},
		{0.04, 60, []float64{0.0625, 0.25, 1, 4, 16}},
		{0.001, 1000, []float64{1.0 / 256, 1.0 / 16, 1, 16, 256}},
	} {
		// About the width of the labels in the small face.
		measure := func(s string) float64 { return 7 * float64(len(s)) }
		got := ticks(tt.lo, tt.hi, plotW/math.Log(tt.hi/tt.lo), measure)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ticks(%v, %v) = %v, want %v", tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestRunErrors(t *testing.T) {
	good := writeInput(t, "good.txt", sendOutput)
	empty := writeInput(t, "empty.txt", "PASS\n")
	out := t.TempDir()
	for _, tt := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{"-o", out}, "no input files", true},
		{[]string{"-o", out, good, filepath.Join(out, "missing.txt")}, "missing.txt: no such file", false},
		{[]string{"-o", out, out}, "is a directory", false},
		{[]string{"-o", out, empty}, "empty.txt: no benchmark results", false},
		{[]string{"-o", out, "-machine", "a", "-machine", "b", good}, "-machine given 2 times for 1 inputs", true},
	} {
		var stdout, stderr bytes.Buffer
		err := run(tt.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want %q", tt.args, err, tt.want)
			continue
		}
		if _, ok := err.(usageError); ok != tt.usage {
			t.Errorf("run(%q): usage error %v, want %v", tt.args, ok, tt.usage)
		}
	}
	// Nothing is written when an input is bad.
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("wrote %d files", len(ents))
	}
}

func TestFileLabel(t *testing.T) {
	for in, want := range map[string]string{
		"bench-native.txt": "native", "/tmp/bench-vm.txt": "vm", "vm.out": "vm", "My Run!.txt": "my-run",
		"-": "stdin", "bench-.txt": "run",
	} {
		if got := fileLabel(in); got != want {
			t.Errorf("fileLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
