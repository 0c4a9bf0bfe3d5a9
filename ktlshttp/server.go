package ktlshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ktls-go/ktls"
)

// defaultHandshakeTimeout bounds a server-side handshake when the
// http.Server sets none of ReadHeaderTimeout, ReadTimeout and WriteTimeout.
// net/http then sets no limit at all; a Server holds a goroutine and a file
// descriptor per handshake, so it keeps one.
const defaultHandshakeTimeout = 10 * time.Second

// Server serves HTTP/1.1 and HTTP/2 over ktls connections, with the
// configuration of an http.Server.
//
// Each accepted connection's handshake runs in a goroutine of its own, bound
// by the smallest of the http.Server's ReadHeaderTimeout, ReadTimeout and
// WriteTimeout that is set, as in net/http, or else by 10 seconds.
// Then the connection goes to the server of the protocol it negotiated,
// which sees the *ktls.Conn after its handshake: Request.TLS is complete,
// and ConnContext and ConnState receive the *ktls.Conn with its engines
// chosen.
//
// On Go 1.27 and later every connection, "h2" ones included, goes to the
// http.Server as an accepted connection: its own HTTP/2 serves any conn
// with ConnectionState and HandshakeContext methods (net/http/server.go,
// (*conn).serve), and its Shutdown and Close cover the HTTP/2 connections
// too. If the http.Server's TLSConfig is set and does not offer "h2" while
// it serves HTTP/2, the Server gives it, at first use, a clone that does:
// net/http's Serve turns its HTTP/2 on only then (server.go,
// shouldConfigureHTTP2ForServe); the config given is not changed.
//
// On Go 1.26 a connection that negotiated "h2" is served by
// golang.org/x/net/http2 with the http.Server as its base configuration,
// since net/http's own HTTP/2 serves only a *tls.Conn; any other goes to
// the http.Server. The embedded http.Server's Shutdown and Close then know
// nothing of the HTTP/2 connections (as net/http's do not of hijacked
// ones), although they still stop the Server accepting and send those
// connections a GOAWAY.
//
// On either, stop a Server with its own Shutdown and Close, which also
// end the handshakes in flight.
type Server struct {
	// Server is the net/http server whose configuration applies: Addr,
	// Handler, TLSConfig, the timeouts, MaxHeaderBytes, ConnState,
	// ConnContext, BaseContext, ErrorLog, HTTP2 and Protocols. It must
	// not be nil, and must not change once the Server is in use.
	// BaseContext is called twice per listener (once by the Server, once
	// by the http.Server), with a listener that has l's address.
	*http.Server

	// Options choose the engines of the connections that ServeTLS and
	// ListenAndServeTLS accept, as for ktls.Listen. Serve's listener
	// brings its own.
	Options []ktls.Option

	initOnce   sync.Once
	http1      bool               // the http.Server serves HTTP/1
	http2      bool               // the http.Server serves HTTP/2
	tlsConfig  *tls.Config        // Server.TLSConfig as it was at first use
	h2         h2Server           // what serves "h2" besides the http.Server, if anything (per Go version)
	stopCtx    context.Context    // done once the Server stops
	stopCancel context.CancelFunc // aborts the handshakes in flight

	// mu protects the fields below.
	mu      sync.Mutex
	stopped bool
	conns   map[net.Conn]struct{} // in their handshake, or served by h2
}

var errNoServer = errors.New("ktlshttp: Server.Server is nil")

// init takes what the Server needs from the http.Server once, before any
// http.Server.Serve can change it: net/http's own HTTP/2 setup fills in a
// nil TLSConfig and TLSNextProto on first Serve (net/http/server.go,
// onceSetNextProtoDefaults_Serve).
func (s *Server) init() {
	s.initOnce.Do(func() {
		p := protocols(s.Server)
		s.http1, s.http2 = p.HTTP1(), p.HTTP2()
		s.tlsConfig = s.Server.TLSConfig.Clone()
		s.initHTTP2()
		s.stopCtx, s.stopCancel = context.WithCancel(context.Background())
		s.conns = make(map[net.Conn]struct{})
	})
}

