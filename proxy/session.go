package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ktls-go/ktls"
)

// plainConn is the plain side of a session: a *net.TCPConn or a
// *net.UnixConn, never wrapped, so that ktls's WriteTo and ReadFrom see the
// socket (docs/ARCHITECTURE.md, step 8).
type plainConn interface {
	net.Conn
	CloseWrite() error
}

// session is one proxied connection.
type session struct {
	p        *Proxy
	l        *Listener
	raw      net.Conn // the accepted connection
	listener string
	start    time.Time

	// mu guards the fields below, and the arming and nudging of the
	// directions' deadlines (see copyLoop).
	mu      sync.Mutex
	tc      *ktls.Conn // the TLS side, once made
	plain   plainConn  // the plain side, once connected
	backend string
	cancel  context.CancelFunc // of the opening's context
	aborted bool               // closed, or closing: no more arming
	why     string             // the first reason to end
	err     error              // and its error, if any

	lastProgress         atomic.Int64 // unix nanoseconds of the last byte reported, either way
	lastReturn           atomic.Int64 // unix nanoseconds of the last return of a copy, either way
	fromClient, toClient atomic.Int64
}

// direction is one way of a session's copy.
type direction struct {
	name   string // "client->backend" or "backend->client", for the log
	copy   func() (int64, error)
	arm    func(time.Time) // sets the deadlines the copy honours
	finish func() error    // passes the source's EOF on
	count  *atomic.Int64
	total  *atomic.Uint64
	tlsTX  bool // the copy seals (plain to TLS), else it opens

	// Guarded by session.mu.
	done, inCall, nudged bool
}

func (s *session) run() {
	defer s.p.unregister(s)
	var ctx context.Context
	var cancel context.CancelFunc
	if s.p.HandshakeTimeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), s.p.HandshakeTimeout)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	s.mu.Lock()
	s.cancel = cancel
	aborted := s.aborted
	s.mu.Unlock()
	var err error
	if aborted {
		err = errors.New("stopped before the handshake")
	} else if s.l.Mode == ClientMode {
		err = s.openClient(ctx)
	} else {
		err = s.openServer(ctx)
	}
	cancel()
	if err == nil {
		s.pipe()
	}
	s.end()
}

// openServer runs the handshake with the client, picks the backend by the
// server name and connects to it.
func (s *session) openServer(ctx context.Context) error {
	tc := ktls.Server(s.raw, s.l.TLSConfig, s.p.Options...)
	if !s.setTLS(tc) {
		return net.ErrClosed
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		s.p.stats.handshakeFailures.Add(1)
		return s.fail("handshake", err)
	}
	name := strings.TrimSuffix(strings.ToLower(tc.ConnectionState().ServerName), ".")
	backend, ok := s.l.Backends[name]
	if !ok {
		backend = s.l.Backend
	}
	s.mu.Lock()
	s.backend = backend
	s.mu.Unlock()
	if backend == "" {
		s.p.stats.backendFailures.Add(1)
		return s.fail("no backend", fmt.Errorf("proxy: no backend for server name %q", name))
	}
	c, err := s.p.dial(ctx, backend)
	if err != nil {
		s.p.stats.backendFailures.Add(1)
		return s.fail("backend dial", err)
	}
	pc, ok := c.(plainConn)
	if !ok {
		c.Close()
		s.p.stats.backendFailures.Add(1)
		return s.fail("backend dial", fmt.Errorf("proxy: backend connection is a %T", c))
	}
	if !s.setPlain(pc) {
		return net.ErrClosed
	}
	if s.l.ProxyProtocol {
		if d, ok := ctx.Deadline(); ok {
			pc.SetWriteDeadline(d)
		}
		if _, err := pc.Write(ProxyHeader(s.raw.RemoteAddr(), s.raw.LocalAddr())); err != nil {
			s.p.stats.backendFailures.Add(1)
			return s.fail("backend", err)
		}
		pc.SetWriteDeadline(time.Time{})
	}
	return nil
}

