// Package benchmarks compares ktls's engines with crypto/tls and plain TCP in
// one harness, so that benchstat can group the results and ratios come from a
// single run:
//
//	go test -run '^$' -bench . -count 6 ./benchmarks | tee new.txt
//	benchstat -col '/conn@(crypto-tls tcp ktls-stdlib ktls-userspace)' new.txt
//
// Every sub-benchmark moves the same bytes over a loopback TCP connection,
// one direction at a time (the benchmark writes; a goroutine drains), and
// reports bytes per second.
package benchmarks

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/ktls-go/ktls/internal/testenv"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testpki"
)

func configs(version, suite uint16) (client, server *tls.Config) {
	return testpki.Configs(version, suite)
}

type handshaker interface {
	net.Conn
	Handshake() error
}

// pair returns a writer and a reader of the kind named.
func pair(b *testing.B, kind string, version, suite uint16) (w, r net.Conn) {
	rc, rs := testenv.TCPPair(b)
	if kind == "tcp" {
		return rc, rs
	}
	ccfg, scfg := configs(version, suite)
	var c, s handshaker
	switch kind {
	case "crypto-tls":
		c, s = tls.Client(rc, ccfg), tls.Server(rs, scfg)
	case "ktls-stdlib":
		c, s = ktls.Client(rc, ccfg, ktls.WithBackend("stdlib")), ktls.Server(rs, scfg, ktls.WithBackend("stdlib"))
	case "ktls-userspace":
		c, s = ktls.Client(rc, ccfg, ktls.WithBackend("userspace")), ktls.Server(rs, scfg, ktls.WithBackend("userspace"))
	default:
		b.Fatalf("unknown kind %q", kind)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if k, ok := c.(*ktls.Conn); ok {
		want := kind[len("ktls-"):]
		if got := k.Backend(); got.TX != want || got.RX != want {
			b.Fatalf("%s: engines %+v", kind, got)
		}
	}
	return c, s
}

var kinds = []string{"tcp", "crypto-tls", "ktls-stdlib", "ktls-userspace"}

var suites = []struct {
	name           string
	version, suite uint16
}{
	{"TLS13-AES128GCM", tls.VersionTLS13, 0},
	{"TLS12-AES256GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"TLS12-CHACHA20", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

// BenchmarkWrite measures bulk throughput for several write sizes.
func BenchmarkWrite(b *testing.B) {
	for _, s := range suites {
		for _, size := range []int{1 << 10, 16 << 10, 256 << 10} {
			for _, kind := range kinds {
				// Plain TCP runs under every suite's name, so that each
				// row of benchstat -col /conn has all four columns.
				name := fmt.Sprintf("suite=%s/size=%d/conn=%s", s.name, size, kind)
				b.Run(name, func(b *testing.B) {
					w, r := pair(b, kind, s.version, s.suite)
					benchWrites(b, w, r, size)
				})
			}
		}
	}
}

// benchWrites writes size bytes per iteration on w while a goroutine drains
// r, then closes both.
func benchWrites(b *testing.B, w, r net.Conn, size int) {
	defer r.Close()
	defer w.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	w.Close()
	<-done
}

// BenchmarkHandshake measures a full handshake plus the handoff, per kind.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range kinds[1:] {
		b.Run("conn="+kind, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				w, r := pair(b, kind, tls.VersionTLS13, 0)
				w.Close()
				r.Close()
			}
		})
	}
}
