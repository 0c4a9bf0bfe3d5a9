//go:build go1.27

package ktlshttp_test

// stdlibServesKTLS says whether net/http itself speaks HTTP/2 over a
// *ktls.Conn and fills in Request.TLS and Response.TLS: from Go 1.27, for
// any conn with ConnectionState and HandshakeContext (net/http/server.go,
// (*conn).serve, and transport.go, (*Transport).dialConn).
const stdlibServesKTLS = true
