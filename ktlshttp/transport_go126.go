//go:build !go1.27

package ktlshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/idna"
)

// h2Transport speaks HTTP/2 on Go 1.26, whose http.Transport speaks it
// only on a concrete *tls.Conn (net/http/transport.go, (*Transport).dialConn):
// x/net's transport, which fills in Response.TLS from the ConnectionState
// of any conn (http2/transport.go, newClientConn).
type h2Transport struct {
	t *http2.Transport

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

func (t *Transport) initHTTP2() {
	t.h1.DialTLSContext = t.dialHTTP1
	// net/http's own HTTP/2 runs only on a *tls.Conn (transport.go,
	// dialConn), which these connections are not: turn it off so that it
	// does not offer "h2" for them.
	t.h1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.h2 = h2Transport{
		t: &http2.Transport{
			// x/net fills in Response.TLS from the ConnectionState of
			// the conn this returns (http2/transport.go, newClientConn).
			DialTLSContext:  t.dialHTTP2,
			IdleConnTimeout: 90 * time.Second,
		},
		http1:  make(map[string]bool),
		spares: make(map[string]*spareConn),
	}
}

// roundTrip sends req over HTTP/2 when the server picks "h2", and otherwise
// over HTTP/1.1.
func (t *Transport) roundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "https" || !t.h2ok {
		return t.roundTripHTTP1(req)
	}
	addr := authorityAddr(req.URL.Host)
	if !t.speaksHTTP1(addr) {
		// A conn to addr that picks HTTP/1.1 fails here with errHTTP1
		// before x/net touched req (http2/transport_common.go,
		// roundTripViaPool), and waits in spares for the http.Transport.
		resp, err := t.h2.t.RoundTrip(req)
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
			return t.h2.t.RoundTrip(req2)
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
	t.h2.mu.Lock()
	t.h2.http1[addr] = true
	old := t.h2.spares[addr]
	t.h2.spares[addr] = sp
	sp.timer = time.AfterFunc(spareTTL, func() {
		if t.takeSpare(addr, sp) {
			c.Close()
		}
	})
	t.h2.mu.Unlock()
	if old != nil {
		old.timer.Stop()
		old.c.Close()
	}
	return nil, errHTTP1
}

// dialHTTP1 is the HTTP/1.1 transport's dialer for "https".
func (t *Transport) dialHTTP1(ctx context.Context, network, addr string) (net.Conn, error) {
	t.h2.mu.Lock()
	sp := t.h2.spares[addr]
	t.h2.mu.Unlock()
	if sp != nil && t.takeSpare(addr, sp) {
		return sp.c, nil
	}
	c, err := t.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if negotiated(c) == "h2" {
		c.Close()
		t.h2.mu.Lock()
		delete(t.h2.http1, addr)
		t.h2.mu.Unlock()
		return nil, errHTTP2
	}
	return c, nil
}

// takeSpare removes sp from the spares if it is still there and its timer
// has not fired, and reports whether it did: the caller then owns sp.c.
func (t *Transport) takeSpare(addr string, sp *spareConn) bool {
	t.h2.mu.Lock()
	defer t.h2.mu.Unlock()
	if t.h2.spares[addr] != sp {
		return false
	}
	delete(t.h2.spares, addr)
	return true
}

func (t *Transport) speaksHTTP1(addr string) bool {
	t.h2.mu.Lock()
	defer t.h2.mu.Unlock()
	return t.h2.http1[addr]
}

// closeIdleHTTP2 closes x/net's idle connections and the spare ones.
func (t *Transport) closeIdleHTTP2() {
	t.h2.t.CloseIdleConnections()
	t.h2.mu.Lock()
	spares := t.h2.spares
	t.h2.spares = make(map[string]*spareConn)
	t.h2.mu.Unlock()
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
