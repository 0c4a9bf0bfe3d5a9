package record

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/internal/keyschedule"
)

var benchSizes = []int{64, 1024, MaxPlaintext}

// BenchmarkSeal/<suite>/<size>: one record into a reused buffer.
func BenchmarkSeal(b *testing.B) {
	for _, s := range keyschedule.Suites() {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.Name(), n), func(b *testing.B) {
				p := newTestProtector(b, s)
				pt := make([]byte, n)
				buf := make([]byte, 0, p.SealedLen(n))
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					buf = p.Seal(buf[:0], uint64(i), TypeApplicationData, pt)
				}
			})
		}
	}
}

// BenchmarkOpen/<suite>/<size>: one record, opened in place. Each iteration
// first copies the record back into the work buffer (Open overwrites it), as
// crypto/tls copies from its input buffer.
func BenchmarkOpen(b *testing.B) {
	for _, s := range keyschedule.Suites() {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.Name(), n), func(b *testing.B) {
				p := newTestProtector(b, s)
				rec := p.Seal(nil, 42, TypeApplicationData, make([]byte, n))
				work := make([]byte, len(rec))
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					copy(work, rec)
					if _, _, err := p.Open(42, work); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// cryptoTLSConfigs are the configurations the crypto/tls benchmarks run:
// what TLS 1.3 negotiates here, and every TLS 1.2 AEAD suite.
func cryptoTLSConfigs() []*tls.Config {
	ec, rs := testCerts()
	cfgs := []*tls.Config{{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec}}}
	for _, s := range keyschedule.Suites() {
		if s.Version != tls.VersionTLS12 {
			continue
		}
		cert := rs
		if strings.Contains(s.Name(), "ECDSA") {
			cert = ec
		}
		cfgs = append(cfgs, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s.ID}, Certificates: []tls.Certificate{cert}})
	}
	for _, c := range cfgs {
		// Full-size records from the first byte, as ktls writes them.
		c.DynamicRecordSizingDisabled = true
	}
	return cfgs
}

// BenchmarkCryptoTLSWrite/<suite>/<size> is crypto/tls's record layer on
// the same job as BenchmarkSeal: a tls.Conn.Write of size bytes into a
// connection that drops them.
func BenchmarkCryptoTLSWrite(b *testing.B) {
	for _, cfg := range cryptoTLSConfigs() {
		for _, n := range benchSizes {
			p := newTLSPair(b, cfg, cfg)
			name := tls.CipherSuiteName(p.client.ConnectionState().CipherSuite)
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				p.clientTap.discard = true
				data := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := p.client.Write(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCryptoTLSRead/<suite>/<size> is crypto/tls's record layer on the
// same job as BenchmarkOpen: a tls.Conn reads records of size bytes, which we
// seal with the client's key (outside the timer) and feed it.
func BenchmarkCryptoTLSRead(b *testing.B) {
	for _, cfg := range cryptoTLSConfigs() {
		for _, n := range benchSizes {
			p := newTLSPair(b, cfg, cfg)
			cs := p.client.ConnectionState()
			prot, seq := clientWriteKey(b, p, cs)
			b.Run(fmt.Sprintf("%s/%d", tls.CipherSuiteName(cs.CipherSuite), n), func(b *testing.B) {
				pt := make([]byte, n)
				var batch []byte
				p.serverTap.feed = func() []byte {
					b.StopTimer()
					batch = batch[:0]
					for range 64 {
						batch = prot.Seal(batch, seq, TypeApplicationData, pt)
						seq++
					}
					b.StartTimer()
					return batch
				}
				buf := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := io.ReadFull(p.server, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// clientWriteKey derives the client's application write key of a fresh
// tlsPair and the sequence number of its next record.
func clientWriteKey(tb testing.TB, p *tlsPair, cs tls.ConnectionState) (*Protector, uint64) {
	s, ok := keyschedule.Lookup(cs.Version, cs.CipherSuite)
	if !ok {
		tb.Fatalf("suite %x", cs.CipherSuite)
	}
	e := p.keyLog.entries(tb)
	var key, iv []byte
	var seq uint64
	if cs.Version == tls.VersionTLS13 {
		key, iv = keyschedule.TrafficKey(s, e[keyschedule.LabelClientTraffic0].Secret)
	} else {
		cr := splitRecords(tb, p.clientTap.stream())[0][HeaderLen+6 : HeaderLen+38]
		sr := splitRecords(tb, p.serverTap.stream())[0][HeaderLen+6 : HeaderLen+38]
		key, _, iv, _ = keyschedule.KeyBlock12(s, e[keyschedule.LabelClientRandom].Secret, bytes.Clone(cr), bytes.Clone(sr))
		seq = 1 // the Finished went out at 0
	}
	prot, err := NewProtector(cs.Version, cs.CipherSuite, key, iv)
	if err != nil {
		tb.Fatal(err)
	}
	return prot, seq
}
