package benchmarks

import (
	"crypto/tls"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkHandshakeRatio: per op, one handshake of crypto/tls at both ends
// and one of ktls (handshake and handoff to the engine) at both ends, in
// alternating order, each timed on its own. It reports the median of the
// per-op ratios ktls/crypto-tls ("ratio"), which a busy machine moves far
// less than it moves two rows of BenchmarkHandshake measured seconds apart,
// and each side's median time. TLS 1.3 only, as BenchmarkHandshake.
func BenchmarkHandshakeRatio(b *testing.B) {
	for _, conn := range conns[2:] {
		b.Run(fmt.Sprintf("suite=TLS13-AES128GCM/conn=%s", conn), func(b *testing.B) {
			requireKernel(b, conn, tls.VersionTLS13, 0)
			one := func(kind string) time.Duration {
				start := time.Now()
				c, s := pair(b, kind, peerOf(kind), tls.VersionTLS13, 0)
				d := time.Since(start)
				c.Close()
				s.Close()
				return d
			}
			ratios := make([]float64, 0, b.N)
			base := make([]float64, 0, b.N)
			ktls := make([]float64, 0, b.N)
			for i := range b.N {
				var tb, tk time.Duration
				if i%2 == 0 {
					tb, tk = one("crypto-tls"), one(conn)
				} else {
					tk, tb = one(conn), one("crypto-tls")
				}
				ratios = append(ratios, float64(tk)/float64(tb))
				base = append(base, float64(tb))
				ktls = append(ktls, float64(tk))
			}
			b.ReportMetric(median(ratios), "ratio")
			b.ReportMetric(median(base), "crypto-tls-ns")
			b.ReportMetric(median(ktls), "ktls-ns")
		})
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}
