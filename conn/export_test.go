package conn

import "bytes"

// Hooks for the external tests (package conn_test), which drive a Conn
// through the public API and cannot reach inside it otherwise.

// SetKeyUpdateAfter lowers how many records a TLS 1.3 sending key seals
// before the connection updates it (RFC 8446 §5.5), so that a test can force
// KeyUpdates in the middle of a transfer of a few MiB.
func SetKeyUpdateAfter(c *Conn, records uint64) {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	c.out.keyUpdateAfter = records
}

// TXSecret returns a copy of the current TLS 1.3 sending traffic secret,
// which changes with every KeyUpdate the connection sends.
func TXSecret(c *Conn) []byte {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return bytes.Clone(c.out.keys.secret)
}
