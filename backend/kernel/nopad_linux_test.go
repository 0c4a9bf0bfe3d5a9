package kernel_test

import (
	"crypto/tls"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestRXExpectNoPad: with Options.RXExpectNoPad a TLS 1.3 Opener sets
// TLS_RX_EXPECT_NO_PAD (Linux 6.0, commit 88527790c079), which getsockopt
// reads back; without it the option stays off; records still open either
// way.
func TestRXExpectNoPad(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	require(t, false, s)
	for _, on := range []bool{false, true} {
		a, b := testenv.TCPPair(t)
		p := randomParams(s, 0)
		o, err := kernel.New(kernel.Options{RXExpectNoPad: on}).NewOpener(backend.Link{Conn: b}, clone(p))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := b.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_TLS, 4) }) // TLS_RX_EXPECT_NO_PAD
		testenv.RequireKernelFeature(t, testenv.FeatureKTLSRxExpectNoPad, notSupported(gerr))
		if gerr != nil || (v != 0) != on {
			t.Fatalf("RXExpectNoPad %v: getsockopt(TLS_RX_EXPECT_NO_PAD) = %d, %v", on, v, gerr)
		}
		us, err := newUserspaceSealer(a, p)
		if err != nil {
			t.Fatal(err)
		}
		ms := messages()
		wait := goWrite(t, us, ms, a)
		readAll(t, o, ms)
		wait()
		o.Close()
		us.Close()
	}
}

// notSupported turns ENOPROTOOPT (a kernel before 6.0) into
// backend.ErrNotSupported for RequireKernelFeature.
func notSupported(err error) error {
	if err == unix.ENOPROTOOPT {
		return backend.ErrNotSupported
	}
	return nil
}
