// Package ktlshttp serves and fetches HTTP/1.1 and HTTP/2 over ktls
// connections, with Request.TLS and Response.TLS filled in with the state of
// the finished handshake.
//
// What it is for depends on the Go version.
//
// On Go 1.26, net/http runs the TLS handshake, fills in Request.TLS and
// speaks HTTP/2 only for a concrete *tls.Conn (net/http/server.go,
// (*conn).serve, and transport.go, (*Transport).dialConn). For any other
// conn, such as a *ktls.Conn, its server reads ConnectionState before the
// handshake has run, so Request.TLS says HandshakeComplete: false with no
// version, suite or protocol; its client leaves Response.TLS nil; and
// neither side ever negotiates HTTP/2. This package puts the handshake
// first and routes each connection by its ALPN protocol, serving and
// fetching "h2" with golang.org/x/net/http2.
//
// On Go 1.27, net/http does all of that itself for any conn with
// ConnectionState and HandshakeContext methods, which *ktls.Conn has: its
// server runs the handshake, fills in Request.TLS and serves "h2" with its
// own HTTP/2 (server.go, (*conn).serve), and its Transport does the same
// for a conn from DialTLSContext (transport.go, (*Transport).dialConn). So
// http.Server.Serve(ktls.NewListener(l, config)) and
// http.Transport{DialTLSContext: (&ktls.Dialer{...}).DialContext} work as
// they are, and this package is a thin layer over them, kept so that the
// same program builds on both versions. golang.org/x/net/http2 is not used
// there: on Go 1.27 its Server and Transport are wrappers over net/http's
// (unless built with -tags http2legacy), and its Server's connection
// tracking no longer reaches the connections.
//
//   - [Server] wraps an *http.Server. It accepts, runs each handshake in its
//     own goroutine (so a slow client never holds up Accept, and Shutdown
//     never waits for a handshake), then hands the connection to the
//     http.Server, whose Request.TLS is then complete and whose ConnContext
//     and ConnState see the *ktls.Conn with its engines chosen. On Go 1.26
//     it serves "h2" connections with x/net itself. Its Shutdown and Close
//     cover both kinds of connection, and send HTTP/2 connections a GOAWAY.
//   - [Transport] is an http.RoundTripper that dials with ktls, offers "h2"
//     and "http/1.1" by ALPN, and fills in Response.TLS for both: on Go 1.27
//     an http.Transport with a ktls DialTLSContext; on Go 1.26 x/net for
//     HTTP/2 and an http.Transport for HTTP/1.1.
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
