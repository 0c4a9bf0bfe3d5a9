//go:build go1.27

package ktlshttp

import (
	"context"
	"net"
	"slices"
)

// h2Server is empty on Go 1.27: the http.Server serves "h2" itself. Its
// (*conn).serve runs the HTTP/2 server for any conn with ConnectionState
// and HandshakeContext methods that negotiated "h2" (net/http/server.go),
// takes Request.TLS from ConnectionState, and tracks the connection as one
// of its own, so that its Shutdown sends it a GOAWAY (the OnShutdown hook
// that http2.go, configureHTTP2, registers) and waits for it, and its Close
// closes it. golang.org/x/net/http2 is not used: on Go 1.27 its Server is a
// wrapper over net/http's (x/net http2/server_wrap.go) unless built with
// -tags http2legacy, and either way net/http's own is what serves.
type h2Server struct{}

// initHTTP2 makes sure net/http's Serve sets up its HTTP/2, which it does
// for a nil TLSConfig or one that offers "h2" (net/http/server.go,
// shouldConfigureHTTP2ForServe). The listeners' configs decide what is
// negotiated; the http.Server's TLSConfig is only checked there (and its
// cipher suites in (*http2.Server).Configure), so a clone that offers "h2"
// changes nothing else.
func (s *Server) initHTTP2() {
	if c := s.Server.TLSConfig; s.http2 && c != nil && !slices.Contains(c.NextProtos, "h2") {
		c = c.Clone()
		c.NextProtos = append(slices.Clip(c.NextProtos), "h2")
		s.Server.TLSConfig = c
	}
}

// http2Context returns nil: net/http makes the HTTP/2 connections' contexts.
func (s *Server) http2Context(net.Listener) context.Context { return nil }

// serveHTTP2 reports false: c goes to the http.Server, as HTTP/1 ones do.
func (s *Server) serveHTTP2(net.Conn, context.Context) bool { return false }

// goAway does nothing: http.Server.Shutdown sends the GOAWAYs.
func (s *Server) goAway() {}
