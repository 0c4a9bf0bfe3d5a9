package proxy_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/proxy"
)

// stockSuites are the suites of the tests with crypto/tls peers: TLS 1.3
// (crypto/tls picks the suite: AES-128-GCM on AES hardware) and the TLS
// 1.2 ECDHE AEAD suites with the ECDSA certificate (RSA keys cost seconds
// in the emulated VMs, and the suite's cipher is the same). The TLS 1.3
// suites crypto/tls never picks are covered with OpenSSL.
var stockSuites = []ktlstest.SuiteCase{
	{Version: tls.VersionTLS13},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

// TestServerModeStock: a crypto/tls client through the proxy to a plain
// backend, each sending n bytes and half-closing; both read everything the
// other sent (by hash), the client's close_notify reaching the backend as
// a FIN and the backend's FIN the client as close_notify. Each direction
// must run on the kernel where kTLS serves the suite.
func TestServerModeStock(t *testing.T) {
	for i, sc := range stockSuites {
		n := caseBytes(t, i)
		t.Run(sc.String(), func(t *testing.T) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			p, _ := newProxy(t)
			b, got := exchangeBackend(t, n, false)
			addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
			c, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			exchange(c, pattern(n, 1), false).check(t, "client", pattern(n, 2))
			recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
			st := c.ConnectionState()
			checkEngines(t, p, st.Version, st.CipherSuite, n, n)
			if s := p.Stats(); s.FromClient != uint64(n) || s.ToClient != uint64(n) || s.Accepted != 1 {
				t.Errorf("Stats = %+v, want 1 accepted, %d bytes each way", s, n)
			}
		})
	}
}

// TestClientModeStock: a plain client through the proxy to a crypto/tls
// server, as TestServerModeStock.
func TestClientModeStock(t *testing.T) {
	for i, sc := range stockSuites {
		n := caseBytes(t, i)
		t.Run(sc.String(), func(t *testing.T) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			type served struct {
				result
				st tls.ConnectionState
			}
			got := make(chan served, 1)
			startBackendOn(t, ln, func(c net.Conn) {
				r := exchange(c.(*tls.Conn), pattern(n, 2), false)
				got <- served{r, c.(*tls.Conn).ConnectionState()}
			})
			p, _ := newProxy(t)
			addr := serve(t, p, &proxy.Listener{Mode: proxy.ClientMode, TLSConfig: ccfg, Backend: ln.Addr().String()})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			exchange(c.(*net.TCPConn), pattern(n, 1), false).check(t, "client", pattern(n, 2))
			s := recv(t, "server result", got)
			s.check(t, "server", pattern(n, 1))
			checkEngines(t, p, s.st.Version, s.st.CipherSuite, n, n)
		})
	}
}

// TestHalfClose: each side half-closes before it reads, in both orders
// and both modes, and still gets everything the other sent: the backend's
// FIN reaches the TLS client as close_notify while the client's data
// still flows the other way, and the client's close_notify the backend as
// a FIN while the backend still sends.
func TestHalfClose(t *testing.T) {
	const n = 300 << 10
	for _, clientFirst := range []bool{true, false} {
		name := "backend-first"
		if clientFirst {
			name = "client-first"
		}
		t.Run("server/"+name, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			p, log := newProxy(t)
			b, got := exchangeBackend(t, n, !clientFirst)
			addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
			c, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			exchange(c, pattern(n, 1), clientFirst).check(t, "client", pattern(n, 2))
			recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
			waitIdle(t, p)
			if !strings.Contains(log.String(), "end=eof") {
				t.Errorf("the connection did not end at both ends of stream")
			}
		})
		t.Run("client/"+name, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan result, 1)
			startBackendOn(t, ln, func(c net.Conn) { got <- exchange(c.(*tls.Conn), pattern(n, 2), !clientFirst) })
			p, _ := newProxy(t)
			addr := serve(t, p, &proxy.Listener{Mode: proxy.ClientMode, TLSConfig: ccfg, Backend: ln.Addr().String()})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			exchange(c.(*net.TCPConn), pattern(n, 1), clientFirst).check(t, "client", pattern(n, 2))
			recv(t, "server result", got).check(t, "server", pattern(n, 1))
		})
	}
}

