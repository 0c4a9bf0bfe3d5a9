package ktls_test

import (
	"crypto/sha256"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testenv"
	"github.com/ktls-go/ktls/internal/testpki"
)

// configs returns a matching client and server config for one version and,
// for TLS 1.2, one suite (0: crypto/tls's choice); t may be nil (examples).
func configs(t testing.TB, version, suite uint16) (client, server *tls.Config) {
	return testpki.Configs(version, suite)
}

// handshakeBoth runs both handshakes concurrently and fails the test on error.
func handshakeBoth(t testing.TB, a, b interface{ Handshake() error }) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Handshake() }()
	if err := a.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	var ctr uint64
	for i := 0; i < n; i += sha256.Size {
		ctr++
		h := sha256.Sum256([]byte{seed, byte(ctr), byte(ctr >> 8), byte(ctr >> 16), byte(ctr >> 24)})
		copy(b[i:], h[:])
	}
	return b
}

// exchange sends n bytes each way at once and checks them by hash.
func exchange(t testing.TB, a, b io.ReadWriter, n int) {
	t.Helper()
	da, db := pattern(n, 1), pattern(n, 2)
	errc := make(chan error, 4)
	send := func(w io.Writer, d []byte) {
		_, err := w.Write(d)
		errc <- err
	}
	recv := func(r io.Reader, want []byte) {
		h := sha256.New()
		_, err := io.CopyN(h, r, int64(len(want)))
		if err == nil && [32]byte(h.Sum(nil)) != sha256.Sum256(want) {
			err = errMismatch
		}
		errc <- err
	}
	go send(a, da)
	go send(b, db)
	go recv(b, da)
	go recv(a, db)
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatalf("exchange of %d bytes: %v", n, err)
		}
	}
}

type mismatchError struct{}

func (mismatchError) Error() string { return "received bytes differ from those sent" }

var errMismatch error = mismatchError{}

// strictHandshake runs the handshake of a ktls Conn that is expected to
// fail (a strict policy that cannot be met) against a stock peer in the
// other role, and returns the Conn, its handshake error and a finish that
// closes both ends. The peer's handshake may succeed (crypto/tls finished
// before the handoff refused) or fail; either way it must end, and a read
// must then see the connection closed.
func strictHandshake(t *testing.T, ktlsClient bool, ccfg, scfg *tls.Config, opts ...ktls.Option) (k *ktls.Conn, err error, finish func()) {
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
