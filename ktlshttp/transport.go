package ktlshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/idna"

	"github.com/ktls-go/ktls"
)

// Transport is an http.RoundTripper that makes HTTPS requests over ktls
// connections: HTTP/2 where the server picks "h2" by ALPN, HTTP/1.1
// otherwise, with Response.TLS filled in for both. Plain "http" requests go
// through an http.Transport as they are. It keeps connections for reuse, as
// http.Transport does; it is safe for concurrent use.
//
// A Transport dials servers directly: it does not use proxies. Make one
// with NewTransport; the zero Transport is not usable.
type Transport struct {
	dialer ktls.Dialer
	h2ok   bool // the config offers "h2"
	h1     *http.Transport
	h2     *http2.Transport

	// mu protects the fields below.
	mu     sync.Mutex
	http1  map[string]bool       // servers (host:port) that picked HTTP/1.1
	spares map[string]*spareConn // a conn dialled for HTTP/2 that got HTTP/1.1
}

// spareConn waits for the HTTP/1.1 dial that follows, so that the handshake
// is not wasted.
type spareConn struct {
	c     net.Conn
	timer *time.Timer // closes c if no dial took it
}

// spareTTL is how long a spare conn waits for the HTTP/1.1 dial that
// follows at once, unless the http.Transport had an idle conn instead.
const spareTTL = 5 * time.Second

// errHTTP1 tells RoundTrip that the server picked HTTP/1.1 on a connection
// dialled for HTTP/2; errHTTP2, the reverse.
var (
	errHTTP1 = errors.New("ktlshttp: the server picked HTTP/1.1")
	errHTTP2 = errors.New("ktlshttp: the server picked HTTP/2 on a connection dialled for HTTP/1.1")
)

// NewTransport returns a Transport whose connections use config, as
// ktls.Dial would, with opts choosing their engines. If config.NextProtos is
// empty, the Transport offers "h2" and "http/1.1" (on a clone; config is
// never modified); otherwise it offers what NextProtos says and speaks
// HTTP/2 only if that includes "h2". A nil config is the zero config.
//
// Its timeouts are those of http.DefaultTransport: 30 s to connect and
// finish the handshake, 90 s for an idle connection, and at most 100 idle
// HTTP/1.1 connections.
func NewTransport(config *tls.Config, opts ...ktls.Option) *Transport {
	if config == nil {
		config = &tls.Config{}
	}
	config = config.Clone()
	if len(config.NextProtos) == 0 {
		config.NextProtos = []string{"h2", "http/1.1"}
	}
	nd := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t := &Transport{
		dialer: ktls.Dialer{NetDialer: nd, Config: config, Options: opts},
		h2ok:   slices.Contains(config.NextProtos, "h2"),
		http1:  make(map[string]bool),
		spares: make(map[string]*spareConn),
	}
	t.h1 = &http.Transport{
		DialContext:    nd.DialContext,
		DialTLSContext: t.dialHTTP1,
		// net/http's own HTTP/2 runs only on a *tls.Conn (transport.go,
		// dialConn), which these connections are not: turn it off so that
		// it does not offer "h2" for them.
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	t.h2 = &http2.Transport{
		// x/net fills in Response.TLS from the ConnectionState of the conn
		// this returns (http2/transport.go, newClientConn).
		DialTLSContext:  t.dialHTTP2,
		IdleConnTimeout: 90 * time.Second,
	}
	return t
}

// RoundTrip sends req and returns its response, as http.Transport does.
// Response.TLS is the state of the finished handshake of the ktls connection
// that carried the request.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.h1 == nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("ktlshttp: a Transport must come from NewTransport")
	}
	if req.URL == nil || req.URL.Scheme != "https" || !t.h2ok {
		return t.roundTripHTTP1(req)
	}
	addr := authorityAddr(req.URL.Host)
	if !t.speaksHTTP1(addr) {
		// A conn to addr that picks HTTP/1.1 fails here with errHTTP1
		// before x/net touched req (http2/transport_common.go,
		// roundTripViaPool), and waits in spares for the http.Transport.
		resp, err := t.h2.RoundTrip(req)
		if !errors.Is(err, errHTTP1) {
			return resp, err
		}
	}
	resp, err := t.roundTripHTTP1(req)
	if errors.Is(err, errHTTP2) {
		// The server picked HTTP/1.1 before and HTTP/2 now. The
		// http.Transport closed req's body when its dial failed; send
		// req again over HTTP/2 if the body can be had again.
		if req2, ok := rewind(req); ok {
			return t.h2.RoundTrip(req2)
		}
	}
	return resp, err
}

