//go:build !go1.27

package ktlshttp

import (
	"context"
	"net"
	"net/http"

	"golang.org/x/net/http2"
)

// h2Server serves "h2" on Go 1.26, whose net/http speaks HTTP/2 only on a
// concrete *tls.Conn (net/http/server.go, (*conn).serve): x/net's server,
// which takes the TLS state from any conn with a ConnectionState method.
type h2Server struct {
	srv *http2.Server
	ctl *http.Server // whose Shutdown sends srv's connections a GOAWAY
}

func (s *Server) initHTTP2() {
	// As http2.ConfigureServer does for its own server.
	idle := s.IdleTimeout
	if idle == 0 {
		idle = s.ReadTimeout
	}
	s.h2.srv = &http2.Server{IdleTimeout: idle}
	// http2.ConfigureServer registers h2's graceful shutdown of every
	// connection it serves as an OnShutdown hook of the server it is
	// given. Giving it a server of our own, with no listener and no
	// connection, lets the Server send the GOAWAYs whenever it needs to
	// and leaves the user's http.Server untouched. It fails only on a
	// TLSConfig, which ctl has not.
	s.h2.ctl = &http.Server{}
	if err := http2.ConfigureServer(s.h2.ctl, s.h2.srv); err != nil {
		s.logf("ktlshttp: configuring HTTP/2: %v", err)
	}
}

// http2Context is the base context of the HTTP/2 connections served on l,
// as net/http makes it for its own (server.go, (*Server).Serve).
func (s *Server) http2Context(l net.Listener) context.Context {
	base := context.Background()
	if s.BaseContext != nil {
		if base = s.BaseContext(l); base == nil {
			panic("ktlshttp: BaseContext returned a nil context") // as net/http
		}
	}
	return context.WithValue(base, http.ServerContextKey, s.Server)
}

// serveHTTP2 serves c with HTTP/2 until it ends, and reports true: c is
// done with. net/http gives its user's ConnState a StateNew before and a
// StateClosed after the HTTP/2 server's own StateActive and StateIdle, and
// so does serveHTTP2.
func (s *Server) serveHTTP2(c net.Conn, base context.Context) bool {
	if s.stopCtx.Err() != nil {
		c.Close()
		return true
	}
	ctx := base
	if cc := s.ConnContext; cc != nil {
		if ctx = cc(ctx, c); ctx == nil {
			panic("ktlshttp: ConnContext returned nil") // as net/http
		}
	}
	s.connState(c, http.StateNew)
	// x/net's ServeConn takes Request.TLS from c's ConnectionState
	// (http2/server.go, serveConn), and closes c when it returns.
	s.h2.srv.ServeConn(c, &http2.ServeConnOpts{Context: ctx, BaseConfig: s.Server})
	s.connState(c, http.StateClosed)
	return true
}

// goAway starts x/net's graceful shutdown of every HTTP/2 connection it
// serves: a GOAWAY, then the end of the connection once its streams are
// done (http2/server.go, startGracefulShutdown). Each connection gets it
// once, however often goAway runs.
func (s *Server) goAway() {
	s.h2.ctl.Shutdown(context.Background())
}