// openClient connects to the remote server and runs the handshake.
func (s *session) openClient(ctx context.Context) error {
	pc, ok := s.raw.(plainConn)
	if !ok {
		return s.fail("accept", fmt.Errorf("proxy: accepted a %T, not a TCP or unix connection", s.raw))
	}
	if !s.setPlain(pc) {
		return net.ErrClosed
	}
	s.mu.Lock()
	s.backend = s.l.Backend
	s.mu.Unlock()
	c, err := s.p.dial(ctx, s.l.Backend)
	if err != nil {
		s.p.stats.backendFailures.Add(1)
		return s.fail("backend dial", err)
	}
	cfg := s.l.TLSConfig
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		// As crypto/tls's Dial: verify the host dialled.
		host, _, err := net.SplitHostPort(s.l.Backend)
		if err != nil {
			host = s.l.Backend
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := ktls.Client(c, cfg, s.p.Options...)
	if !s.setTLS(tc) {
		return net.ErrClosed
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		s.p.stats.handshakeFailures.Add(1)
		return s.fail("handshake", err)
	}
	return nil
}

// setTLS and setPlain record a side of the session, or close it and return
// false where the session was aborted meanwhile.
func (s *session) setTLS(tc *ktls.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tc = tc
	if s.aborted {
		tc.Close()
	}
	return !s.aborted
}

func (s *session) setPlain(pc plainConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plain = pc
	if s.aborted {
		pc.Close()
	}
	return !s.aborted
}

// fail records why the session ends, if nothing did before, and returns
// err.
func (s *session) fail(why string, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.why == "" {
		s.why, s.err = why, err
	}
	return err
}

// abort ends the session now: it closes both sides, so that the copies and
// the handshake in flight return. A reset (err wraps ECONNRESET) is passed
// on to the other side as a reset.
func (s *session) abort(why string, err error) {
	s.mu.Lock()
	if s.why == "" {
		s.why, s.err = why, err
	}
	if s.aborted {
		s.mu.Unlock()
		return
	}
	s.aborted = true
	if s.cancel != nil {
		s.cancel()
	}
	tc, pc := s.tc, s.plain
	s.mu.Unlock()
	if errors.Is(err, syscall.ECONNRESET) {
		// SO_LINGER 0: close sends RST, so the other end learns of the
		// reset as the proxy did, not as a clean end of stream.
		for _, c := range []net.Conn{pc, s.raw} {
			if c, ok := c.(*net.TCPConn); ok {
				c.SetLinger(0)
			}
		}
		if tc != nil {
			if c, ok := tc.NetConn().(*net.TCPConn); ok {
				c.SetLinger(0)
			}
			// No close_notify: the TLS peer must not take the end
			// for a clean one. Closing the socket first makes
			// Close's alert fail.
			tc.NetConn().Close()
		}
	}
	closeSides(tc, pc, s.raw)
}

// closeSides closes the TLS side (close_notify where it can), the plain
// side and the accepted connection, whichever exist.
func closeSides(tc *ktls.Conn, pc plainConn, raw net.Conn) {
	if tc != nil {
		tc.Close()
	}
	if pc != nil {
		pc.Close()
	}
	raw.Close()
}

// pipe copies both ways until both directions have ended, or one failed.
func (s *session) pipe() {
	s.mu.Lock()
	tc, pc := s.tc, s.plain
	s.mu.Unlock()
	// TLS to plain: WriteTo with the raw socket itself, which the kernel
	// engine splices into. Only the TLS read deadline is set: a timeout
	// there is not an end (ktls's RX resumes on the next call), while a
	// write deadline on the destination would lose what the copying
	// engines had read and not written yet (io.Copy drops its buffer on a
	// write error).
	opened := &direction{
		copy:   func() (int64, error) { return tc.WriteTo(pc) },
		arm:    func(t time.Time) { tc.SetReadDeadline(t) },
		finish: pc.CloseWrite,
	}
	// Plain to TLS: ReadFrom with the raw socket, never through io.Copy,
	// whose (*net.TCPConn).WriteTo would hide the socket. Only the
	// source's read deadline is set: a write that times out leaves a TLS
	// connection broken for writes, as in crypto/tls. So neither direction
	// is woken by a deadline while it waits to write; a peer that does not
	// read is found by the other direction (copyLoop).
	sealed := &direction{
		copy:   func() (int64, error) { return tc.ReadFrom(pc) },
		arm:    func(t time.Time) { pc.SetReadDeadline(t) },
		finish: tc.CloseWrite,
		tlsTX:  true,
	}
	up, down := opened, sealed // client to backend, backend to client
	if s.l.Mode == ClientMode {
		up, down = sealed, opened
	}
	up.name, up.count, up.total = "client->backend", &s.fromClient, &s.p.stats.fromClient
	down.name, down.count, down.total = "backend->client", &s.toClient, &s.p.stats.toClient
	s.lastProgress.Store(time.Now().UnixNano())
	s.lastReturn.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.copyLoop(up, down) }()
	go func() { defer wg.Done(); s.copyLoop(down, up) }()
	if idle := s.p.IdleTimeout; idle > 0 {
		stop := make(chan struct{})
		defer close(stop)
		go s.watchdog(idle, tc.NetConn(), stop)
	}
	wg.Wait()
}

// watchdog ends the session when no copy has returned and the TLS socket
// has moved no byte for twice the idle timeout. A copy returns at least once
// per IdleTimeout at its read deadline, unless it is in the middle of a
// round: writing to a peer that reads slowly or not at all (no write
// deadline is set, see pipe), or, on the kernel engine, draining a splice
// round of up to 1 MiB. So every half period it also reads the TLS
// socket's own byte counters (moved): bytes that move there are progress
// (lastProgress, which copyLoop's nudges read too) though no copy has
// returned to report them. Where the counters cannot be read, a round
// that outlasts two periods ends the session (Proxy.IdleTimeout).
func (s *session) watchdog(idle time.Duration, sock net.Conn, stop <-chan struct{}) {
	t := time.NewTicker(idle / 2)
	defer t.Stop()
	last, counted := moved(sock)
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if n, ok := moved(sock); ok && counted && n != last {
				last = n
				s.lastProgress.Store(now.UnixNano())
				continue
			}
			seen := max(s.lastReturn.Load(), s.lastProgress.Load())
			if now.Sub(time.Unix(0, seen)) > 2*idle {
				s.abort("idle", nil)
				return
			}
		}
	}
}

