package benchmarks

import (
	"crypto/tls"
	"fmt"
	"io"
	"testing"
)

// BenchmarkRoundTrip: one 1 KiB request and its 1 KiB answer per op, the
// same kind at both ends (one end echoes).
func BenchmarkRoundTrip(b *testing.B) {
	const size = 1 << 10
	for _, s := range suites {
		for _, conn := range conns {
			b.Run(fmt.Sprintf("suite=%s/conn=%s", s.name, conn), func(b *testing.B) {
				c, srv := pair(b, conn, peerOf(conn), s.version, s.suite)
				defer c.Close()
				defer srv.Close()
				done := make(chan struct{})
				go func() {
					defer close(done)
					buf := make([]byte, size)
					for {
						if _, err := io.ReadFull(srv, buf); err != nil {
							return
						}
						if _, err := srv.Write(buf); err != nil {
							return
						}
					}
				}()
				req, resp := make([]byte, size), make([]byte, size)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, resp); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				c.Close()
				<-done
			})
		}
	}
}

// peerOf is the kind at the other end for the symmetric benchmarks.
func peerOf(conn string) string {
	if conn == "crypto-tls" {
		return "peer"
	}
	return conn
}

// BenchmarkHandshake: a TCP connection, the full handshake at both ends
// and, for ktls, the handoff to the engine, per op. TLS 1.3 only: the
// handoff's cost does not depend on the suite.
func BenchmarkHandshake(b *testing.B) {
	for _, conn := range conns[1:] {
		b.Run(fmt.Sprintf("suite=TLS13-AES128GCM/conn=%s", conn), func(b *testing.B) {
			requireKernel(b, conn, tls.VersionTLS13, 0)
			b.ReportAllocs()
			for range b.N {
				c, s := pair(b, conn, peerOf(conn), tls.VersionTLS13, 0)
				c.Close()
				s.Close()
			}
		})
	}
}