// TestBackendRefuses: a backend that refuses the connection: the client's
// read ends promptly, the failure is counted and logged.
func TestBackendRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	p, log := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: refusing})
	c, err := tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Prompt))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client read = %d, %v; want the connection closed", n, err)
	}
	st := waitIdle(t, p)
	if st.BackendFailures != 1 || st.HandshakeFailures != 0 {
		t.Errorf("Stats = %+v, want 1 backend failure", st)
	}
	waitLog(t, log, `end="backend dial"`)
	waitLog(t, log, "connection refused")
}

// TestBackendReset: the backend resets the connection mid-stream; the
// client sees a reset too, not a clean close_notify, and the log says why.
func TestBackendReset(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	b := startBackend(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, 1000))
		c.Write(pattern(100<<10, 2))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	p, log := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
	c, err := tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go c.Write(pattern(1000, 1))
	r := readAll(c)
	if r.err == nil {
		t.Fatalf("the client read %d bytes and a clean end; want an error after the backend's reset", r.n)
	}
	if !errors.Is(r.err, syscall.ECONNRESET) {
		t.Errorf("the client's read: %v, want ECONNRESET", r.err)
	}
	waitIdle(t, p)
	waitLog(t, log, "reset by peer")
}

// TestClientDisappears: the client resets the connection while the backend
// streams; the proxy ends the connection promptly and the backend sees it
// end (its writes or reads fail) instead of streaming into nothing.
func TestClientDisappears(t *testing.T) {
	for _, mode := range []proxy.Mode{proxy.ServerMode, proxy.ClientMode} {
		t.Run(mode.String(), func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			backendDone := make(chan error, 1)
			stream := func(c io.ReadWriter) {
				// Write until the proxy gives up on us.
				buf := pattern(64<<10, 2)
				for {
					if _, err := c.Write(buf); err != nil {
						backendDone <- err
						return
					}
				}
			}
			p, log := newProxy(t)
			var addr string
			if mode == proxy.ServerMode {
				b := startBackend(t, func(c net.Conn) { stream(c) })
				addr = serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
			} else {
				ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
				if err != nil {
					t.Fatal(err)
				}
				startBackendOn(t, ln, func(c net.Conn) { stream(c) })
				addr = serve(t, p, &proxy.Listener{Mode: proxy.ClientMode, TLSConfig: ccfg, Backend: ln.Addr().String()})
			}
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			var c io.ReadWriter = raw
			if mode == proxy.ServerMode {
				tc := tls.Client(raw, ccfg)
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c = tc
			}
			if _, err := io.ReadFull(c, make([]byte, 200<<10)); err != nil {
				t.Fatal(err)
			}
			raw.(*net.TCPConn).SetLinger(0)
			raw.Close()
			if err := recv(t, "the backend's end", backendDone); err == nil {
				t.Fatal("the backend's write did not fail")
			}
			waitIdle(t, p)
			// Either direction may see the reset first: reading from
			// the client or writing to it.
			waitLog(t, log, `error=`)
			if strings.Contains(log.String(), "end=eof") || strings.Contains(log.String(), "end=idle") {
				t.Errorf("the connection did not end with the client's reset")
			}
		})
	}
}

// TestShutdown: Shutdown stops accepting at once, lets connections that
// end within the grace period end intact, and closes the others when it
// is over.
func TestShutdown(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	t.Run("finish", func(t *testing.T) {
		const n = 1 << 20
		b, got := exchangeBackend(t, n, false)
		p, _ := newProxy(t)
		addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A transfer in flight: the first bytes are through.
		if _, err := c.Write(pattern(n, 1)[:1000]); err != nil {
			t.Fatal(err)
		}
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			shut <- p.Shutdown(ctx)
		}()
		waitClosed(t, addr)
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with a connection open", err)
		default:
		}
		if _, err := c.Write(pattern(n, 1)[1000:]); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		readAll(c).check(t, "client", pattern(n, 2))
		recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
		if err := recv(t, "Shutdown", shut); err != nil {
			t.Errorf("Shutdown = %v, want nil: the connection ended within the grace period", err)
		}
	})
	t.Run("grace-over", func(t *testing.T) {
		b := startBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
		p, log := newProxy(t)
		addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
		var conns []*tls.Conn
		for range 2 {
			c, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("in flight"))
			conns = append(conns, c)
		}
		for p.Stats().Active != 2 {
			time.Sleep(5 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > testenv.Prompt {
			t.Errorf("Shutdown took %v", d)
		}
		for _, c := range conns {
			c.SetDeadline(time.Now().Add(testenv.Prompt))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("client read after the grace period: %v, want EOF (close_notify)", err)
			}
		}
		if st := p.Stats(); st.Active != 0 {
			t.Errorf("Active = %d after Shutdown", st.Active)
		}
		if got := strings.Count(log.String(), "end=shutdown"); got != 2 {
			t.Errorf("%d log lines end=shutdown, want 2", got)
		}
	})
}

