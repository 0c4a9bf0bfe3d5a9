// Package ktlshttp serves and fetches HTTP/1.1 and HTTP/2 over ktls
// connections, with Request.TLS and Response.TLS filled in with the state of
// the finished handshake.
//
// net/http runs the TLS handshake, fills in Request.TLS and speaks HTTP/2
// only for a concrete *tls.Conn (net/http/server.go, (*conn).serve, and
// transport.go, (*Transport).dialConn, in Go 1.26). For any other conn, such
// as a *ktls.Conn, its server reads ConnectionState before the handshake has
// run, so Request.TLS says HandshakeComplete: false with no version, suite
// or protocol; its client leaves Response.TLS nil; and neither side ever
// negotiates HTTP/2. This package puts the handshake first and routes each connection
// by its ALPN protocol:
//
//   - [Server] wraps an *http.Server. It accepts, runs each handshake in its
//     own goroutine (so a slow client never holds up Accept), then hands
//     HTTP/1.1 connections to the http.Server, whose Request.TLS is then
//     complete, and serves "h2" connections with golang.org/x/net/http2,
//     which takes the TLS state from any conn with a ConnectionState method.
//     Its Shutdown and Close cover both kinds of connection.
//   - [Transport] is an http.RoundTripper that dials with ktls, offers "h2"
//     and "http/1.1" by ALPN, speaks HTTP/2 through golang.org/x/net/http2
//     and HTTP/1.1 through an http.Transport, and fills in Response.TLS for
//     both.
//
// The engines a connection got are on the *ktls.Conn: on the server side,
// http.Server's ConnContext and ConnState receive it, after its handshake;
// on the client side, httptrace.GotConnInfo.Conn is it.
//
// With the kernel engine, HTTP/1.1 responses that net/http copies from a
// file (http.FileServer, http.ServeContent of an *os.File) go out through
// sendfile(2), as ktls.Conn.ReadFrom does. HTTP/2 frames its DATA itself
// and writes them through the conn, so their bytes pass through the process,
// sealed by the same engine.
package ktlshttp