// roundTripHTTP1 sends req with the http.Transport, which fills in
// Response.TLS only for a *tls.Conn (transport.go, dialConn): the conn
// it got, seen through httptrace, fills it in here.
func (t *Transport) roundTripHTTP1(req *http.Request) (*http.Response, error) {
	var mu sync.Mutex
	var got net.Conn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		got = info.Conn
		mu.Unlock()
	}}
	r := req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := t.h1.RoundTrip(r)
	if resp == nil {
		return resp, err
	}
	resp.Request = req
	mu.Lock()
	c := got
	mu.Unlock()
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok && resp.TLS == nil {
		st := cs.ConnectionState()
		resp.TLS = &st
	}
	return resp, err
}

// rewind returns req ready to be sent again, if it can be.
func rewind(req *http.Request) (*http.Request, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	r := req.Clone(req.Context())
	r.Body = body
	return r, true
}

// dialHTTP2 is the HTTP/2 transport's dialer. x/net's config (h2 first,
// then the http2.Transport's TLSClientConfig) is not used: the Transport's
// own offers both protocols, and a server that picks HTTP/1.1 costs no
// second handshake.
func (t *Transport) dialHTTP2(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
	c, err := t.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if negotiated(c) == "h2" {
		return c, nil
	}
	// Whoever takes a spare out of spares owns its conn, and closes it
	// unless it uses it: the timer, a dial, CloseIdleConnections, or the
	// next spare for addr.
	sp := &spareConn{c: c}
	t.mu.Lock()
	t.http1[addr] = true
	old := t.spares[addr]
	t.spares[addr] = sp
	sp.timer = time.AfterFunc(spareTTL, func() {
		if t.takeSpare(addr, sp) {
			c.Close()
		}
	})
	t.mu.Unlock()
	if old != nil {
		old.timer.Stop()
		old.c.Close()
	}
	return nil, errHTTP1
}

// dialHTTP1 is the HTTP/1.1 transport's dialer for "https".
func (t *Transport) dialHTTP1(ctx context.Context, network, addr string) (net.Conn, error) {
	t.mu.Lock()
	sp := t.spares[addr]
	t.mu.Unlock()
	if sp != nil && t.takeSpare(addr, sp) {
		return sp.c, nil
	}
	c, err := t.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if negotiated(c) == "h2" {
		c.Close()
		t.mu.Lock()
		delete(t.http1, addr)
		t.mu.Unlock()
		return nil, errHTTP2
	}
	return c, nil
}

// takeSpare removes sp from the spares if it is still there and its timer
// has not fired, and reports whether it did: the caller then owns sp.c.
func (t *Transport) takeSpare(addr string, sp *spareConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.spares[addr] != sp {
		return false
	}
	delete(t.spares, addr)
	return true
}

func (t *Transport) speaksHTTP1(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.http1[addr]
}

// CloseIdleConnections closes the connections that carry no request, as
// http.Transport.CloseIdleConnections; http.Client.CloseIdleConnections
// calls it.
func (t *Transport) CloseIdleConnections() {
	if t.h1 == nil {
		return
	}
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
	t.mu.Lock()
	spares := t.spares
	t.spares = make(map[string]*spareConn)
	t.mu.Unlock()
	for _, sp := range spares {
		sp.timer.Stop()
		sp.c.Close()
	}
}

func negotiated(c net.Conn) string {
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return cs.ConnectionState().NegotiatedProtocol
	}
	return ""
}

// authorityAddr is the host:port that both transports dial for an https
// URL's host: port 443 by default, an IDNA host in ASCII (net/http's
// canonicalAddr, x/net's authorityAddr).
func authorityAddr(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	if port == "" {
		port = "443"
	}
	if !isASCII(host) {
		if a, err := idna.Lookup.ToASCII(host); err == nil && a != "" {
			host = a
		}
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, port)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
