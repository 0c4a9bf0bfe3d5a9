//go:build !linux

package conn

import "net"

// newPeeker returns nil: only the Linux kernel engine needs the drain to
// leave records in the socket.
func newPeeker(net.Conn) func(b []byte) (int, error) { return nil }

// newHandshakePeeker returns nil: recordConn reads each record's header and
// body from the socket, as everywhere a socket cannot be peeked.
func newHandshakePeeker(net.Conn) func(b []byte) (n, first int, err error) { return nil }
