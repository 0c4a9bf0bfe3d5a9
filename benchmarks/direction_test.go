package benchmarks

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testenv"
)

// The per-direction benchmarks choose auto's default split between engines
// (README, "Engines"): one side is ktls with the engine under test on one
// direction, the other side stock crypto/tls, so that only that direction's
// engine differs between rows. Run them where kTLS exists, in the VM:
//
//	go run ./internal/vmtest -kernel newest -pkg ./benchmarks -run '^$' -bench 'Send|Receive' -benchtime 20x
//	benchstat -col '/engine@(crypto-tls userspace kernel)' out.txt

var engines = []string{"crypto-tls", "userspace", "kernel"}

// directionPair returns a handshaken pair: ktls with engine on dir ("tx" or
// "rx"; the other direction on userspace), or crypto/tls for "crypto-tls",
// against stock crypto/tls.
func directionPair(b *testing.B, engine, dir string, version, suite uint16) (k, stock net.Conn) {
	if engine == "kernel" {
		if err := kernel.Probe(dir == "tx", version, suite); err != nil {
			b.Skipf("no kTLS here: %v", err)
		}
	}
	rc, rs := testenv.TCPPair(b)
	ccfg, scfg := configs(version, suite)
	var c, s handshaker
	if engine == "crypto-tls" {
		c = tls.Client(rc, ccfg)
	} else {
		other := "userspace"
		spec := fmt.Sprintf("%s=%s,%s=%s", dir, engine, map[string]string{"tx": "rx", "rx": "tx"}[dir], other)
		c = ktls.Client(rc, ccfg, ktls.WithBackend(spec), ktls.WithStrict())
	}
	s = tls.Server(rs, scfg)
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return c, s
}

// suiteOf fills in TLS 1.3's AES-128-GCM for the probe.
func suiteOf(version, suite uint16) uint16 {
	if suite == 0 {
		return tls.TLS_AES_128_GCM_SHA256
	}
	return suite
}

// BenchmarkSend: ktls writes (engine on TX), crypto/tls drains.
func BenchmarkSend(b *testing.B) {
	for _, s := range suites {
		for _, size := range []int{16 << 10, 1 << 20} {
			for _, engine := range engines {
				b.Run(fmt.Sprintf("suite=%s/size=%d/engine=%s", s.name, size, engine), func(b *testing.B) {
					w, r := directionPair(b, engine, "tx", s.version, suiteOf(s.version, s.suite))
					benchWrites(b, w, r, size)
				})
			}
		}
	}
}

// BenchmarkReceive: crypto/tls writes, ktls reads (engine on RX).
func BenchmarkReceive(b *testing.B) {
	for _, s := range suites {
		for _, size := range []int{16 << 10, 1 << 20} {
			for _, engine := range engines {
				b.Run(fmt.Sprintf("suite=%s/size=%d/engine=%s", s.name, size, engine), func(b *testing.B) {
					r, w := directionPair(b, engine, "rx", s.version, suiteOf(s.version, s.suite))
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() {
						defer close(done)
						buf := make([]byte, 64<<10)
						for {
							select {
							case <-stop:
								return
							default:
							}
							if _, err := w.Write(buf); err != nil {
								return
							}
						}
					}()
					buf := make([]byte, size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						if _, err := io.ReadFull(r, buf); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					close(stop)
					r.Close()
					w.Close()
					<-done
				})
			}
		}
	}
}
