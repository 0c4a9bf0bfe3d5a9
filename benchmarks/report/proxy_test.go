package main

import (
	"strings"
	"testing"
)

// TestProxy checks BenchmarkProxy's family: no crypto-tls column, so
// absolute MB/s with the runs' ranges, and the proxy's own resource tables.
func TestProxy(t *testing.T) {
	var in strings.Builder
	for _, v := range []struct{ mbs, cpu, io string }{{"100", "4.0", "2.002"}, {"120", "3.0", "2.002"}, {"110", "5.0", "2.004"}} {
		in.WriteString("BenchmarkProxy/suite=TLS13-AES128GCM/size=32MiB/dir=up/conn=stunnel4-2  10  1000 ns/op  " + v.mbs + " MB/s  " + v.cpu + " proxy-cpu-s/GiB  " + v.io + " proxy-io-B/B  1000 B/op  10 allocs/op\n")
		in.WriteString("BenchmarkProxy/suite=TLS13-AES128GCM/size=32MiB/dir=up/conn=tcp-2  10  1000 ns/op  900 MB/s  0.5 proxy-cpu-s/GiB  0 proxy-io-B/B\n")
	}
	runs, err := parse(strings.NewReader(in.String()), "x")
	if err != nil {
		t.Fatal(err)
	}
	fams := families(runs[0])
	if len(fams) != 1 || fams[0].hasBaseline() {
		t.Fatalf("%d families, or one with a crypto-tls column", len(fams))
	}
	var b strings.Builder
	fams[0].markdown(&b, "x", "")
	out := b.String()
	for _, want := range []string{
		"### Proxy: TLS-terminating proxy",
		"| suite | size | dir | tcp | stunnel4 |",
		"| TLS13-AES128GCM | 32 MiB | up | 900 (900–900) | 110 (100–120) |",
		"CPU seconds of the proxy's processes per GiB moved",
		"| TLS13-AES128GCM | 32 MiB | up | 0.500 (0.500–0.500) | 4.00 (3.00–5.00) |",
		"rchar + wchar",
		"| TLS13-AES128GCM | 32 MiB | up | 0 (0–0) | 2.00 (2.00–2.00) |",
		"medians, in parentheses min–max over the runs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Bytes allocated") || strings.Contains(out, "Allocations") {
		t.Errorf("an allocation table for the proxy:\n%s", out)
	}
}
