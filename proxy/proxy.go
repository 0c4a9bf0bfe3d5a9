// Package proxy is a TLS-terminating and TLS-originating TCP proxy whose
// bytes, on the kernel engine, never enter the process.
//
// In server mode a Listener accepts TLS (ktls.Server with the Listener's
// *tls.Config), picks a backend by the client's server name (SNI), dials it
// over TCP or a unix socket, and copies both ways. In client mode it
// accepts plain TCP and originates TLS (ktls.Client) to a remote server.
//
// The copy is the zero-copy path of ktls (docs/ARCHITECTURE.md, step 8):
// TLS to plain is (*ktls.Conn).WriteTo with the raw *net.TCPConn or
// *net.UnixConn, which splices with splice(2) when RX is in the kernel;
// plain to TLS is (*ktls.Conn).ReadFrom with the raw connection, the path
// on which a kTLS TX takes a socket source. On the other engines both
// copy through the process, as io.Copy would.
//
// Half-close is carried both ways: the TLS peer's close_notify (or EOF)
// becomes CloseWrite on the plain side, and the plain side's EOF becomes
// CloseWrite (close_notify) on the TLS side. The idle timeout needs no byte
// to pass through the process: each direction's copy runs under a deadline
// that it renews, and a timeout ends the connection only when neither
// direction moved a byte for the whole period (see IdleTimeout).
//
// One log line per connection when it ends; process-wide counters in Stats.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ktls-go/ktls"
)

// Mode says which side of a Listener speaks TLS.
type Mode int

const (
	// ServerMode accepts TLS and connects to a plain backend.
	ServerMode Mode = iota
	// ClientMode accepts plain TCP and connects with TLS to a remote server.
	ClientMode
)

func (m Mode) String() string {
	if m == ClientMode {
		return "client"
	}
	return "server"
}

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Listener is what one listening socket does.
type Listener struct {
	// Mode is ServerMode (the zero value) or ClientMode.
	Mode Mode
	// TLSConfig is, in server mode, the configuration of the accepted
	// connections (certificates, GetCertificate or GetConfigForClient,
	// ClientAuth and ClientCAs), used unchanged; in client mode, that of
	// the connections to Backend (RootCAs, ServerName; an empty
	// ServerName is the host part of Backend, as ktls.Dial does).
	TLSConfig *tls.Config
	// Backend is, in server mode, the default backend: "host:port" or
	// "unix:/path"; "" refuses clients whose server name has no entry in
	// Backends. In client mode it is the remote TLS server, "host:port".
	Backend string
	// Backends maps server names (SNI, lower case) to backends, in server
	// mode.
	Backends map[string]string
	// ProxyProtocol sends a PROXY protocol v2 header to the backend before
	// the client's first byte, in server mode, so the backend sees the
	// client's address.
	ProxyProtocol bool
}

// Proxy serves Listeners. Its fields must not change once Serve was
// called. The zero value is a proxy with no timeouts and no limit.
type Proxy struct {
	// HandshakeTimeout bounds the TLS handshake, and the dial of the
	// backend; 0 means none.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection on which no byte moved either way
	// for that long; 0 means none. A connection is closed between
	// IdleTimeout and twice that after its last byte (the directions
	// report their bytes when their copy returns, at least once per
	// IdleTimeout), and never while bytes move: on Linux the TLS socket's
	// own byte counters (TCP_INFO) count as movement while a copy is in
	// the middle of a round (a splice round is up to 1 MiB). Elsewhere, or
	// where the counters cannot be read, a peer so slow that one round (64
	// KiB on the copying engines) takes it more than twice IdleTimeout to
	// read ends the connection: a write is not interrupted to count its
	// bytes.
	IdleTimeout time.Duration
	// MaxConns limits the connections open at once; 0 means no limit. A
	// connection beyond it is accepted and closed at once (counted in
	// Stats.Rejected), so that the client learns at once instead of
	// waiting in the kernel's accept queue.
	MaxConns int
	// Logger gets one line per connection when it ends; nil is
	// slog.Default().
	Logger *slog.Logger
	// Options choose the engines of the TLS connections (ktls.WithBackend
	// and the rest); KTLS_BACKEND wins over them, as everywhere in ktls.
	Options []ktls.Option
	// Dialer dials backends and remote servers; nil is a zero net.Dialer.
	Dialer *net.Dialer

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	shutdown  bool
	wg        sync.WaitGroup // open sessions
	idleCh    chan struct{}  // closed and replaced when sessions becomes empty

	stats counters
}

