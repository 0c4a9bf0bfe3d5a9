package interop_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The tests of conns that arrive wrapped (docs/ARCHITECTURE.md, "Conns that
// arrive wrapped"): a real PROXY-protocol listener (github.com/pires/
// go-proxyproto, whose Conn exposes Raw) in front of ktls.NewListener, and
// wrappers of the tests' own, with stock crypto/tls as the client. Where the
// kernel has kTLS (the VM must), a direction that is provably not held above
// the socket gets the kernel; one that is stays in user space, with the
// reason. Data is checked by hash both ways.

// proxySource is the client address the PROXY headers carry (RFC 5737's
// documentation range).
var proxySource = &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 4242}

// wrappedSetup is one case: how the server's accepted conn is wrapped above
// the PROXY listener (nil: not), which PROXY version the client sends (0:
// none), and how the client's conn is wrapped (nil: not).
type wrappedSetup struct {
	proxy  byte
	server func(net.Conn) net.Conn
	client func(net.Conn) net.Conn
}

// wrappedListener wraps each accepted conn.
type wrappedListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l wrappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// dialWrapped accepts a ktls server conn through s's listeners and returns it
// and the stock client's conn, before either handshake; raw is the client's
// TCP conn under any wrapper.
func dialWrapped(t *testing.T, s wrappedSetup, ccfg, scfg *tls.Config) (k *ktls.Conn, client *tls.Conn, raw net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var inner net.Listener = ln
	if s.proxy != 0 {
		inner = &proxyproto.Listener{Listener: ln}
	}
	if s.server != nil {
		inner = wrappedListener{inner, s.server}
	}
	kl := ktls.NewListener(inner, scfg)
	type accepted struct {
		c   net.Conn
		err error
	}
	ac := make(chan accepted, 1)
	go func() {
		c, err := kl.Accept()
		ac <- accepted{c, err}
	}()
	raw, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if s.proxy != 0 {
		h := proxyproto.HeaderProxyFromAddrs(s.proxy, proxySource, raw.RemoteAddr())
		if _, err := h.WriteTo(raw); err != nil {
			t.Fatal(err)
		}
	}
	cc := raw
	if s.client != nil {
		cc = s.client(raw)
	}
	a := <-ac
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { a.c.Close() })
	return a.c.(*ktls.Conn), tls.Client(cc, ccfg), raw
}

// wantEngine checks the engine of one direction: want is the engine the
// automatic choice gives a plain *net.TCPConn here (the kernel where kTLS
// serves the suite, and in the VM it must), unless held says the direction
// is held above the socket: then userspace, and where the kernel was a
// candidate its refusal must contain each of why.
func wantEngine(t *testing.T, k *ktls.Conn, tx, held bool, why ...string) {
	t.Helper()
	st := k.ConnectionState()
	dir, d := "rx", k.Backend().RXDetail
	if tx {
		dir, d = "tx", k.Backend().TXDetail
	}
	now := ktlstest.Now(d)
	auto := ktlstest.AutoEngine(t, tx, st.Version, st.CipherSuite)
	t.Logf("%s: %s", dir, k.Backend())
	if !held {
		if now.Engine != auto {
			t.Errorf("%s: %s, want %s (%s)", dir, now.Engine, auto, k.Backend())
		}
		return
	}
	if now.Engine != "userspace" {
		t.Errorf("%s: %s, want userspace (%s)", dir, now.Engine, k.Backend())
	}
	if auto != "kernel" {
		// kTLS is unavailable here: the kernel was no candidate, so no
		// proof ran and there is no refusal to read (conn's own tests
		// check the reasons with an engine that reads the socket).
		return
	}
	for _, r := range now.Refused {
		if r.Engine != "kernel" {
			continue
		}
		for _, w := range why {
			if !strings.Contains(r.Reason, w) {
				t.Errorf("%s: kernel's refusal %q does not say %q", dir, r.Reason, w)
			}
		}
		return
	}
	t.Errorf("%s: the kernel did not refuse (%s)", dir, k.Backend())
}

