// Package ktlstest holds the helpers of the tests that drive ktls through
// its public API (the root package, conn's external tests, the engines'
// external tests and the interop tests): a ktls Conn paired with a stock
// crypto/tls peer, the checks of the engines a connection got, and the
// kernel requirements of such tests.
//
// It imports the root package, so internal/testing/testenv, which the packages
// under the root import in their own tests, cannot hold these.
package ktlstest

import (
	"crypto/tls"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// SuiteCase is one negotiable version and suite.
type SuiteCase struct {
	Version uint16
	Suite   uint16 // 0: crypto/tls picks (TLS 1.3: AES-128-GCM on AES hardware)
}

func (s SuiteCase) String() string {
	if s.Suite == 0 {
		return tls.VersionName(s.Version)
	}
	return tls.VersionName(s.Version) + "/" + tls.CipherSuiteName(s.Suite)
}

// InteropSuites is every AEAD suite Go can negotiate; TLS 1.3 suites are not
// configurable in Go and are covered against OpenSSL (package interop).
var InteropSuites = []SuiteCase{
	{tls.VersionTLS13, 0},
	{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
}

// PairWithStock returns a ktls Conn in the given role and a stock crypto/tls
// Conn on the other end, both handshaken.
func PairWithStock(t testing.TB, ktlsClient bool, ccfg, scfg *tls.Config, opts ...ktls.Option) (*ktls.Conn, *tls.Conn) {
	t.Helper()
	rc, rs := testenv.TCPPair(t)
	var k *ktls.Conn
	var s *tls.Conn
	if ktlsClient {
		k, s = ktls.Client(rc, ccfg, opts...), tls.Server(rs, scfg)
	} else {
		k, s = ktls.Server(rs, scfg, opts...), tls.Client(rc, ccfg)
	}
	testenv.HandshakeBoth(t, k, s)
	return k, s
}

// WantBackend checks the engines c got for each direction.
func WantBackend(t testing.TB, c *ktls.Conn, tx, rx string) {
	t.Helper()
	if b := c.Backend(); b.TX != tx || b.RX != rx {
		t.Fatalf("Backend() = %+v, want tx=%s rx=%s", b, tx, rx)
	}
}

// Now is the engine that holds a direction now, and why: the candidate that
// took it at the handshake or, for a TLS 1.3 client's RX whose ticket drain
// has ended, the engine that took it then.
func Now(d ktls.DirectionInfo) ktls.EngineChoice {
	if d.AfterTickets && d.Drained.Engine != "" {
		return d.Drained
	}
	return d.EngineChoice
}

// WantChoice checks the engine that holds direction dir ("tx" or "rx") of a
// connection now, and the policy's reason for it, field by field.
func WantChoice(t testing.TB, dir string, d ktls.DirectionInfo, engine, reason string) {
	t.Helper()
	if got := Now(d); got.Engine != engine || got.Reason != reason {
		t.Errorf("%s: Backend() chose %s (%q), want %s (%q)", dir, got.Engine, got.Reason, engine, reason)
	}
}

// WantUnavailable checks the engines the policy found unable to serve
// direction dir before the one that holds it now, field by field.
func WantUnavailable(t testing.TB, dir string, d ktls.DirectionInfo, want []ktls.Refusal) {
	t.Helper()
	if got := Now(d).Unavailable; !slices.Equal(got, want) {
		t.Errorf("%s: Backend() found %v unavailable, want %v", dir, got, want)
	}
}

// WantAuto checks that c got the engines the automatic choice must give it
// here: kernel where this kernel's kTLS serves the suite and c runs over a
// *net.TCPConn (in the VM, where the kernel must, see AutoEngine), userspace
// elsewhere.
func WantAuto(t testing.TB, c *ktls.Conn) {
	t.Helper()
	st := c.ConnectionState()
	if _, tcp := c.NetConn().(*net.TCPConn); !tcp {
		// A wrapped connection (the tests' taps) has no socket to give
		// the kernel.
		WantBackend(t, c, "userspace", "userspace")
		return
	}
	WantBackend(t, c, AutoEngine(t, true, st.Version, st.CipherSuite), AutoEngine(t, false, st.Version, st.CipherSuite))
}

// AutoEngine is the engine auto picks for one direction of a connection
// with this version and suite. Inside the VM a kernel that must have the
// feature and does not fails the test rather than quietly expecting
// userspace.
func AutoEngine(t testing.TB, tx bool, version, suite uint16) string {
	t.Helper()
	err := kernel.Probe(tx, version, suite)
	if err == nil {
		if !tx && IsChaCha(suite) {
			// The measured exception (selector.autoOrder).
			return "userspace"
		}
		return "kernel"
	}
	if f := testenv.KTLSFeature(version, suite); testenv.InVM() && testenv.ExpectedInVM(f) {
		t.Fatalf("kTLS (%s) must serve %s %s in the VM: %v", f, tls.VersionName(version), tls.CipherSuiteName(suite), err)
	}
	return "userspace"
}

// IsChaCha reports whether suite is a ChaCha20-Poly1305 suite.
func IsChaCha(suite uint16) bool {
	return suite == tls.TLS_CHACHA20_POLY1305_SHA256 ||
		suite == tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 ||
		suite == tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
}

// Roles runs f as two subtests, with ktls as the client and as the server.
func Roles(f func(t *testing.T, ktlsClient bool)) func(t *testing.T) {
	return func(t *testing.T) {
		for _, client := range []bool{true, false} {
			name := "ktls-server"
			if client {
				name = "ktls-client"
			}
			t.Run(name, func(t *testing.T) { f(t, client) })
		}
	}
}

// CloseBoth closes the ktls side and checks the peer reads a clean EOF
// (close_notify), then closes the peer.
func CloseBoth(t testing.TB, k *ktls.Conn, s *tls.Conn) {
	t.Helper()
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer read after close = %d, %v; want 0, EOF (close_notify)", n, err)
	}
	s.Close()
}

// StrictHandshake runs the handshake of a ktls Conn that is expected to
// fail (a strict policy that cannot be met) against a stock peer in the
// other role, and returns the Conn, its handshake error and a finish that
// closes both ends. The peer's handshake may succeed (crypto/tls finished
// before the handoff refused) or fail; either way it must end, and a read
// must then see the connection closed.
func StrictHandshake(t *testing.T, ktlsClient bool, ccfg, scfg *tls.Config, opts ...ktls.Option) (k *ktls.Conn, err error, finish func()) {
	t.Helper()
	rc, rs := testenv.TCPPair(t)
	var peer *tls.Conn
	if ktlsClient {
		k, peer = ktls.Client(rc, ccfg, opts...), tls.Server(rs, scfg)
	} else {
		k, peer = ktls.Server(rs, scfg, opts...), tls.Client(rc, ccfg)
	}
	peerDone := make(chan struct{})
	go func() {
		defer close(peerDone)
		peer.SetDeadline(time.Now().Add(30 * time.Second))
		if peer.Handshake() == nil {
			peer.Read(make([]byte, 1))
		}
	}()
	err = k.Handshake()
	return k, err, func() {
		k.Close()
		<-peerDone
		peer.Close()
	}
}

// KernelStrict forces the kernel engine on both directions and fails the
// handshake if it cannot serve, so a test cannot pass on a fallback.
func KernelStrict() []ktls.Option {
	return []ktls.Option{ktls.WithBackend("kernel"), ktls.WithStrict()}
}

// RequireKTLS makes the test depend on kTLS for version and suite (0: TLS
// 1.3's AES-128-GCM, what crypto/tls picks on AES hardware).
func RequireKTLS(t *testing.T, version, suite uint16) {
	t.Helper()
	if suite == 0 {
		suite = tls.TLS_AES_128_GCM_SHA256
	}
	f := testenv.KTLSFeature(version, suite)
	testenv.RequireKernelFeature(t, f, kernel.Probe(true, version, suite))
	testenv.RequireKernelFeature(t, f, kernel.Probe(false, version, suite))
}
