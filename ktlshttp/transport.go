package ktlshttp

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/ktls-go/ktls"
)

// Transport is an http.RoundTripper that makes HTTPS requests over ktls
// connections: HTTP/2 where the server picks "h2" by ALPN, HTTP/1.1
// otherwise, with Response.TLS filled in for both. Plain "http" requests go
// through an http.Transport as they are. It keeps connections for reuse, as
// http.Transport does; it is safe for concurrent use.
//
// On Go 1.27 and later it is an http.Transport whose DialTLSContext dials
// with ktls: net/http then speaks HTTP/2 over the conn when it negotiated
// "h2" and fills in Response.TLS from its ConnectionState
// (net/http/transport.go, (*Transport).dialConn). On Go 1.26, whose
// http.Transport does neither for a conn that is not a *tls.Conn, it
// speaks HTTP/2 through golang.org/x/net/http2 and HTTP/1.1 through an
// http.Transport, and fills in Response.TLS itself.
//
// A Transport dials servers directly: it does not use proxies. Make one
// with NewTransport; the zero Transport is not usable.
type Transport struct {
	dialer ktls.Dialer
	h2ok   bool            // the config offers "h2"
	h1     *http.Transport // every request on Go 1.27; HTTP/1 ones on Go 1.26
	h2     h2Transport     // per Go version: transport_go126.go, transport_go127.go
}

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
	}
	t.h1 = &http.Transport{
		DialContext:           nd.DialContext,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	t.initHTTP2()
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
	return t.roundTrip(req)
}

// CloseIdleConnections closes the connections that carry no request, as
// http.Transport.CloseIdleConnections; http.Client.CloseIdleConnections
// calls it.
func (t *Transport) CloseIdleConnections() {
	if t.h1 == nil {
		return
	}
	t.h1.CloseIdleConnections()
	t.closeIdleHTTP2()
}
