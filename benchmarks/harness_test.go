// Package benchmarks measures ktls's engines against crypto/tls and plain
// TCP in one harness, so that ratios come from a single run and benchstat
// and benchmarks/report can group the rows by their conn= key:
//
//	go test -run '^$' -bench . -count 5 ./benchmarks | tee native.txt
//	go run ./internal/testing/vmtest -kernel newest -pkg ./benchmarks -run '^$' -bench . -benchtime 20x > vm.txt
//	go run -C benchmarks/report . -o ../results -links results/ ../../native.txt ../../vm.txt
//
// The conn= values are:
//
//	tcp             plain TCP, no TLS: the ceiling
//	crypto-tls      crypto/tls at both ends: the baseline
//	ktls-stdlib     ktls keeping crypto/tls's record layer
//	ktls-userspace  ktls with its pure-Go engine
//	ktls-kernel     ktls with kTLS (skipped where the kernel lacks it)
//	openssl-ktls    OpenSSL's own kTLS, `s_server -WWW -sendfile` (Sendfile, in the VM)
//
// Send, Receive and Sendfile put ktls (or crypto/tls, or TCP) on the side
// under test and stock crypto/tls on the other, as a server with ktls meets
// its clients; RoundTrip and Handshake put the same kind at both ends. Next
// to ns/op and MB/s, the bulk benchmarks report B/MiB, the bytes allocated
// per MiB moved, and cpu-s/GiB, the process's user and system CPU time per
// GiB moved; both ends run in the process, so the peer's share is in every
// row alike and the differences are the engines'.
package benchmarks

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(fetchEnv); spec != "" {
		fetchMain(spec)
	}
	// The kernel, next to go test's goos/goarch/cpu lines, for
	// benchmarks/report's machine description.
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		if v := testenv.KernelVersion(); v.Release != "" {
			fmt.Printf("kernel: %s\n", v.Release)
		}
	}
	code := m.Run()
	removeSendfileDir()
	os.Exit(code)
}

var suites = []struct {
	name           string
	version, suite uint16 // suite 0: TLS 1.3's AES-128-GCM
}{
	{"TLS13-AES128GCM", tls.VersionTLS13, 0},
	{"TLS12-AES256GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"TLS12-CHACHA20", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

// conns are the kinds every benchmark compares, in table order.
var conns = []string{"tcp", "crypto-tls", "ktls-stdlib", "ktls-userspace", "ktls-kernel"}

func configs(version, suite uint16) (client, server *tls.Config) {
	return testpki.Configs(version, suite)
}

type handshaker interface {
	net.Conn
	Handshake() error
}

// requireKernel skips a ktls-kernel row where kTLS cannot serve the suite
// (the host without the tls module) and fails it in the VM, where it must.
func requireKernel(b *testing.B, conn string, version, suite uint16) {
	if conn != "ktls-kernel" {
		return
	}
	if suite == 0 {
		suite = tls.TLS_AES_128_GCM_SHA256
	}
	// Skips on a host without kTLS; fails in the VMs, where it must serve.
	for _, tx := range []bool{true, false} {
		testenv.RequireKernelFeature(b, testenv.KTLSFeature(version, suite), kernel.Probe(tx, version, suite))
	}
}

// wrap makes one end of a handshaken TLS connection of the kind conn over
// raw: crypto/tls for "crypto-tls" and "peer", ktls with the engine in the
// name (strict: a row never measures a fallback) otherwise.
func wrap(conn string, raw net.Conn, config *tls.Config, client bool) handshaker {
	switch conn {
	case "crypto-tls", "peer":
		if client {
			return tls.Client(raw, config)
		}
		return tls.Server(raw, config)
	}
	opts := []ktls.Option{ktls.WithBackend(conn[len("ktls-"):]), ktls.WithStrict()}
	if client {
		return ktls.Client(raw, config, opts...)
	}
	return ktls.Server(raw, config, opts...)
}

// pair returns the side under test (a client of kind conn) and its peer (a
// server of kind peer), handshaken; for "tcp" both are plain TCP.
func pair(b *testing.B, conn, peer string, version, suite uint16) (under, other net.Conn) {
	requireKernel(b, conn, version, suite)
	rc, rs := testenv.TCPPair(b)
	if conn == "tcp" {
		return rc, rs
	}
	ccfg, scfg := configs(version, suite)
	c, s := wrap(conn, rc, ccfg, true), wrap(peer, rs, scfg, false)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	checkEngine(b, conn, c)
	return c, s
}

// checkEngine fails the benchmark if a ktls end did not get the engine its
// row names.
func checkEngine(b *testing.B, conn string, c net.Conn) {
	if k, ok := c.(*ktls.Conn); ok {
		want := conn[len("ktls-"):]
		if got := k.Backend(); got.TX != want || got.RX != want {
			b.Fatalf("%s: engines %+v", conn, got)
		}
	}
}

// meter reports B/MiB and cpu-s/GiB for the bytes a benchmark moved
// between start and stop.
type meter struct {
	alloc uint64
	cpu   time.Duration
}

func startMeter() meter {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return meter{alloc: ms.TotalAlloc, cpu: cpuTime()}
}

func (m meter) report(b *testing.B, moved int64) {
	cpu := time.Duration(-1)
	if now := cpuTime(); m.cpu >= 0 && now >= 0 {
		cpu = now - m.cpu
	}
	m.reportCPU(b, moved, cpu)
}

// reportCPU reports with cpu as the CPU time spent (negative: unknown).
func (m meter) reportCPU(b *testing.B, moved int64, cpu time.Duration) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if moved <= 0 {
		return
	}
	b.ReportMetric(float64(ms.TotalAlloc-m.alloc)/(float64(moved)/(1<<20)), "B/MiB")
	if cpu >= 0 {
		b.ReportMetric(cpu.Seconds()/(float64(moved)/(1<<30)), "cpu-s/GiB")
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
