//go:build linux

package conn

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// The proof that nothing is held above a wrapped conn's socket
// (docs/ARCHITECTURE.md, "Conns that arrive wrapped"), on any Linux host:
// the kernel's stand-in is sockEngine, which, like kTLS, reads and writes
// the socket it is given and not the wrapper, so that a wrong proof loses
// or reorders bytes and the hash check fails. interop/wrapped_test.go runs
// the same cases with the real kernel engine in the VMs.

// sockEngine is the userspace engine under the kernel's name, with the
// kernel's demands on the link: a TCP socket, nothing buffered.
type sockEngine struct{ backend.Backend }

func (sockEngine) Name() string { return backend.Kernel }

func (e sockEngine) check(l backend.Link) error {
	if _, ok := l.Conn.(*net.TCPConn); !ok && !isTCPSocket(l.Conn) {
		return backend.NotSupported(backend.Kernel, "not a TCP socket: %T", l.Conn)
	}
	if len(l.Buffered) != 0 {
		return backend.NotSupported(backend.Kernel, "%d bytes buffered", len(l.Buffered))
	}
	return nil
}

func (e sockEngine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	if err := e.check(l); err != nil {
		return nil, err
	}
	return e.Backend.NewSealer(l, p)
}

func (e sockEngine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	if err := e.check(l); err != nil {
		return nil, err
	}
	return e.Backend.NewOpener(l, p)
}

func sockOptions() Options {
	return Options{Backends: []backend.Backend{sockEngine{userspace.New()}, userspace.New()}, CPU: infoCPU}
}

var testProxySource = &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 4343}

// wrappedPair returns a ktls server over wrap(the accepted conn behind a
// PROXY v2 reader) and a stock client over cwrap(its TCP conn), which has
// sent the PROXY header, before the handshakes.
func wrappedPair(t *testing.T, version uint16, wrap, cwrap func(net.Conn) net.Conn) (*Conn, *tls.Conn) {
	t.Helper()
	rc, rs := testenv.TCPPair(t)
	h := proxyproto.HeaderProxyFromAddrs(2, testProxySource, rc.RemoteAddr())
	if _, err := h.WriteTo(rc); err != nil {
		t.Fatal(err)
	}
	ccfg, scfg := testConfigs(version)
	var s net.Conn = proxyproto.NewConn(rs)
	if wrap != nil {
		s = wrap(s)
	}
	var c net.Conn = rc
	if cwrap != nil {
		c = cwrap(rc)
	}
	k := Server(s, scfg, sockOptions())
	t.Cleanup(func() { k.Close() })
	return k, tls.Client(c, ccfg)
}

// wantDir checks one direction's engine and, for userspace, that the
// kernel's refusal says each of why.
func wantDir(t *testing.T, k *Conn, tx bool, engine string, why ...string) {
	t.Helper()
	dir, d := "rx", k.Backend().RXDetail
	if tx {
		dir, d = "tx", k.Backend().TXDetail
	}
	if d.Engine != engine {
		t.Fatalf("%s: %s, want %s (%s)", dir, d.Engine, engine, k.Backend())
	}
	if len(why) == 0 {
		return
	}
	for _, r := range d.Refused {
		if r.Engine == backend.Kernel {
			for _, w := range why {
				if !strings.Contains(r.Reason, w) {
					t.Errorf("%s: refusal %q does not say %q", dir, r.Reason, w)
				}
			}
			return
		}
	}
	t.Errorf("%s: no refusal by the kernel (%s)", dir, k.Backend())
}