// Serve accepts connections on ln and serves them as l says, until Shutdown
// or Close; it then returns ErrServerClosed. ln's connections must be
// *net.TCPConn (or *net.UnixConn in client mode) for the kernel engines and
// the zero-copy paths. Serve closes ln when it returns.
func (p *Proxy) Serve(ln net.Listener, l *Listener) error {
	if err := l.check(); err != nil {
		ln.Close()
		return err
	}
	p.mu.Lock()
	if p.shutdown {
		p.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if p.listeners == nil {
		p.listeners = make(map[net.Listener]struct{})
	}
	p.listeners[ln] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if p.closing() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of fds and the like (EMFILE, ENFILE, ENOBUFS,
				// ECONNABORTED): back off and go on, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				p.logger().Warn("proxy: accept", "listener", ln.Addr().String(), "error", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		delay = 0
		p.stats.accepted.Add(1)
		s, ok := p.register(raw, l, ln.Addr())
		if !ok {
			p.stats.rejected.Add(1)
			raw.Close()
			continue
		}
		go s.run()
	}
}

func (l *Listener) check() error {
	if l.Mode == ClientMode {
		if l.Backend == "" {
			return errors.New("proxy: client mode needs a remote server (Backend)")
		}
		if strings.HasPrefix(l.Backend, "unix:") {
			return errors.New("proxy: client mode connects over TCP, not to " + l.Backend)
		}
		if l.ProxyProtocol || len(l.Backends) != 0 {
			return errors.New("proxy: ProxyProtocol and Backends are for server mode")
		}
		return nil
	}
	if l.TLSConfig == nil {
		return errors.New("proxy: server mode needs a TLSConfig")
	}
	if l.Backend == "" && len(l.Backends) == 0 {
		return errors.New("proxy: no backend")
	}
	return nil
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Proxy) closing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shutdown
}

// register makes a session of raw, or returns false where MaxConns is
// reached or the proxy is stopping.
func (p *Proxy) register(raw net.Conn, l *Listener, laddr net.Addr) (*session, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown || p.MaxConns > 0 && len(p.sessions) >= p.MaxConns {
		return nil, false
	}
	if p.sessions == nil {
		p.sessions = make(map[*session]struct{})
	}
	s := &session{p: p, l: l, raw: raw, listener: laddr.String(), start: time.Now()}
	p.sessions[s] = struct{}{}
	p.wg.Add(1)
	p.stats.active.Add(1)
	return s, true
}

func (p *Proxy) unregister(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	if len(p.sessions) == 0 && p.idleCh != nil {
		close(p.idleCh)
		p.idleCh = nil
	}
	p.mu.Unlock()
	p.stats.active.Add(-1)
	p.wg.Done()
}

// Shutdown stops accepting at once, then waits for the open connections
// to end on their own until ctx is done, then closes those left (their log
// lines say "shutdown") and waits for them to be gone. It returns ctx's
// error where it had to close connections, nil otherwise.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.shutdown = true
	for ln := range p.listeners {
		ln.Close()
	}
	var idle chan struct{}
	if len(p.sessions) > 0 {
		if p.idleCh == nil {
			p.idleCh = make(chan struct{})
		}
		idle = p.idleCh
	}
	p.mu.Unlock()
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
			p.closeSessions("shutdown")
		}
	}
	p.wg.Wait()
	return err
}

// Close stops accepting and closes every open connection at once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.shutdown = true
	for ln := range p.listeners {
		ln.Close()
	}
	p.mu.Unlock()
	p.closeSessions("closed")
	p.wg.Wait()
	return nil
}

func (p *Proxy) closeSessions(why string) {
	p.mu.Lock()
	ss := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		ss = append(ss, s)
	}
	p.mu.Unlock()
	for _, s := range ss {
		s.abort(why, nil)
	}
}

// Listen listens on addr: "host:port" for TCP, "unix:/path" for a unix
// socket.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// dial connects to a backend, "host:port" or "unix:/path".
func (p *Proxy) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := p.Dialer
	if d == nil {
		d = new(net.Dialer)
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	return d.DialContext(ctx, "tcp", addr)
}
