package main

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestProxy checks BenchmarkProxy's family: no crypto-tls column, so
// absolute MB/s with each median's confidence interval, and the proxy's own
// resource tables.
func TestProxy(t *testing.T) {
	runs, err := parse(strings.NewReader(proxyOutput()), "x")
	if err != nil {
		t.Fatal(err)
	}
	fams := families(runs[0])
	if len(fams) != 1 || fams[0].hasBaseline() {
		t.Fatalf("%d families, or one with a crypto-tls column", len(fams))
	}
	var b strings.Builder
	fams[0].markdown(&b, "x", "", nil)
	out := b.String()
	for _, want := range []string{
		"### Proxy: TLS-terminating proxy",
		"| suite | size | dir | tcp | stunnel4 |",
		// Six runs: each interval is the runs' min to max (1 − 2·2⁻⁶ ≥
		// 0.95), shown as its farther bound: 100 is 9.9% below 111.
		"| TLS13-AES128GCM | 32 MiB | up | 900 ±0% | 111 ±10% |",
		"CPU seconds of the proxy's processes per GiB moved",
		"| TLS13-AES128GCM | 32 MiB | up | 0.500 ±0% | 4.00 ±25% |",
		"rchar + wchar",
		"| TLS13-AES128GCM | 32 MiB | up | 0 ±0% | 2.00 ±0% |",
		"median of 6 runs; medians ± their 95% confidence interval",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Bytes allocated") || strings.Contains(out, "Allocations") {
		t.Errorf("an allocation table for the proxy:\n%s", out)
	}
	if strings.Contains(out, "need >=") {
		t.Errorf("a warning with 6 runs:\n%s", out)
	}
	if strings.Contains(out, "![") {
		t.Errorf("a chart link without a chart:\n%s", out)
	}
}

// proxyOutput is BenchmarkProxy's output of six runs of a row with tcp and
// stunnel4.
func proxyOutput() string {
	var in strings.Builder
	for _, v := range []struct{ mbs, cpu, io string }{
		{"100", "4.0", "2.002"}, {"120", "3.0", "2.002"}, {"110", "5.0", "2.004"},
		{"105", "4.0", "2.000"}, {"115", "3.5", "2.002"}, {"112", "4.5", "2.006"},
	} {
		in.WriteString("BenchmarkProxy/suite=TLS13-AES128GCM/size=32MiB/dir=up/conn=stunnel4-2  10  1000 ns/op  " + v.mbs + " MB/s  " + v.cpu + " proxy-cpu-s/GiB  " + v.io + " proxy-io-B/B  1000 B/op  10 allocs/op\n")
		in.WriteString("BenchmarkProxy/suite=TLS13-AES128GCM/size=32MiB/dir=up/conn=tcp-2  10  1000 ns/op  900 MB/s  0.5 proxy-cpu-s/GiB  0 proxy-io-B/B\n")
	}
	return in.String()
}

