package conn_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/conn"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The sources ReadFrom splices from (docs/ARCHITECTURE.md, "Socket to kTLS:
// splice"), each copied the way a program would:
//
//   - "tcp-io.Copy": io.Copy(conn, tcpConn), which reaches ReadFrom through
//     TCPConn.WriteTo and net's wrapper;
//   - "tcp-ReadFrom": conn.ReadFrom(tcpConn);
//   - "unix": io.Copy(conn, unixConn);
//   - "limited": io.CopyN(conn, tcpConn, n), an *io.LimitedReader, with more
//     bytes behind the limit that must stay in the source.
var spliceSources = []string{"tcp-io.Copy", "tcp-ReadFrom", "unix", "limited"}

// sourcePair returns the reading and the writing end of a stream socket
// pair of the kind's network.
func sourcePair(t *testing.T, kind string) (r, w net.Conn) {
	t.Helper()
	if kind != "unix" {
		w, r = testenv.TCPPair(t)
		return r, w
	}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	w, err = net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r = <-acc
	if r == nil {
		t.Fatal("accepting the unix connection failed")
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// copyFrom copies r into k as the kind says, n bytes for "limited".
func copyFrom(k *ktls.Conn, r net.Conn, kind string, n int64) (int64, error) {
	switch kind {
	case "tcp-ReadFrom":
		return k.ReadFrom(r)
	case "limited":
		return io.CopyN(k, r, n)
	}
	return io.Copy(k, r)
}

// peerSum reads the stock peer until its end and returns the hash of what
// it read and how much.
func peerSum(s *tls.Conn) <-chan [2]any { return peerSumAt(s, -1, nil) }

// notifyAt is a writer that closes reached once at bytes have come.
type notifyAt struct {
	n, at   int64
	reached chan struct{}
}

func (w *notifyAt) Write(b []byte) (int, error) {
	w.n += int64(len(b))
	if w.at >= 0 && w.n >= w.at {
		close(w.reached)
		w.at = -1
	}
	return len(b), nil
}

// peerSumAt is peerSum that also closes reached once at bytes came.
func peerSumAt(s *tls.Conn, at int64, reached chan struct{}) <-chan [2]any {
	res := make(chan [2]any, 1)
	go func() {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(h, &notifyAt{at: at, reached: reached}), s)
		if err != nil {
			res <- [2]any{err, n}
			return
		}
		res <- [2]any{[32]byte(h.Sum(nil)), n}
	}()
	return res
}

// wantSum waits for peerSum and checks it against want.
func wantSum(t *testing.T, res <-chan [2]any, want []byte) {
	t.Helper()
	var r [2]any
	select {
	case r = <-res:
	case <-time.After(2 * time.Minute):
		t.Fatal("the peer never saw the end of the stream")
	}
	if err, ok := r[0].(error); ok {
		t.Fatalf("the peer read %d bytes: %v", r[1], err)
	}
	if r[0].([32]byte) != sha256.Sum256(want) || r[1].(int64) != int64(len(want)) {
		t.Fatalf("the peer read %d bytes, %d sent, or they differ", r[1], len(want))
	}
}

// testReadFromSocket sends size bytes from a source of the kind into k with
// ReadFrom, the stock peer s checking them by hash. With TX in the kernel,
// the bytes must be spliced: the process's write(2) count grows by the
// source's own writes and not again by the data (testenv.ProcWchar), where
// the copy path writes the records too, which the other engines must show.
func testReadFromSocket(t *testing.T, k *ktls.Conn, s *tls.Conn, kind string, size int) {
	t.Helper()
	data := testenv.Pattern(size, 21)
	extra := []byte{}
	if kind == "limited" {
		extra = testenv.Pattern(100_000, 22) // stays in the source
	}
	r, w := sourcePair(t, kind)
	sum := peerSum(s)
	before := testenv.ProcWchar(t)
	werr := make(chan error, 1)
	go func() {
		_, err := w.Write(append(bytes.Clone(data), extra...))
		if kind != "limited" {
			w.Close()
		}
		werr <- err
	}()
	n, err := copyFrom(k, r, kind, int64(size))
	if err != nil || n != int64(size) {
		t.Fatalf("%s: copy = %d, %v; want %d, nil", kind, n, err, size)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	wchar := testenv.ProcWchar(t) - before - int64(len(data)+len(extra))
	if kind == "limited" {
		rest := make([]byte, len(extra))
		r.SetReadDeadline(time.Now().Add(testenv.Prompt))
		if _, err := io.ReadFull(r, rest); err != nil || !bytes.Equal(rest, extra) {
			t.Fatalf("the bytes behind the limit: %v, or they changed: ReadFrom read past its limit", err)
		}
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	wantSum(t, sum, data)
	spliced := k.Backend().TX == "kernel"
	t.Logf("%s, tx %s: write(2) beyond the source's: %d bytes for %d moved", kind, k.Backend().TX, wchar, n)
	if spliced && wchar > n/2 {
		t.Fatalf("tx kernel: write(2) counted %d bytes beyond the source's for %d moved: ReadFrom copied instead of splicing", wchar, n)
	}
	if !spliced && wchar < n {
		t.Fatalf("tx %s: write(2) counted %d bytes beyond the source's for %d moved: the copy path must write the records, so the measure is broken", k.Backend().TX, wchar, n)
	}
}

// readFromSuites are the versions and AEADs ReadFrom is tested with: TLS 1.3
// (AES-128-GCM, what crypto/tls picks) and TLS 1.2 with each AEAD.
var readFromSuites = []ktlstest.SuiteCase{
	{Version: tls.VersionTLS13},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
}

// TestReadFromSocket copies from each kind of socket source into ktls, for
// every AEAD in both versions, with the engines auto picks: in the VM TX is
// in the kernel and the bytes are spliced (WantAuto fails the test where
// the kernel must have kTLS and does not); elsewhere they are copied through
// Write. The source's end is the end of the copy: n and nil.
func TestReadFromSocket(t *testing.T) {
	size := 4 << 20
	if testing.Short() {
		size = 256 << 10
	}
	for _, sc := range readFromSuites {
		t.Run(sc.String(), func(t *testing.T) {
			roles := []bool{false}
			if sc.Version == tls.VersionTLS13 {
				roles = []bool{false, true}
			}
			for _, ktlsClient := range roles {
				for _, kind := range spliceSources {
					if testing.Short() && kind != "tcp-io.Copy" && (ktlsClient || sc.Version != tls.VersionTLS13) {
						// The CI budget under emulation: every source
						// once, every suite and role through io.Copy.
						continue
					}
					name := kind + "/ktls-server"
					if ktlsClient {
						name = kind + "/ktls-client"
					}
					t.Run(name, func(t *testing.T) {
						ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
						k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
						defer k.Close()
						ktlstest.WantAuto(t, k)
						testReadFromSocket(t, k, s, kind, size)
					})
				}
			}
		})
	}
}

// TestReadFromSocketLarge is 64 MiB from a TCP source through io.Copy and
// net's wrapper, and from a unix one, under TLS 1.3; with -short (the VM
// runs' default), from TCP only.
func TestReadFromSocketLarge(t *testing.T) {
	for _, kind := range []string{"tcp-io.Copy", "unix"} {
		t.Run(kind, func(t *testing.T) {
			const size = 64 << 20
			if testing.Short() && kind == "unix" {
				// The CI budget: 64 MiB takes 17 s under emulation on an
				// idle host, 45 s on a loaded one (the peer's
				// crypto/tls), where conn's tests must fit in 4m; the
				// unix source is in TestReadFromSocket too.
				t.Skip("-short: the CI budget")
			}
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
			defer k.Close()
			ktlstest.WantAuto(t, k)
			start := time.Now()
			testReadFromSocket(t, k, s, kind, size)
			t.Logf("%d MiB in %v", size>>20, time.Since(start))
		})
	}
}

// TestReadFromSocketKeyUpdate lowers the records a TLS 1.3 key may seal to
// 64 (1 MiB of full records), so that a splice of 8 MiB (4 MiB with
// -short, 2 MiB from the unix source) must stop between chunks for KeyUpdates (RFC 8446 §5.5); stock
// crypto/tls follows each one and checks every byte. With TX in the kernel this needs Linux 6.14's
// second TLS_TX (ProbeRekey): the test fails where the kernel must have it.
func TestReadFromSocketKeyUpdate(t *testing.T) {
	size := 8 << 20
	if testing.Short() {
		size = 4 << 20 // still three KeyUpdates at least
	}
	for _, kind := range []string{"tcp-io.Copy", "unix"} {
		t.Run(kind, func(t *testing.T) {
			size := size
			if testing.Short() && kind == "unix" {
				size = 2 << 20 // the CI budget; still one KeyUpdate at least
			}
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
			defer k.Close()
			ktlstest.WantAuto(t, k)
			if k.Backend().TX == "kernel" {
				testenv.RequireKernelFeature(t, testenv.FeatureKTLSRekey, kernel.ProbeRekey())
			}
			conn.SetKeyUpdateAfter(k, 64)
			secret0 := conn.TXSecret(k)
			testReadFromSocket(t, k, s, kind, size)
			if bytes.Equal(conn.TXSecret(k), secret0) {
				t.Fatal("the TX traffic secret never changed: no KeyUpdate was sent")
			}
		})
	}
}

// TestReadFromSocketDeadline: deadlines on either side end ReadFrom with a
// timeout, mid-transfer, and nothing read from the source is lost.
//
//   - "source": the source's read deadline passes while it is silent:
//     ReadFrom returns what it sent and the timeout; the connection goes
//     on, and a second ReadFrom sends the rest (every engine).
//   - "write": the connection's write deadline passes while the peer does
//     not read. With TX in the kernel, the bytes spliced out of the source
//     and not into the socket are held and sent first; the connection stays
//     writable, and a second ReadFrom finishes the stream. On the copy path
//     a write timeout breaks the direction, as crypto/tls's does
//     (TestWriteTimeoutParity), and the second copy fails with it.
//
// The peer checks everything it got by hash.
func TestReadFromSocketDeadline(t *testing.T) {
	const size = 4 << 20
	data := testenv.Pattern(size, 23)
	for _, side := range []string{"source", "write"} {
		t.Run(side, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
			defer k.Close()
			ktlstest.WantAuto(t, k)
			kernelTX := k.Backend().TX == "kernel"
			// Small buffers, so that the socket fills long before the
			// data ends.
			k.NetConn().(*net.TCPConn).SetWriteBuffer(64 << 10)
			s.NetConn().(*net.TCPConn).SetReadBuffer(64 << 10)
			r, w := sourcePair(t, "tcp")
			half := make(chan struct{})
			werr := make(chan error, 1)
			go func() {
				rest := data
				if side == "source" {
					if _, err := w.Write(data[:size/2]); err != nil {
						werr <- err
						return
					}
					<-half
					rest = data[size/2:]
				}
				_, err := w.Write(rest)
				w.Close()
				werr <- err
			}()
			var sum <-chan [2]any
			if side == "source" {
				// The deadline is absolute: once passed, the source
				// refuses even bytes it has (as its Read would), so it
				// is set once the first half went through and the source
				// is silent.
				reached := make(chan struct{})
				sum = peerSumAt(s, size/2, reached)
				go func() {
					<-reached
					r.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				}()
			} else {
				k.SetWriteDeadline(time.Now().Add(time.Second))
			}
			n1, err := io.Copy(k, r)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("first copy = %d, %v; want a timeout", n1, err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("first copy's error %v is not a net.Error timeout", err)
			}
			if n1 <= 0 || n1 >= size {
				t.Fatalf("first copy moved %d of %d bytes: the deadline did not fire mid-transfer", n1, size)
			}
			if side == "source" && n1 != size/2 {
				t.Fatalf("first copy moved %d bytes; the source had %d", n1, size/2)
			}
			t.Logf("tx %s: the first copy moved %d bytes and timed out: %v", k.Backend().TX, n1, err)
			r.SetReadDeadline(time.Time{})
			k.SetWriteDeadline(time.Time{})
			if side == "source" {
				close(half)
			} else {
				sum = peerSum(s)
			}
			n2, err := io.Copy(k, r)
			if side == "write" && !kernelTX {
				// The copy path: broken for writes, as crypto/tls.
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("tx %s: copy after a write timeout = %d, %v; want the sticky timeout", k.Backend().TX, n2, err)
				}
				k.Close()
				w.Close()
				<-werr
				<-sum
				return
			}
			if err != nil || n1+n2 != size {
				t.Fatalf("second copy = %d, %v; after %d, want %d in all", n2, err, n1, size)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			wantSum(t, sum, data)
		})
	}
}

// TestReadFromSocketPeerReset: the peer resets the connection in the middle
// of a copy from a socket. ReadFrom fails promptly with an error that is not
// a timeout, having counted no more than the source sent, and the direction
// stays broken: a later Write fails too.
func TestReadFromSocketPeerReset(t *testing.T) {
	const size = 4 << 20
	data := testenv.Pattern(size, 24)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
	defer k.Close()
	ktlstest.WantAuto(t, k)
	// Small buffers, so that most of the data is still to send when the
	// reset comes: loopback's own hold all of it.
	k.NetConn().(*net.TCPConn).SetWriteBuffer(64 << 10)
	s.NetConn().(*net.TCPConn).SetReadBuffer(64 << 10)
	r, w := sourcePair(t, "tcp")
	go func() {
		w.Write(data)
		w.Close()
	}()
	go func() {
		io.CopyN(io.Discard, s, 256<<10)
		s.NetConn().(*net.TCPConn).SetLinger(0)
		s.NetConn().Close()
	}()
	k.SetWriteDeadline(time.Now().Add(time.Minute)) // a hang fails, not hangs
	res := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = io.Copy(k, r)
		res <- err
	}()
	var err error
	select {
	case err = <-res:
	case <-time.After(time.Minute):
		t.Fatal("io.Copy did not end after the peer reset")
	}
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("io.Copy after the peer reset = %d, %v; want an error that is not a timeout", n, err)
	}
	if n > size {
		t.Fatalf("io.Copy counted %d bytes; the source sent %d", n, size)
	}
	t.Logf("tx %s: io.Copy = %d, %v", k.Backend().TX, n, err)
	if _, werr := k.Write([]byte("after")); werr == nil {
		t.Fatal("Write after the failed copy succeeded")
	}
	r.Close()
	runtime.Gosched()
}