// exchangeAfter sends n bytes each way at once, after first, which the
// client already sent, and checks both by hash.
func exchangeAfter(t *testing.T, k *Conn, c *tls.Conn, first []byte, n int) {
	t.Helper()
	up, down := testenv.Pattern(n, 7), testenv.Pattern(n, 8)
	wantUp := sha256.Sum256(append(append([]byte(nil), first...), up...))
	errs := make(chan error, 4)
	recv := func(r io.Reader, size int, want [32]byte) {
		h := sha256.New()
		_, err := io.CopyN(h, r, int64(size))
		if err == nil && [32]byte(h.Sum(nil)) != want {
			err = testenv.ErrMismatch
		}
		errs <- err
	}
	send := func(w io.Writer, b []byte) {
		_, err := w.Write(b)
		errs <- err
	}
	k.SetDeadline(time.Now().Add(time.Minute))
	c.SetDeadline(time.Now().Add(time.Minute))
	go recv(k, len(first)+n, wantUp)
	go recv(c, n, sha256.Sum256(down))
	go send(c, up)
	go send(k, down)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestWrappedProxyProof: behind a PROXY reader, whose header is its own and
// which holds nothing else, both directions go to the socket engine.
func TestWrappedProxyProof(t *testing.T) {
	needSocketCounts(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			k, c := wrappedPair(t, v, nil, nil)
			testenv.HandshakeBoth(t, k, c)
			wantDir(t, k, true, backend.Kernel)
			wantDir(t, k, false, backend.Kernel)
			if got := k.RemoteAddr().String(); got != testProxySource.String() {
				t.Errorf("RemoteAddr() = %s, want %s", got, testProxySource)
			}
			exchangeAfter(t, k, c, nil, 1<<20)
		})
	}
}

type aheadConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *aheadConn) Read(p []byte) (int, error) { return c.br.Read(p) }
func (c *aheadConn) NetConn() net.Conn          { return c.Conn }

// holdConn lets the first write through and holds the rest until flush.
type holdConn struct {
	net.Conn
	mu      sync.Mutex
	n       int
	held    []byte
	flushed bool
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n++; c.n == 1 || c.flushed {
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
	return err
}

// TestWrappedHeldReads: the wrapper read ahead the client's first record.
// The probe takes it, it goes to the user-space engine first, and the
// socket engine keeps TX.
func TestWrappedHeldReads(t *testing.T) {
	needSocketCounts(t)
	var hold *holdConn
	k, c := wrappedPair(t, tls.VersionTLS13,
		func(c net.Conn) net.Conn { return &aheadConn{Conn: c, br: bufio.NewReaderSize(c, 64<<10)} },
		func(c net.Conn) net.Conn { hold = &holdConn{Conn: c}; return hold })
	first := testenv.Pattern(1000, 9)
	errc := make(chan error, 1)
	go func() {
		err := c.Handshake()
		if err == nil {
			_, err = c.Write(first)
		}
		if err == nil {
			err = hold.flush()
		}
		errc <- err
	}()
	if err := k.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	wantDir(t, k, true, backend.Kernel)
	wantDir(t, k, false, backend.Userspace, "*conn.aheadConn held "+strconv.Itoa(len(first)+5+1+16)+" bytes")
	exchangeAfter(t, k, c, first, 1<<20)
}

// sysConn exposes only the socket's descriptor.
type sysConn struct{ net.Conn }

func (c sysConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// TestWrappedSyscallConn: a wrapper that is a syscall.Conn of the TCP socket
// and nothing more is found and proven.
func TestWrappedSyscallConn(t *testing.T) {
	needSocketCounts(t)
	rc, rs := testenv.TCPPair(t)
	ccfg, scfg := testConfigs(tls.VersionTLS13)
	k, c := Server(sysConn{rs}, scfg, sockOptions()), tls.Client(rc, ccfg)
	defer k.Close()
	testenv.HandshakeBoth(t, k, c)
	wantDir(t, k, true, backend.Kernel)
	wantDir(t, k, false, backend.Kernel)
	exchangeAfter(t, k, c, nil, 1<<20)
}

// lazyWriter sends what is written a while later.
type lazyWriter struct {
	net.Conn
	mu    sync.Mutex
	held  []byte
	timer *time.Timer
}

func (c *lazyWriter) NetConn() net.Conn { return c.Conn }

func (c *lazyWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = append(c.held, p...)
	if c.timer == nil {
		c.timer = time.AfterFunc(200*time.Millisecond, c.flush)
	}
	return len(p), nil
}

func (c *lazyWriter) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	c.Conn.Write(c.held)
	c.held = nil
}

// TestWrappedHeldWrites: the wrapper still holds the server's last TLS 1.2
// flight when the handshake ends: neither direction bypasses it.
func TestWrappedHeldWrites(t *testing.T) {
	needSocketCounts(t)
	k, c := wrappedPair(t, tls.VersionTLS12, func(c net.Conn) net.Conn { return &lazyWriter{Conn: c} }, nil)
	testenv.HandshakeBoth(t, k, c)
	wantDir(t, k, true, backend.Userspace, "*conn.lazyWriter", "holds or adds writes")
	wantDir(t, k, false, backend.Userspace, "holds or adds writes", "reads do not bypass it")
	exchangeAfter(t, k, c, nil, 1<<20)
}

// TestSocketCounts checks the kernel's counters as socketRead and
// socketWritten read them, on both ends of a connection (the end that sent
// the SYN counts it in tcpi_bytes_acked, the other does not).
func TestSocketCounts(t *testing.T) {
	needSocketCounts(t)
	rc, rs := testenv.TCPPair(t)
	for _, tc := range []struct {
		name     string
		from, to net.Conn
		n, read  int
	}{{"dialer", rc, rs, 3000, 1000}, {"acceptor", rs, rc, 5000, 4321}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.from.Write(make([]byte, tc.n)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(tc.to, make([]byte, tc.read)); err != nil {
				t.Fatal(err)
			}
			from := newWrapState(sysConn{tc.from})
			to := newWrapState(sysConn{tc.to})
			// Written counts stay exact while the ACKs are on their way.
			w, why := socketWritten(from.rc)
			if why != "" || w != uint64(tc.n) {
				t.Errorf("socketWritten = %d (%s), want %d", w, why, tc.n)
			}
			r, why := socketRead(to.rc)
			if why != "" || r != uint64(tc.read) {
				t.Errorf("socketRead = %d (%s), want %d", r, why, tc.read)
			}
			io.ReadFull(tc.to, make([]byte, tc.n-tc.read))
		})
	}
}