// exchangeHashed sends n bytes each way at once, after first, which the
// client already sent, and checks both by hash.
func exchangeHashed(t *testing.T, k *ktls.Conn, c *tls.Conn, first []byte, n int) {
	t.Helper()
	up, down := testenv.Pattern(n, 3), testenv.Pattern(n, 4)
	want := sha256.Sum256(append(append([]byte(nil), first...), up...))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	recv := func(r io.Reader, size int, want [32]byte) {
		defer wg.Done()
		h := sha256.New()
		_, err := io.CopyN(h, r, int64(size))
		if err == nil && [32]byte(h.Sum(nil)) != want {
			err = errors.New("data differ")
		}
		errs <- err
	}
	send := func(w io.Writer, b []byte) {
		defer wg.Done()
		_, err := w.Write(b)
		errs <- err
	}
	k.SetDeadline(time.Now().Add(2 * time.Minute))
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	wg.Add(4)
	go recv(k, len(first)+n, want)
	go recv(c, n, sha256.Sum256(down))
	go send(c, up)
	go send(k, down)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	k.SetDeadline(time.Time{})
	c.SetDeadline(time.Time{})
}

const wrappedSize = 2 << 20

// TestWrappedProxy: a PROXY-protocol listener (v1 and v2 headers) in front
// of ktls.NewListener. The header is the wrapper's own, nothing else is held
// above the socket: the kernel takes both directions where it can, and the
// conn reports the header's source address.
func TestWrappedProxy(t *testing.T) {
	for _, v := range []byte{1, 2} {
		t.Run("v"+string('0'+v), func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, c, _ := dialWrapped(t, wrappedSetup{proxy: v}, ccfg, scfg)
			testenv.HandshakeBoth(t, k, c)
			if got := k.RemoteAddr().String(); got != proxySource.String() {
				t.Errorf("RemoteAddr() = %s, want the PROXY header's %s", got, proxySource)
			}
			if _, ok := k.NetConn().(*proxyproto.Conn); !ok {
				t.Errorf("NetConn() is a %T, want the *proxyproto.Conn", k.NetConn())
			}
			wantEngine(t, k, true, false)
			wantEngine(t, k, false, false)
			exchangeHashed(t, k, c, nil, wrappedSize)

			// Deadlines set on the conn reach the socket (the engine's
			// reads), through the wrapper.
			k.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := k.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past the deadline: %v, want a timeout", err)
			}
			k.SetReadDeadline(time.Time{})
			ktlstest.CloseBoth(t, k, c)
		})
	}
}

// aheadConn reads ahead into a bufio.Reader, as protocol sniffers do, and
// exposes the conn under it as the PROXY-protocol library does (Raw).
type aheadConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *aheadConn) Read(p []byte) (int, error) { return c.br.Read(p) }
func (c *aheadConn) Raw() net.Conn              { return c.Conn }