// TestReadFromSocketIdleSource: while ReadFrom waits for a silent source,
// the connection's TX is free, as on the copy path, which holds it only
// inside Write. A Read that must send an alert (here bad_record_mac, for a
// record the peer's raw socket forges) returns promptly, and the copy ends
// normally once the source does.
func TestReadFromSocketIdleSource(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
	defer k.Close()
	ktlstest.WantAuto(t, k)
	r, w := sourcePair(t, "tcp")
	w.Write([]byte("first"))
	copied := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = io.Copy(k, r)
		copied <- err
	}()
	buf := make([]byte, 5)
	s.SetReadDeadline(time.Now().Add(testenv.Prompt))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "first" {
		t.Fatalf("the peer read %q, %v", buf, err)
	}
	// io.Copy now waits for the source. A forged application data record:
	// it fails authentication.
	forged := append([]byte{23, 3, 3, 0, 32}, make([]byte, 32)...)
	if _, err := s.NetConn().Write(forged); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := k.Read(make([]byte, 10))
		read <- err
	}()
	select {
	case err := <-read:
		var alert tls.AlertError
		if !errors.As(err, &alert) || alert != 20 {
			t.Fatalf("Read of a forged record = %v; want bad_record_mac", err)
		}
	case <-time.After(testenv.Prompt):
		w.Close()
		t.Fatal("Read could not send its alert while ReadFrom waited for a silent source")
	}
	w.Close()
	select {
	case err := <-copied:
		// TX failed with the alert it sent; the copy ends either with
		// that (a Write of the copy path, or spliceFrom's check) or, if
		// the source's end came first, cleanly.
		t.Logf("tx %s: io.Copy = %d, %v", k.Backend().TX, n, err)
		if n != 5 {
			t.Fatalf("io.Copy counted %d bytes; the source sent 5", n)
		}
	case <-time.After(testenv.Prompt):
		t.Fatal("io.Copy did not end at the source's end")
	}
}