// TestWrappedClientDrain: a TLS 1.3 client that keeps tickets decides RX in
// a Read, after the ticket drain. The wrapper (a syscall.Conn, so the drain
// peeks at the socket) holds nothing, so the socket engine takes RX then,
// and the read deadline the program set before that Read is still in force
// after it: the late decision does not touch it.
func TestWrappedClientDrain(t *testing.T) {
	needSocketCounts(t)
	rc, rs := testenv.TCPPair(t)
	ccfg, scfg := testConfigs(tls.VersionTLS13)
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	k, s := Client(sysConn{rc}, ccfg, sockOptions()), tls.Server(rs, scfg)
	defer k.Close()
	defer s.Close()
	testenv.HandshakeBoth(t, k, s)
	if !k.Backend().RXDetail.AfterTickets {
		t.Fatalf("no ticket drain: %s", k.Backend())
	}
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	k.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(k, b); err != nil {
		t.Fatal(err)
	}
	if d := k.Backend().RXDetail; d.Drained.Engine != backend.Kernel {
		t.Fatalf("rx after the drain: %s, want kernel (%s)", d.Drained.Engine, k.Backend())
	}
	watchdog := time.AfterFunc(20*time.Second, func() { k.Close() })
	defer watchdog.Stop()
	if _, err := k.Read(b); !timedOut(err) {
		t.Fatalf("Read after the drain: %v, want the deadline set before it", err)
	}
	k.SetReadDeadline(time.Time{})
	exchangeAfter(t, k, s, nil, 256<<10)
}

// needSocketCounts skips a test of the proof where TCP_INFO lacks the
// counters it reads (tcpi_bytes_sent and tcpi_notsent_bytes, Linux 4.19;
// tcpi_bytes_received, 4.1): under qemu-user (scripts/test-cross), which
// hands the program a TCP_INFO cut short, so ktls rightly refuses and the
// test has nothing to show. Every kernel of the VMs has them: there it fails.
func needSocketCounts(t *testing.T) {
	t.Helper()
	c, _ := testenv.TCPPair(t)
	w := newWrapState(sysConn{c})
	why := ""
	if w == nil {
		why = "no wrap state for a TCP socket"
	} else if _, why = socketWritten(w.rc); why == "" {
		_, why = socketRead(w.rc)
	}
	if why == "" {
		return
	}
	if testenv.InVM() {
		t.Fatal(why)
	}
	t.Skipf("the proof cannot count here: %s", why)
}
