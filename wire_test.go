package ktls_test

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"github.com/ktls-go/ktls/internal/testenv"

	"github.com/ktls-go/ktls"
)

// tapConn keeps a copy of every byte written and read through it.
type tapConn struct {
	net.Conn
	mu      sync.Mutex
	written []byte
	read    []byte
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read = append(c.read, p[:n]...)
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) readBytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.read...)
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written = append(c.written, p...)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// records splits what was written into records: type and fragment.
func (c *tapConn) records(t testing.TB) (types []byte, frags [][]byte) {
	c.mu.Lock()
	b := append([]byte(nil), c.written...)
	c.mu.Unlock()
	return splitRecords(t, b)
}

// splitRecords splits a byte stream into records: type and fragment.
func splitRecords(t testing.TB, b []byte) (types []byte, frags [][]byte) {
	t.Helper()
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint16(b[3:]))
		if len(b) < 5+n {
			t.Fatalf("partial record of %d bytes at the end of the stream", n)
		}
		types = append(types, b[0])
		frags = append(frags, b[5:5+n])
		b = b[5+n:]
	}
	if len(b) != 0 {
		t.Fatalf("%d stray bytes at the end of the stream", len(b))
	}
	return types, frags
}

// TestExplicitNoncesUnique checks on the wire that TLS 1.2 AES-GCM explicit
// nonces never repeat in a direction, from the Finished that crypto/tls sent
// to the records the engine sent after it, and that they are the sequence
// numbers 0, 1, 2, ... (which is what makes them unique).
func TestExplicitNoncesUnique(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384} {
		t.Run(tls.CipherSuiteName(suite), roles(func(t *testing.T, ktlsClient bool) {
			rc, rs := testenv.TCPPair(t)
			tapC, tapS := &tapConn{Conn: rc}, &tapConn{Conn: rs}
			ccfg, scfg := configs(t, tls.VersionTLS12, suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(2)
			var k interface {
				Handshake() error
				Write([]byte) (int, error)
				Read([]byte) (int, error)
				Close() error
			}
			var s *tls.Conn
			var ktap *tapConn
			if ktlsClient {
				k, s, ktap = ktls.Client(tapC, ccfg), tls.Server(tapS, scfg), tapC
			} else {
				k, s, ktap = ktls.Server(tapS, scfg), tls.Client(tapC, ccfg), tapS
			}
			handshakeBoth(t, k, s)
			// Many small writes, some large, and an alert at the end.
			exchange(t, k, s, 1)
			exchange(t, k, s, 100<<10)
			for range 20 {
				exchange(t, k, s, 7)
			}
			k.Close()
			s.Read(make([]byte, 1))
			types, frags := ktap.records(t)
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
