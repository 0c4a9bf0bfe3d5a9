package ktlstest

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// AFALGCheck is what the afalg engine says about a version and suite.
func AFALGCheck(version, suite uint16) error {
	return afalg.New().(backend.Checker).Check(true, version, suite)
}

// Engines are the engines the leak, fault and reset tests force: userspace
// and stdlib everywhere, and kernel and afalg where they serve TLS 1.3 and
// 1.2 AES-128-GCM (the scenarios' suite), which inside the VMs they must
// (testenv): their halves hold sockets and AF_ALG descriptors of their own.
func Engines(t *testing.T) []string {
	engines := []string{"userspace", "stdlib"}
	for _, e := range []struct {
		name, feature string
		check         func(version, suite uint16) error
	}{
		{"kernel", testenv.FeatureKTLS13, func(v, s uint16) error {
			if err := kernel.Probe(true, v, s); err != nil {
				return err
			}
			return kernel.Probe(false, v, s)
		}},
		{"afalg", testenv.FeatureAFALG, AFALGCheck},
	} {
		err := e.check(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
		if err == nil {
			err = e.check(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		}
		switch {
		case err == nil:
			engines = append(engines, e.name)
		case testenv.InVM() && testenv.ExpectedInVM(e.feature):
			t.Errorf("the %s engine does not serve inside the VM, where it must: %v", e.name, err)
		default:
			t.Logf("the %s engine does not serve here: %v", e.name, err)
		}
	}
	return engines
}

// BigWrite is more than SmallBuffers lets the sockets hold, shared (Write
// only reads it) so that a thousand blocked writers cost no memory each.
var BigWrite = make([]byte, 4<<20)

// SmallBuffers caps the kernel's buffers of a pair whose reader stops, so
// that a thousand such pairs do not fill a small VM's memory (loopback TCP
// grows them to megabytes otherwise).
func SmallBuffers(conns ...net.Conn) {
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(64 << 10)
			tc.SetWriteBuffer(64 << 10)
		}
	}
}

// WriteFails reports whether a Write fails soon on a connection whose peer
// reset it: the Write in flight may have succeeded (its bytes left, or kTLS
// took them, before the reset came), the next ones must not.
func WriteFails(k *ktls.Conn) bool {
	time.Sleep(50 * time.Millisecond)
	for range 3 {
		if _, err := k.Write(make([]byte, 20<<10)); err != nil {
			return true
		}
	}
	return false
}

// FlipConn is a stock peer's transport. Armed, it flips one bit in the
// ciphertext of the next record the peer writes (crypto/tls writes one
// record per Write once the handshake is done).
type FlipConn struct {
	net.Conn
	mu  sync.Mutex
	arm bool
}

func (c *FlipConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.arm && len(p) > record.HeaderLen+8 {
		c.arm = false
		q := bytes.Clone(p)
		// Two thirds into the fragment: past the TLS 1.2 explicit nonce,
		// in the ciphertext or the tag.
		q[record.HeaderLen+(len(q)-record.HeaderLen)*2/3] ^= 0x40
		p = q
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// ArmFlip arms the flip of the next record written.
func (c *FlipConn) ArmFlip() {
	c.mu.Lock()
	c.arm = true
	c.mu.Unlock()
}

// ForceAFALG sets the environment that forces the afalg engine strictly
// (KTLS_BACKEND=afalg, KTLS_STRICT=1), as an operator would, so that no
// test can pass on a fallback.
func ForceAFALG(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "afalg")
	t.Setenv("KTLS_STRICT", "1")
}

// RequireAFALG makes the test depend on AF_ALG serving version and suite
// (0: TLS 1.3's AES-128-GCM, crypto/tls's choice on AES hardware).
func RequireAFALG(t *testing.T, version, suite uint16) {
	t.Helper()
	if suite == 0 {
		suite = tls.TLS_AES_128_GCM_SHA256
	}
	testenv.RequireKernelFeature(t, testenv.FeatureAFALG, AFALGCheck(version, suite))
}
