package conn_test

import (
	"crypto/tls"
	"encoding/binary"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestExplicitNoncesUnique checks on the wire that TLS 1.2 AES-GCM explicit
// nonces never repeat in a direction, from the Finished that crypto/tls sent
// to the records the engine sent after it, and that they are the sequence
// numbers 0, 1, 2, ... (which is what makes them unique).
func TestExplicitNoncesUnique(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384} {
		t.Run(tls.CipherSuiteName(suite), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			rc, rs := testenv.TCPPair(t)
			tapC, tapS := &testenv.TapConn{Conn: rc}, &testenv.TapConn{Conn: rs}
			ccfg, scfg := testpki.Configs(tls.VersionTLS12, suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(2)
			var k interface {
				Handshake() error
				Write([]byte) (int, error)
				Read([]byte) (int, error)
				Close() error
			}
			var s *tls.Conn
			var ktap *testenv.TapConn
			if ktlsClient {
				k, s, ktap = ktls.Client(tapC, ccfg), tls.Server(tapS, scfg), tapC
			} else {
				k, s, ktap = ktls.Server(tapS, scfg), tls.Client(tapC, ccfg), tapS
			}
			testenv.HandshakeBoth(t, k, s)
			// Many small writes, some large, and an alert at the end.
			testenv.Exchange(t, k, s, 1)
			testenv.Exchange(t, k, s, 100<<10)
			for range 20 {
				testenv.Exchange(t, k, s, 7)
			}
			k.Close()
			s.Read(make([]byte, 1))
			types, frags := ktap.Records(t)
			seen := map[uint64]bool{}
			ccs := false
			var next uint64
			for i, typ := range types {
				if !ccs {
					ccs = typ == 20
					continue
				}
				if len(frags[i]) < 8 {
					t.Fatalf("record %d: fragment of %d bytes", i, len(frags[i]))
				}
				n := binary.BigEndian.Uint64(frags[i])
				if seen[n] {
					t.Fatalf("record %d reuses explicit nonce %d", i, n)
				}
				if n != next {
					t.Fatalf("record %d has explicit nonce %d, want %d", i, n, next)
				}
				seen[n] = true
				next++
			}
			if next < 25 {
				t.Fatalf("only %d protected records seen", next)
			}
		}))
	}
}