// copyLoop runs d until its source ends (then passes the end on) or fails
// (then aborts the session).
//
// The idle timeout, with no byte through the process: each call runs under
// a deadline IdleTimeout ahead and reports its bytes when it returns. A
// timeout with bytes moved, or with bytes reported either way within
// IdleTimeout, renews the deadline. Otherwise the other direction may be
// in the middle of a call that moved bytes it has not reported yet, so it
// is nudged: its deadline is set in the past, and it returns with its
// count. A direction whose nudged call moved nothing ends the session; so
// does one whose other direction has ended, or that was nudged once and is
// still in the same call a whole IdleTimeout later (a write to a peer that
// does not read, which no read deadline wakes).
func (s *session) copyLoop(d, other *direction) {
	idle := s.p.IdleTimeout
	for {
		s.mu.Lock()
		if s.aborted {
			s.mu.Unlock()
			return
		}
		if idle > 0 {
			d.arm(time.Now().Add(idle))
		}
		d.inCall, d.nudged = true, false
		s.mu.Unlock()

		n, err := d.copy()
		now := time.Now()
		s.lastReturn.Store(now.UnixNano())
		s.mu.Lock()
		d.inCall = false
		nudged := d.nudged
		s.mu.Unlock()
		if n > 0 {
			d.count.Add(n)
			d.total.Add(uint64(n))
			s.lastProgress.Store(now.UnixNano())
			s.account(d, n)
		}
		if err == nil {
			// The source's end of stream: pass it on.
			if ferr := d.finish(); ferr != nil && !errors.Is(ferr, net.ErrClosed) {
				s.abort(d.name, ferr)
				return
			}
			s.mu.Lock()
			d.done = true
			bothDone := other.done
			s.mu.Unlock()
			if bothDone {
				s.abort("eof", nil)
			}
			return
		}
		var ne net.Error
		if idle == 0 || !errors.As(err, &ne) || !ne.Timeout() {
			s.abort(d.name, err)
			return
		}
		if n > 0 || now.Sub(time.Unix(0, s.lastProgress.Load())) < idle {
			continue
		}
		s.mu.Lock()
		switch {
		case nudged, other.done, other.inCall && other.nudged:
			s.mu.Unlock()
			s.abort("idle", nil)
			return
		default:
			other.nudged = true
			if other.inCall {
				other.arm(time.Unix(1, 0))
			}
		}
		s.mu.Unlock()
	}
}

// account adds n bytes to the engine of d's TLS direction.
func (s *session) account(d *direction, n int64) {
	b := s.tc.Backend()
	if d.tlsTX {
		s.p.stats.engine(b.TX, func(e *EngineStats) { e.Sealed += uint64(n) })
	} else {
		s.p.stats.engine(rxEngine(b), func(e *EngineStats) { e.Opened += uint64(n) })
	}
}

// rxEngine is the engine that holds RX now: for a TLS 1.3 client, the one
// that took it after the session tickets (ktls.DirectionInfo.Drained).
func rxEngine(b ktls.BackendInfo) string {
	if d := b.RXDetail; d.AfterTickets && d.Drained.Engine != "" {
		return d.Drained.Engine
	}
	return b.RX
}

// end closes what is left and logs the connection's line.
func (s *session) end() {
	s.mu.Lock()
	s.aborted = true
	tc, pc, backend, why, err := s.tc, s.plain, s.backend, s.why, s.err
	s.mu.Unlock()
	closeSides(tc, pc, s.raw)
	if why == "" {
		why = "eof"
	}
	attrs := []any{
		"listener", s.listener,
		"mode", s.l.Mode.String(),
		"client", s.raw.RemoteAddr().String(),
		"backend", backend,
	}
	if tc != nil {
		if st := tc.ConnectionState(); st.HandshakeComplete {
			b := tc.Backend()
			attrs = append(attrs,
				"sni", st.ServerName,
				"version", tls.VersionName(st.Version),
				"suite", tls.CipherSuiteName(st.CipherSuite),
				"tx", b.TX, "rx", rxEngine(b))
			s.p.stats.engine(b.TX, func(e *EngineStats) { e.TXConns++ })
			s.p.stats.engine(rxEngine(b), func(e *EngineStats) { e.RXConns++ })
		}
	}
	attrs = append(attrs,
		"from_client", s.fromClient.Load(),
		"to_client", s.toClient.Load(),
		"duration", time.Since(s.start).Round(time.Millisecond).String(),
		"end", why)
	if err != nil && !errors.Is(err, io.EOF) {
		attrs = append(attrs, "error", err.Error())
	}
	s.p.logger().Info("proxy: connection", attrs...)
}
