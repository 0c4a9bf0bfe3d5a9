//go:build !go1.27

package ktlshttp_test

// stdlibServesKTLS says whether net/http itself speaks HTTP/2 over a
// *ktls.Conn and fills in Request.TLS and Response.TLS: not before Go 1.27
// (net/http/server.go, (*conn).serve, and transport.go, dialConn, handle
// only a *tls.Conn there).
const stdlibServesKTLS = false