// protocols returns the protocols srv serves, as net/http's unexported
// (*Server).protocols does in Go 1.26, except for GODEBUG=http2server=0.
func protocols(srv *http.Server) http.Protocols {
	if srv.Protocols != nil {
		return *srv.Protocols
	}
	var p http.Protocols
	p.SetHTTP1(true)
	// A non-nil TLSNextProto without "h2" is net/http's historic way of
	// turning HTTP/2 off.
	if _, ok := srv.TLSNextProto["h2"]; ok || srv.TLSNextProto == nil {
		p.SetHTTP2(true)
	}
	return p
}

func (s *Server) start() error {
	if s.Server == nil {
		return errNoServer
	}
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return http.ErrServerClosed
	}
	return nil
}

// Serve accepts connections on l, whose Accept returns *ktls.Conn before
// their handshake (ktls.Listen, ktls.NewListener), and serves them; any
// other conn with HandshakeContext and ConnectionState methods, such as a
// *tls.Conn, is served the same way, and a conn without them goes to the
// http.Server as it is. HTTP/2 is served only if l's config offers "h2" in
// NextProtos. Serve always closes l and returns a non-nil error: after
// Shutdown or Close, http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	if err := s.start(); err != nil {
		if l != nil {
			l.Close()
		}
		return err
	}
	cl := &chanListener{l: l, conns: make(chan net.Conn), done: make(chan struct{}), onServerClose: s.stop}
	base := s.http2Context(cl)

	served := make(chan error, 1)
	go func() { served <- s.Server.Serve(cl) }()
	err := s.accept(l, cl, base)
	herr := <-served
	if err != nil {
		return err
	}
	// The http.Server closed cl: Shutdown, Close, or its own setup failed.
	return herr
}

// accept runs the accept loop of Serve. It returns nil once the http.Server
// closed cl (and with it l), and l's error if l failed on its own.
func (s *Server) accept(l net.Listener, cl *chanListener, base context.Context) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if cl.isClosed() {
				return nil
			}
			// As net/http's Serve: back off on temporary errors, such as
			// running out of file descriptors.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, delay)
				select {
				case <-time.After(delay):
				case <-cl.done:
				}
				continue
			}
			cl.closeAfterError()
			return err
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			continue
		}
		go s.handshake(c, cl, base)
	}
}

// tlsConn is what Serve needs of a TLS connection.
type tlsConn interface {
	net.Conn
	HandshakeContext(context.Context) error
	ConnectionState() tls.ConnectionState
}

// handshake runs c's handshake and hands c to the server of its protocol.
func (s *Server) handshake(c net.Conn, cl *chanListener, base context.Context) {
	defer s.untrack(c)
	if tc, ok := c.(tlsConn); ok {
		ctx, cancel := context.WithTimeout(s.stopCtx, s.handshakeTimeout())
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if s.stopCtx.Err() == nil {
				s.logf("http: TLS handshake error from %s: %v", c.RemoteAddr(), err)
			}
			c.Close()
			return
		}
		switch tc.ConnectionState().NegotiatedProtocol {
		case "h2":
			if !s.http2 {
				c.Close()
				return
			}
			if s.serveHTTP2(c, base) {
				return
			}
		case "", "http/1.1", "http/1.0":
		default:
			// As net/http: a protocol with no server for it ends the
			// connection.
			c.Close()
			return
		}
	}
	if !cl.deliver(c) {
		c.Close()
	}
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	if f := s.ConnState; f != nil {
		f(c, st)
	}
}

func (s *Server) handshakeTimeout() time.Duration {
	var d time.Duration
	for _, v := range []time.Duration{s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	if d == 0 {
		d = defaultHandshakeTimeout
	}
	return d
}

func (s *Server) logf(format string, args ...any) {
	if s.Server != nil && s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// track records c as the Server's until untrack; it refuses once the Server
// stopped.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) == 0
}

// stop ends accepting and handshakes, and sends a GOAWAY to every HTTP/2
// connection h2 serves. It may run under the http.Server's lock (from
// chanListener.Close), so it must not call the http.Server.
func (s *Server) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.stopCancel()
	s.goAway()
}