// holdConn is the client's conn: it lets the first write (the ClientHello)
// through and holds the later ones until flush, so that the client's
// Finished and its first application record reach the server in one
// segment, and the server's read-ahead takes both.
type holdConn struct {
	net.Conn
	mu      sync.Mutex
	writes  int
	held    []byte
	flushed bool
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.writes == 1 || c.flushed {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	return len(p), nil
}

func (c *holdConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushed = true
	_, err := c.Conn.Write(c.held)
	c.held = nil
	return err
}

// TestWrappedReadAhead: a wrapper above the PROXY conn that read ahead the
// client's first application record. RX stays in user space, fed first
// with the bytes the wrapper held, and the reason names the wrapper and the
// count; TX is not held and gets the kernel where it can. No byte is lost.
func TestWrappedReadAhead(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	var hold *holdConn
	k, c, _ := dialWrapped(t, wrappedSetup{
		proxy:  2,
		server: func(c net.Conn) net.Conn { return &aheadConn{Conn: c, br: bufio.NewReaderSize(c, 64<<10)} },
		client: func(c net.Conn) net.Conn { hold = &holdConn{Conn: c}; return hold },
	}, ccfg, scfg)
	first := testenv.Pattern(1000, 5)
	errc := make(chan error, 1)
	go func() {
		if err := c.Handshake(); err != nil {
			errc <- err
			return
		}
		if _, err := c.Write(first); err != nil {
			errc <- err
			return
		}
		errc <- hold.flush()
	}()
	if err := k.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The record: 5 bytes of header, the data, its content type, the tag.
	held := len(first) + 5 + 1 + 16
	wantEngine(t, k, true, false)
	wantEngine(t, k, false, true, "*interop_test.aheadConn held", " "+itoa(held)+" bytes")
	exchangeHashed(t, k, c, first, wrappedSize)
	ktlstest.CloseBoth(t, k, c)
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

// netConnWrap exposes the conn under it as crypto/tls.Conn does (NetConn).
type netConnWrap struct{ net.Conn }

func (c netConnWrap) NetConn() net.Conn { return c.Conn }

// sysConnWrap exposes only the socket's descriptor (syscall.Conn).
type sysConnWrap struct{ net.Conn }

func (c sysConnWrap) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// TestWrappedPassThrough: wrappers that hold nothing, found through NetConn
// (above the PROXY conn, whose Raw then leads to the socket) and through
// syscall.Conn alone: the kernel takes both directions where it can.
func TestWrappedPassThrough(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup wrappedSetup
	}{
		{"NetConn", wrappedSetup{proxy: 2, server: func(c net.Conn) net.Conn { return netConnWrap{c} }}},
		{"SyscallConn", wrappedSetup{server: func(c net.Conn) net.Conn { return sysConnWrap{c} }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, c, _ := dialWrapped(t, tc.setup, ccfg, scfg)
			testenv.HandshakeBoth(t, k, c)
			wantEngine(t, k, true, false)
			wantEngine(t, k, false, false)
			exchangeHashed(t, k, c, nil, wrappedSize)
			ktlstest.CloseBoth(t, k, c)
		})
	}
}

// lazyWriter coalesces writes and sends them a while later, as a wrapper
// that batches small writes does. It exposes the conn under it (NetConn).
type lazyWriter struct {
	net.Conn
	mu    sync.Mutex
	held  []byte
	timer *time.Timer
	err   error
}

// lazyDelay is how long lazyWriter holds a write: far longer than the
// handoff that follows the handshake takes, even under emulation.
const lazyDelay = 300 * time.Millisecond

func (c *lazyWriter) NetConn() net.Conn { return c.Conn }

func (c *lazyWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.held = append(c.held, p...)
	if c.timer == nil {
		c.timer = time.AfterFunc(lazyDelay, c.flush)
	}
	return len(p), nil
}

func (c *lazyWriter) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if c.err == nil && len(c.held) > 0 {
		_, c.err = c.Conn.Write(c.held)
	}
	c.held = nil
}

func (c *lazyWriter) Close() error {
	c.mu.Lock()
	if c.timer != nil && c.timer.Stop() {
		c.timer = nil
		c.mu.Unlock()
		c.flush()
	} else {
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

// TestWrappedWriteBuffer: a wrapper that still holds the server's last
// handshake flight (TLS 1.2: its ChangeCipherSpec and Finished come last)
// when the handshake ends. TX stays in user space, writing through the
// wrapper, with the reason; RX does not bypass a wrapper that is no
// pass-through either. No byte is lost.
func TestWrappedWriteBuffer(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
	k, c, _ := dialWrapped(t, wrappedSetup{proxy: 2, server: func(c net.Conn) net.Conn { return &lazyWriter{Conn: c} }}, ccfg, scfg)
	testenv.HandshakeBoth(t, k, c)
	wantEngine(t, k, true, true, "*interop_test.lazyWriter", "holds or adds writes")
	wantEngine(t, k, false, true, "holds or adds writes", "reads do not bypass it")
	exchangeHashed(t, k, c, nil, wrappedSize)
	ktlstest.CloseBoth(t, k, c)
}
