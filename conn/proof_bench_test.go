package conn

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// recordedPair runs crypto/tls's handshake of a client and a server Conn over
// loopback TCP and stops before the handoff: their records and key logs are
// what the handoff's proof (handoffKeys) works from, as in a real handoff.
func recordedPair(tb testing.TB, version, suite uint16) (cli, srv *Conn) {
	tb.Helper()
	ccfg, scfg := testpki.Configs(version, suite)
	return recordedPairConfigs(tb, ccfg, scfg)
}

// recordedPairConfigs is recordedPair with the configs given.
func recordedPairConfigs(tb testing.TB, ccfg, scfg *tls.Config) (cli, srv *Conn) {
	tb.Helper()
	rc, rs := testenv.TCPPair(tb)
	cli = Client(rc, ccfg, Options{})
	srv = Server(rs, scfg, Options{})
	errc := make(chan error, 1)
	go func() { errc <- srv.tls.Handshake() }()
	if err := cli.tls.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		rc.Close()
		rs.Close()
	})
	return cli, srv
}

var proofCases = []struct {
	name           string
	version, suite uint16
}{
	{"TLS13-AES128GCM", tls.VersionTLS13, 0},
	{"TLS12-AES256GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"TLS12-CHACHA20", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

// BenchmarkHandoffProof measures the proof alone (docs/ARCHITECTURE.md steps
// 3-4): both ends' keys found and every record in question opened, per op,
// on the records of a real crypto/tls handshake.
func BenchmarkHandoffProof(b *testing.B) {
	for _, pc := range proofCases {
		b.Run(fmt.Sprintf("suite=%s", pc.name), func(b *testing.B) {
			cli, srv := recordedPair(b, pc.version, pc.suite)
			cst, sst := cli.tls.ConnectionState(), srv.tls.ConnectionState()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, e := range []struct {
					c  *Conn
					st tls.ConnectionState
				}{{cli, cst}, {srv, sst}} {
					tx, rx, why := e.c.handoffKeys(e.st)
					if why != "" {
						b.Fatal(why)
					}
					tx.wipe()
					rx.wipe()
				}
			}
		})
	}
}

// BenchmarkDir13: the TLS 1.3 proof of the four directions of a handshake
// with a ticket (both ends' logs), the full proof that opened every record
// against dir13, in one run: the records opened, not the keys derived.
func BenchmarkDir13(b *testing.B) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	cli, srv := recordedPairConfigs(b, ccfg, scfg)
	cr, ok := helloRandom(cli.rc.txLog, typeClientHello)
	if !ok {
		b.Fatal("no ClientHello")
	}
	secret := func(label string) []byte {
		s, ok := cli.keyLog.secret(label, cr)
		if !ok {
			b.Fatalf("no %s", label)
		}
		return s
	}
	ch, ct := secret(keyschedule.LabelClientHandshake), secret(keyschedule.LabelClientTraffic0)
	sh, st := secret(keyschedule.LabelServerHandshake), secret(keyschedule.LabelServerTraffic0)
	dirs := []struct {
		log     [][]byte
		hs, app []byte
	}{{cli.rc.txLog, ch, ct}, {srv.rc.rxLog, ch, ct}, {srv.rc.txLog, sh, st}, {cli.rc.rxLog, sh, st}}
	suite, ok := keyschedule.Lookup(tls.VersionTLS13, cli.tls.ConnectionState().CipherSuite)
	if !ok {
		b.Fatal("no suite")
	}
	for _, p := range []struct {
		name string
		f    func(keyschedule.Suite, []byte, []byte, [][]byte, string) (*dirKeys, error)
	}{{"full", dir13Full}, {"dir13", dir13}} {
		b.Run("proof="+p.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				for _, d := range dirs {
					k, err := p.f(suite, d.hs, d.app, d.log, "bench")
					if err != nil {
						b.Fatal(err)
					}
					k.wipe()
				}
			}
		})
	}
}