// TestProxyCharts checks that BenchmarkProxy, which has no crypto/tls to
// take ratios against, gets charts of its absolute MB/s and proxy CPU,
// named without saying "proxy" twice, the same bytes every time, and linked
// from the markdown.
func TestProxyCharts(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "proxy-native.txt")
	// The down row's tcp is 10 times the TLS rows, so MB/s takes a log
	// axis; the CPU, within 10 times, a linear one.
	down := strings.ReplaceAll(strings.ReplaceAll(proxyOutput(), "dir=up", "dir=down"), " 900 MB/s", " 9000 MB/s")
	if err := os.WriteFile(in, []byte(proxyOutput()+down), 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(out string) map[string][]byte {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run([]string{"-o", out, "-links", "results/", in}, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %s", err, stderr.String())
		}
		files := map[string][]byte{}
		for _, name := range []string{"proxy-native.png", "proxy-cpu-native.png", "results.md"} {
			data, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			files[name] = data
		}
		return files
	}
	first := render(filepath.Join(dir, "a"))
	again := render(filepath.Join(dir, "b"))
	for name, data := range first {
		if !bytes.Equal(data, again[name]) {
			t.Errorf("%s: different bytes from the same input", name)
		}
		if strings.HasSuffix(name, ".png") {
			if _, err := png.Decode(bytes.NewReader(data)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	md := string(first["results.md"])
	for _, want := range []string{
		"![Proxy, proxy-native: MB/s, higher is better, absolute](results/proxy-native.png)",
		"![Proxy, proxy-native: proxy-cpu-s/GiB, lower is better, absolute](results/proxy-cpu-native.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("lacks %q:\n%s", want, md)
		}
	}

	runs, err := parse(strings.NewReader(proxyOutput()+down), "x")
	if err != nil {
		t.Fatal(err)
	}
	f := families(runs[0])[0]
	as := absCharts(f)
	if len(as) != 2 || as[0].unit != "MB/s" || !as[0].higher || as[1].unit != "proxy-cpu-s/GiB" || as[1].higher {
		t.Fatalf("absolute charts %+v", as)
	}
	mbs, ok := newAbsChart(f, "native", as[0])
	if !ok {
		t.Fatal("no MB/s chart")
	}
	if !reflect.DeepEqual(mbs.conns, []string{"tcp", "stunnel4"}) || len(mbs.groups) != 2 || mbs.groups[1].label != "down" {
		t.Errorf("conns %q, groups %+v", mbs.conns, mbs.groups)
	}
	if b := mbs.groups[0].bars[1]; !b.ok || b.r != 111 || b.lo != 100 || b.hi != 120 || !b.measured() || b.noisy() {
		t.Errorf("stunnel4 up: %+v, want median 111, interval 100–120", b)
	}
	if mbs.linear || !strings.Contains(mbs.axis, "log scale") || !strings.Contains(mbs.subtitle, "not ratios") {
		t.Errorf("MB/s: linear %v, axis %q, subtitle %q", mbs.linear, mbs.axis, mbs.subtitle)
	}
	cpu, ok := newAbsChart(f, "native", as[1])
	if !ok || !cpu.linear || cpu.axis != "proxy-cpu-s/GiB, lower is better" {
		t.Errorf("CPU chart %v: %+v", ok, cpu)
	}
}

func TestAbsChartNeedsNoBaseline(t *testing.T) {
	runs, err := parse(strings.NewReader(sendOutput), "native.txt")
	if err != nil {
		t.Fatal(err)
	}
	f := families(runs[0])[0]
	for _, a := range absCharts(f) {
		if _, ok := newAbsChart(f, "native", a); ok {
			t.Errorf("an absolute %s chart of a family with crypto/tls", a.unit)
		}
	}
}

func TestAbsTicks(t *testing.T) {
	measure := func(s string) float64 { return 8 * float64(len(s)) }
	for _, tt := range []struct {
		lo, hi float64
		linear bool
		want   []float64
	}{
		{0, 1410, true, []float64{0, 200, 400, 600, 800, 1000, 1200, 1400}},
		{0, 1.92, true, []float64{0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.6, 1.8}},
		{5, 100, false, []float64{5, 10, 20, 50, 100}},
	} {
		x := func(v float64) float64 { return (v - tt.lo) / (tt.hi - tt.lo) * plotW }
		if !tt.linear {
			x = func(v float64) float64 { return math.Log(v/tt.lo) / math.Log(tt.hi/tt.lo) * plotW }
		}
		if got := absTicks(tt.lo, tt.hi, tt.linear, x, measure); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("absTicks(%v, %v, %v) = %v, want %v", tt.lo, tt.hi, tt.linear, got, tt.want)
		}
	}
	for _, tt := range []struct {
		v    float64
		up   bool
		want float64
	}{{4.1, false, 2}, {5.4, false, 5}, {0.28, false, 0.2}, {92, true, 100}, {163, true, 200}, {50, true, 50}, {50, false, 50}} {
		if got := snap125(tt.v, tt.up); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("snap125(%v, %v) = %v, want %v", tt.v, tt.up, got, tt.want)
		}
	}
}