// Shutdown stops the Server gracefully: it closes the listeners, lets the
// HTTP/1 connections finish their requests (http.Server.Shutdown), sends
// every HTTP/2 connection a GOAWAY and waits for their streams to end
// (net/http's Shutdown does on Go 1.27, the Server with x/net on Go 1.26),
// and aborts the handshakes in flight. It returns when all are done, or with
// ctx's error when ctx ends first; Close then ends what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.Server == nil {
		return errNoServer
	}
	s.init()
	s.stop()
	err := s.Server.Shutdown(ctx)
	// Wait for the handshakes that stop aborted and, on Go 1.26, for the
	// HTTP/2 connections x/net serves. x/net registers a connection only
	// once ServeConn runs, which may be just after a GOAWAY went out: send
	// it again each time round.
	wait := time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for !s.idle() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		s.goAway()
		wait = min(2*wait, 500*time.Millisecond)
		timer.Reset(wait)
	}
	return err
}

// Close closes the listeners and every connection at once: the HTTP/1 ones
// (http.Server.Close), the HTTP/2 ones and those in their handshake.
func (s *Server) Close() error {
	if s.Server == nil {
		return errNoServer
	}
	s.init()
	s.stop()
	err := s.Server.Close()
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return err
}

// ServeTLS serves on l, a listener of plain connections, as
// http.Server.ServeTLS does but with ktls: the http.Server's TLSConfig
// (cloned at the Server's first use), with "h2" and "http/1.1" offered by
// ALPN if its NextProtos is empty, and the certificate and key loaded from
// certFile and keyFile unless the config has a certificate and both names
// are empty.
func (s *Server) ServeTLS(l net.Listener, certFile, keyFile string) error {
	if err := s.start(); err != nil {
		l.Close()
		return err
	}
	config, err := s.listenConfig(certFile, keyFile)
	if err != nil {
		return err
	}
	return s.Serve(ktls.NewListener(l, config, s.Options...))
}

// ListenAndServeTLS listens on the http.Server's Addr (":https" if empty)
// and serves as ServeTLS does.
func (s *Server) ListenAndServeTLS(certFile, keyFile string) error {
	if err := s.start(); err != nil {
		return err
	}
	config, err := s.listenConfig(certFile, keyFile)
	if err != nil {
		return err
	}
	addr := s.Addr
	if addr == "" {
		addr = ":https"
	}
	// ktls.Listen, unlike ktls.NewListener, refuses a malformed
	// KTLS_BACKEND here rather than at every handshake.
	l, err := ktls.Listen("tcp", addr, config, s.Options...)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// listenConfig is the config of ServeTLS's listener, as net/http's ServeTLS
// makes it, except that the user's NextProtos, when set, are left as they
// are.
func (s *Server) listenConfig(certFile, keyFile string) (*tls.Config, error) {
	config := s.tlsConfig.Clone()
	if config == nil {
		config = &tls.Config{}
	}
	if len(config.NextProtos) == 0 {
		if s.http2 {
			config.NextProtos = append(config.NextProtos, "h2")
		}
		if s.http1 {
			config.NextProtos = append(config.NextProtos, "http/1.1")
		}
	}
	hasCert := len(config.Certificates) > 0 || config.GetCertificate != nil || config.GetConfigForClient != nil
	if !hasCert || certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return config, nil
}

// chanListener is the listener the http.Server serves: Accept returns the
// connections whose handshake is done and that speak HTTP/1.
type chanListener struct {
	l     net.Listener // the Server's listener: its address, and closed with it
	conns chan net.Conn
	done  chan struct{} // closed by Close

	closeOnce sync.Once
	closeErr  error
	// onServerClose stops the Server when the http.Server closes the
	// listener: its Shutdown and Close do, and nothing else but a failure
	// of its Serve's setup, which every Serve would meet. When Serve
	// closes it because l failed, the Server goes on, as net/http's
	// connections outlive a failed listener.
	onServerClose func()
}

func (c *chanListener) Accept() (net.Conn, error) {
	select {
	case nc := <-c.conns:
		return nc, nil
	case <-c.done:
		return nil, net.ErrClosed
	}
}

// Close is the http.Server's.
func (c *chanListener) Close() error { return c.close(true) }

func (c *chanListener) close(byServer bool) error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.closeErr = c.l.Close()
		if byServer {
			c.onServerClose()
		}
	})
	return c.closeErr
}

func (c *chanListener) Addr() net.Addr { return c.l.Addr() }

func (c *chanListener) closeAfterError() { c.close(false) }

func (c *chanListener) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// deliver hands nc to the http.Server's Accept; false if the listener
// closed first.
func (c *chanListener) deliver(nc net.Conn) bool {
	select {
	case c.conns <- nc:
		return true
	case <-c.done:
		return false
	}
}
