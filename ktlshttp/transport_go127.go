//go:build go1.27

package ktlshttp

import (
	"net/http"
)

// h2Transport is empty on Go 1.27: the http.Transport speaks HTTP/2 itself
// over a conn from DialTLSContext that negotiated "h2" (net/http/transport.go,
// (*Transport).dialConn, which runs HandshakeContext and keeps
// ConnectionState for any conn that has them), and fills in Response.TLS
// from that state for both protocols (transport.go, (*persistConn).readResponse;
// internal/http2/transport.go, newClientConn). golang.org/x/net/http2 is not
// used, so -tags http2legacy changes nothing here.
type h2Transport struct{}

func (t *Transport) initHTTP2() {
	t.h1.DialTLSContext = t.dialer.DialContext
	// With a custom dialer net/http offers HTTP/2 only if asked to
	// (transport.go, (*Transport).protocols): ask for what the config
	// offers.
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(t.h2ok)
	t.h1.Protocols = p
}

func (t *Transport) roundTrip(req *http.Request) (*http.Response, error) {
	return t.h1.RoundTrip(req)
}

// closeIdleHTTP2 does nothing: the http.Transport closes its HTTP/2
// connections in its CloseIdleConnections.
func (t *Transport) closeIdleHTTP2() {}