// waitClosed waits until addr refuses connections.
func waitClosed(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(testenv.Prompt)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaxConns: the connection beyond MaxConns is accepted and closed at
// once; the one open goes on.
func TestMaxConns(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	b, got := exchangeBackend(t, 1000, false)
	p, _ := newProxy(t)
	p.MaxConns = 1
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
	c, err := tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for p.Stats().Active != 1 {
		time.Sleep(5 * time.Millisecond)
	}
	d := &net.Dialer{Timeout: testenv.Prompt}
	if c2, err := tls.DialWithDialer(d, "tcp", addr, ccfg); err == nil {
		c2.SetDeadline(time.Now().Add(testenv.Prompt))
		_, err = c2.Read(make([]byte, 1))
		c2.Close()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the connection beyond MaxConns was served: %v", err)
		}
	}
	if st := p.Stats(); st.Rejected != 1 || st.Accepted != 2 {
		t.Errorf("Stats = %+v, want 2 accepted, 1 rejected", st)
	}
	exchange(c, pattern(1000, 1), false).check(t, "client", pattern(1000, 2))
	recv(t, "backend result", got).check(t, "backend", pattern(1000, 1))
}

// TestIdleTimeout: a connection with no byte either way is closed after
// between IdleTimeout and twice that; one where bytes trickle one way for
// several periods, or where one direction has ended and the other
// streams, is not.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	t.Run("idle", func(t *testing.T) {
		b := startBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
		p, log := newProxy(t)
		p.IdleTimeout = idle
		addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read = %v, want EOF (close_notify) at the idle timeout", err)
		}
		// The proxy's clock starts when it has dialled the backend,
		// a little before the client's here, hence the 3/4.
		if d := time.Since(start); d < idle*3/4 || d > 2*idle+testenv.Prompt {
			t.Errorf("closed after %v, want between %v and about %v", d, idle, 2*idle)
		}
		waitIdle(t, p)
		waitLog(t, log, "end=idle")
	})
	t.Run("neither-reads", func(t *testing.T) {
		// Both peers write and never read: both directions wait to
		// write, no read deadline fires, and the watchdog must end it.
		flood := func(w io.Writer) {
			buf := make([]byte, 64<<10)
			for {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		}
		b := startBackend(t, func(c net.Conn) { flood(c) })
		p, log := newProxy(t)
		p.IdleTimeout = idle
		addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		flooded := make(chan struct{})
		go func() { flood(c); close(flooded) }()
		recv(t, "the end of the client's flood", flooded)
		waitIdle(t, p)
		waitLog(t, log, "end=idle")
	})
	for _, dir := range []string{"up", "down"} {
		t.Run("trickle-"+dir, func(t *testing.T) {
			trickle := func(w io.Writer) error {
				for range 8 {
					if _, err := w.Write([]byte("x")); err != nil {
						return err
					}
					time.Sleep(idle / 2)
				}
				return nil
			}
			got := make(chan int64, 1)
			b := startBackend(t, func(c net.Conn) {
				if dir == "down" {
					trickle(c)
					c.(*net.TCPConn).CloseWrite()
				}
				n, _ := io.Copy(io.Discard, c)
				got <- n
			})
			p, log := newProxy(t)
			p.IdleTimeout = idle
			addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
			c, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if dir == "up" {
				if err := trickle(c); err != nil {
					t.Fatalf("trickling for %v with an idle timeout of %v: %v", 4*idle, idle, err)
				}
				c.CloseWrite()
				if n := recv(t, "backend's count", got); n != 8 {
					t.Errorf("the backend got %d bytes of the trickle, want 8", n)
				}
				// The backend closes at the client's end of stream.
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("read = %v, want EOF", err)
				}
				waitIdle(t, p)
				waitLog(t, log, "end=eof")
				if st := p.Stats(); st.FromClient != 8 {
					t.Errorf("Stats.FromClient = %d, want 8", st.FromClient)
				}
			} else {
				// Cut short, the client would read a clean end
				// (close_notify) before the eighth byte.
				r := readAll(c)
				if r.err != nil || r.n != 8 {
					t.Fatalf("read %d bytes and %v, want 8 and the backend's end", r.n, r.err)
				}
				// The client keeps its side open: idle ends it.
				waitIdle(t, p)
				waitLog(t, log, "end=idle")
			}
		})
	}
}

