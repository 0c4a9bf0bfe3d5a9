// Package interop holds the tests of ktls against real peers: stock
// crypto/tls, OpenSSL's s_server and s_client, GnuTLS's gnutls-serv and
// gnutls-cli, and curl, in both roles, through the public API
// (docs/ARCHITECTURE.md, "Test layers", layer 3). It has no code of its own.
//
// The tests that need a peer program skip where it is not installed; the
// VM harness (internal/testing/vmtest) brings the peers into its guests, where the
// tests that also need kTLS or AF_ALG must run.
package interop
