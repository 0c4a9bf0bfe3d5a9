package main

import (
	"reflect"
	"strings"
	"testing"
)

// vmOutput is what internal/testing/vmtest prints for two kernels: every guest line
// prefixed, logs and results interleaved, carriage returns from the serial
// console, and a summary naming each kernel's release.
const vmOutput = "" +
	"vmtest: booting linux-6.1\n" +
	"[linux-6.1] goos: linux\r\n" +
	"[linux-6.1] goarch: amd64\r\n" +
	"[linux-6.1] pkg: github.com/ktls-go/ktls/benchmarks\r\n" +
	"[linux-6.1] cpu: QEMU Virtual CPU\r\n" +
	"[linux-6.1] ### go test ./benchmarks\r\n" +
	"[linux-6.1] BenchmarkSendfile/size=256MiB/conn=crypto-tls-2   20  100000000 ns/op  2684.35 MB/s  10.5 B/MiB  0.40 cpu-s/GiB\r\n" +
	"[linux-6.1] BenchmarkSendfile/size=256MiB/conn=ktls-kernel-2  20   50000000 ns/op  5368.71 MB/s   1.5 B/MiB  0.20 cpu-s/GiB\r\n" +
	"[linux-6.1] --- SKIP: BenchmarkSendfile/size=256MiB/conn=openssl-ktls\r\n" +
	"[linux-6.1]     sendfile_test.go:60: no openssl here\r\n" +
	"[linux-7.3] goos: linux\n" +
	"[linux-7.3] BenchmarkSendfile/size=256MiB/conn=crypto-tls  20  100000000 ns/op  2684.35 MB/s\n" +
	"[linux-7.3] BenchmarkSendfile/size=256MiB/conn=ktls-kernel  20  40000000 ns/op  6710.89 MB/s\n" +
	"[linux-7.3] BenchmarkSendfile/size=256MiB/conn=openssl-ktls 20  45000000 ns/op  5900.00 MB/s\n" +
	"[linux-7.3] PASS\n" +
	"ok  \tlinux-6.1   6.1.0-38-amd64   gcm(aes): generic-gcm-aesni   3 tests passed   0 failed   1 skipped   12.0s\n" +
	"ok  \tlinux-7.3   7.3.4-amd64      gcm(aes): generic-gcm-aesni   3 tests passed   0 failed   0 skipped   11.0s\n"

func TestParseVM(t *testing.T) {
	runs, err := parse(strings.NewReader(vmOutput), "vm.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("got %d datasets, want one per kernel", len(runs))
	}
	old, cur := runs[0], runs[1]
	if old.prefix != "linux-6.1" || old.release != "6.1.0-38-amd64" || cur.prefix != "linux-7.3" || cur.release != "7.3.4-amd64" {
		t.Errorf("kernels: %q %q, %q %q", old.prefix, old.release, cur.prefix, cur.release)
	}
	wantConfig := []kv{{"goos", "linux"}, {"goarch", "amd64"}, {"pkg", "github.com/ktls-go/ktls/benchmarks"}, {"cpu", "QEMU Virtual CPU"}}
	if !reflect.DeepEqual(old.config, wantConfig) {
		t.Errorf("config %v, want %v", old.config, wantConfig)
	}
	if len(old.results) != 2 || len(cur.results) != 3 {
		t.Fatalf("got %d and %d results, want 2 and 3", len(old.results), len(cur.results))
	}
	want := result{
		family:  "Sendfile",
		parts:   []kv{{"size", "256MiB"}, {"conn", "ktls-kernel"}},
		procs:   2,
		metrics: map[string]float64{"ns/op": 50000000, "MB/s": 5368.71, "B/MiB": 1.5, "cpu-s/GiB": 0.2},
	}
	if !reflect.DeepEqual(old.results[1], want) {
		t.Errorf("got %+v\nwant %+v", old.results[1], want)
	}
	if cur.results[2].procs != 0 || cur.results[2].parts[1].value != "openssl-ktls" {
		t.Errorf("without a -N suffix: %+v", cur.results[2])
	}
}

func TestParseOddLines(t *testing.T) {
	in := strings.Join([]string{
		"goos: linux",
		"Benchmark",
		"BenchmarkX",
		"BenchmarkX 10",
		"BenchmarkX ten 5 ns/op",
		"BenchmarkX 10 five ns/op",
		"BenchmarkX 10 5 ns/op 7",
		"BenchmarkX-8\tsome log output",
		"Benchmarking is fun: yes",
		"[unterminated prefix BenchmarkX 10 5 ns/op",
		"[] BenchmarkY 10 5 ns/op",
		"--- FAIL: BenchmarkZ",
		"vmtest: BenchmarkX 10 5 ns/op",
		"BenchmarkX/a/b=c/d- 10 5 ns/op",
		"BenchmarkX/a-b/c=d-x 10 5 ns/op",
		"",
		"\x00\xff\xfe",
		"BenchmarkX/tail-0 1 2 ns/op",
		"BenchmarkX/tail-+3 1 2 ns/op",
		"ok  \tlinux-9 9.0 3 tests passed",
		strings.Repeat("x", 1<<20),
	}, "\n")
	runs, err := parse(strings.NewReader(in), "odd.txt")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ru := range runs {
		for _, r := range ru.results {
			var parts []string
			for _, p := range r.parts {
				parts = append(parts, p.key+"="+p.value)
			}
			names = append(names, r.family+"{"+strings.Join(parts, ",")+"}")
		}
	}
	want := []string{"Y{}", "X{=a,b=c,=d-}", "X{=a-b,c=d-x}", "X{=tail-0}", "X{=tail-+3}"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("got %q\nwant %q", names, want)
	}
}

func TestParseEmpty(t *testing.T) {
	_, err := parse(strings.NewReader("goos: linux\nPASS\n"), "empty.txt")
	if err == nil || !strings.Contains(err.Error(), "empty.txt: no benchmark results") {
		t.Errorf("got %v", err)
	}
}

func TestSplitProcs(t *testing.T) {
	for _, tt := range []struct {
		in    string
		name  string
		procs int
	}{
		{"Send/conn=tcp-8", "Send/conn=tcp", 8},
		{"Send/conn=tcp", "Send/conn=tcp", 0},
		{"Send/suite=TLS13-AES128GCM", "Send/suite=TLS13-AES128GCM", 0},
		{"Send-16", "Send", 16},
		{"Send/a-1/b", "Send/a-1/b", 0},
		{"Send-", "Send-", 0},
		{"Send--2", "Send-", 2},
	} {
		name, procs := splitProcs(tt.in)
		if name != tt.name || procs != tt.procs {
			t.Errorf("splitProcs(%q) = %q, %d, want %q, %d", tt.in, name, procs, tt.name, tt.procs)
		}
	}
}