// TestProxyProtocol: the backend reads a PROXY protocol v2 header with the
// client's address and the proxy's, over IPv4 and IPv6, and then the
// client's bytes.
func TestProxyProtocol(t *testing.T) {
	for _, network := range []string{"127.0.0.1", "::1"} {
		t.Run(network, func(t *testing.T) {
			ln, err := net.Listen("tcp", net.JoinHostPort(network, "0"))
			if err != nil {
				if network == "::1" && !testenv.InVM() {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatal(err)
			}
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			type header struct {
				src, dst *net.TCPAddr
				err      error
				rest     string
			}
			got := make(chan header, 1)
			b := startBackend(t, func(c net.Conn) {
				src, dst, err := readProxyHeader(c)
				rest, _ := io.ReadAll(c)
				got <- header{src, dst, err, string(rest)}
			})
			p, _ := newProxy(t)
			addr := serveOn(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr, ProxyProtocol: true}, ln)
			c, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("after the header"))
			c.CloseWrite()
			h := recv(t, "header", got)
			if h.err != nil {
				t.Fatal(h.err)
			}
			if h.src.String() != c.LocalAddr().String() || h.dst.String() != addr {
				t.Errorf("header says %v -> %v, want %v -> %v", h.src, h.dst, c.LocalAddr(), addr)
			}
			if h.rest != "after the header" {
				t.Errorf("after the header: %q", h.rest)
			}
		})
	}
}

// readProxyHeader parses a PROXY protocol v2 header with the PROXY command
// over TCP (haproxy's "proxy-protocol.txt", section 2.2).
func readProxyHeader(r io.Reader) (src, dst *net.TCPAddr, err error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, nil, err
	}
	if string(fixed[:12]) != "\r\n\r\n\x00\r\nQUIT\n" {
		return nil, nil, errors.New("no PROXY v2 signature")
	}
	if fixed[12] != 0x21 {
		return nil, nil, errors.New("not version 2, PROXY")
	}
	addrs := make([]byte, binary.BigEndian.Uint16(fixed[14:]))
	if _, err := io.ReadFull(r, addrs); err != nil {
		return nil, nil, err
	}
	var ipLen int
	switch fixed[13] {
	case 0x11:
		ipLen = 4
	case 0x21:
		ipLen = 16
	default:
		return nil, nil, errors.New("not TCP over IPv4 or IPv6")
	}
	if len(addrs) < 2*ipLen+4 {
		return nil, nil, errors.New("address block too short")
	}
	src = &net.TCPAddr{IP: net.IP(addrs[:ipLen]), Port: int(binary.BigEndian.Uint16(addrs[2*ipLen:]))}
	dst = &net.TCPAddr{IP: net.IP(addrs[ipLen : 2*ipLen]), Port: int(binary.BigEndian.Uint16(addrs[2*ipLen+2:]))}
	return src, dst, nil
}

// TestProxyHeaderLocal: an address that is not TCP gives the LOCAL
// command, with no addresses.
func TestProxyHeaderLocal(t *testing.T) {
	h := proxy.ProxyHeader(&net.UnixAddr{Name: "@x", Net: "unix"}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
	if string(h) != "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00" {
		t.Errorf("header %q", h)
	}
}

// TestSNIRouting: the client's server name picks the backend; a name
// without a route, or no name, goes to the default.
func TestSNIRouting(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	named := func(tag string) *backend {
		return startBackend(t, func(c net.Conn) { c.Write([]byte(tag)) })
	}
	a, b, def := named("a"), named("b"), named("default")
	p, _ := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: def.addr,
		Backends: map[string]string{"localhost": a.addr, "example.test": b.addr}})
	for _, tc := range []struct{ sni, want string }{
		{"localhost", "a"}, {"EXAMPLE.test", "b"}, {"", "default"},
	} {
		cfg := ccfg.Clone()
		cfg.ServerName = tc.sni
		if tc.sni == "" {
			cfg.InsecureSkipVerify = true // no name to verify
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != tc.want {
			t.Errorf("server name %q reached %q (%v), want %q", tc.sni, got, err, tc.want)
		}
	}
}

