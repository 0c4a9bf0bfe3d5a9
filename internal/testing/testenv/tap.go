package testenv

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
)

// TapConn keeps a copy of every byte written and read through it.
type TapConn struct {
	net.Conn
	mu      sync.Mutex
	written []byte
	read    []byte
}

func (c *TapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read = append(c.read, p[:n]...)
	c.mu.Unlock()
	return n, err
}

// ReadBytes returns a copy of what was read so far.
func (c *TapConn) ReadBytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.read...)
}

func (c *TapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written = append(c.written, p...)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Records splits what was written into records: type and fragment.
func (c *TapConn) Records(t testing.TB) (types []byte, frags [][]byte) {
	c.mu.Lock()
	b := append([]byte(nil), c.written...)
	c.mu.Unlock()
	return SplitRecords(t, b)
}

// SplitRecords splits a byte stream into TLS records (RFC 8446, section
// 5.1): type and fragment.
func SplitRecords(t testing.TB, b []byte) (types []byte, frags [][]byte) {
	t.Helper()
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint16(b[3:]))
		if len(b) < 5+n {
			t.Fatalf("partial record of %d bytes at the end of the stream", n)
		}
		types = append(types, b[0])
		frags = append(frags, b[5:5+n])
		b = b[5+n:]
	}
	if len(b) != 0 {
		t.Fatalf("%d stray bytes at the end of the stream", len(b))
	}
	return types, frags
}