// TestUnixBackend: a backend on a unix socket, with WriteTo and ReadFrom
// on the *net.UnixConn.
func TestUnixBackend(t *testing.T) {
	const n = 1 << 20
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	path := t.TempDir() + "/backend.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan result, 1)
	startBackendOn(t, ln, func(c net.Conn) { got <- exchange(c.(*net.UnixConn), pattern(n, 2), false) })
	p, _ := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: "unix:" + path})
	c, err := tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(c, pattern(n, 1), false).check(t, "client", pattern(n, 2))
	recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
}

// TestClientCertificates: with ClientAuth, a client with a certificate of
// the CA is served and one without fails the handshake, counted.
func TestClientCertificates(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	scfg.ClientAuth, scfg.ClientCAs = tls.RequireAndVerifyClientCert, testpki.Get().Pool
	b, got := exchangeBackend(t, 100, false)
	p, _ := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})

	c, err := tls.Dial("tcp", addr, ccfg)
	if err == nil {
		c.SetDeadline(time.Now().Add(testenv.Prompt))
		_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server's refusal comes after
		c.Close()
	}
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a client without a certificate: %v, want a refused handshake", err)
	}
	waitIdle(t, p)
	if st := p.Stats(); st.HandshakeFailures != 1 {
		t.Errorf("HandshakeFailures = %d, want 1", st.HandshakeFailures)
	}

	ccfg.Certificates = []tls.Certificate{testpki.Get().Client()}
	c, err = tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(c, pattern(100, 1), false).check(t, "client", pattern(100, 2))
	recv(t, "backend result", got).check(t, "backend", pattern(100, 1))
}

// TestConcurrent: several connections at once, each intact.
func TestConcurrent(t *testing.T) {
	const conns, n = 8, 256 << 10
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	b, got := exchangeBackend(t, n, false)
	p, _ := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			exchange(c, pattern(n, 1), false).check(t, "client", pattern(n, 2))
		}()
	}
	wg.Wait()
	for range conns {
		recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
	}
	if st := waitIdle(t, p); st.FromClient != conns*n || st.ToClient != conns*n {
		t.Errorf("Stats = %+v, want %d bytes each way", st, conns*n)
	}
}

// TestBig moves 256 MiB each way through a server-mode proxy, with an idle
// timeout far shorter than the transfer, which must not end it. It runs
// only with KTLS_PROXY_TEST_BIG=1: in the emulated VMs (AES at about 15
// MB/s) it would take minutes.
func TestBig(t *testing.T) {
	if os.Getenv(bigEnv) != "1" {
		t.Skipf("set %s=1 to move 256 MiB each way", bigEnv)
	}
	const n = 256 << 20
	pattern(n, 1) // made before the clock of the idle timeout runs
	pattern(n, 2)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	b, got := exchangeBackend(t, n, false)
	p, _ := newProxy(t)
	// Far shorter than the transfer, and shorter than one splice round
	// (up to 1 MiB) takes to reach a peer in the emulated VMs, where AES
	// runs at a few MB/s: the watchdog must see the socket's own counters
	// move (session.watchdog), or it cuts the transfer, as it did before
	// it read them.
	p.IdleTimeout = 200 * time.Millisecond
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
	c, err := tls.Dial("tcp", addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(c, pattern(n, 1), false).check(t, "client", pattern(n, 2))
	recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
	st := c.ConnectionState()
	checkEngines(t, p, st.Version, st.CipherSuite, n, n)
}

// TestServeRefuses: a Listener that cannot work is refused at once, its
// listener closed; so is Serve after Shutdown.
func TestServeRefuses(t *testing.T) {
	_, scfg := testpki.Configs(0, 0)
	for _, l := range []*proxy.Listener{
		{Backend: "127.0.0.1:1"}, // no TLSConfig
		{TLSConfig: scfg},        // no backend
		{Mode: proxy.ClientMode},
		{Mode: proxy.ClientMode, Backend: "unix:/x"},
		{Mode: proxy.ClientMode, Backend: "h:1", ProxyProtocol: true},
	} {
		ln, err := proxy.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := &proxy.Proxy{}
		if err := p.Serve(ln, l); err == nil || errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve(%+v) = %v, want a refusal", l, err)
		}
		waitClosed(t, ln.Addr().String())
	}
	p := &proxy.Proxy{}
	p.Shutdown(context.Background())
	ln, err := proxy.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(ln, &proxy.Listener{TLSConfig: scfg, Backend: "127.0.0.1:1"}); !errors.Is(err, proxy.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
}
