//go:build unix

package recordlayer

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/ktls-go/ktls/internal/record"
)

// rawConnOf returns the RawConn of a link that is a socket of package net
// itself, whose Read is the socket's and holds nothing; nil for anything
// else (a wrapper may buffer bytes of its own, and its Read is the only
// way to them).
func rawConnOf(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawRead is the function the opener passes to RawConn.Read: one read(2)
// into buf[w:], as the socket's Read does (internal/poll's FD.Read), except
// that when the socket has nothing yet and nothing is pending, the buffer
// goes back to its pool before the goroutine parks on the netpoller, and a
// buffer is taken again once the socket is readable. An idle connection
// with a Read pending, as a server's keep-alive connection, so holds no
// read buffer (issue 18; crypto/tls's own rawInput is a bytes.Buffer of a
// few hundred bytes there). In the steady state, when the socket has bytes,
// no buffer moves.
//
// A half with no buffer that has not waited yet in this call (a new one,
// or one whose last call timed out while it waited) peeks first, with
// recv(MSG_PEEK) of a record header into a field: an idle connection then
// takes no buffer at all, and one whose first record is small takes a tiny
// one; after a wait the netpoller has said the socket is readable, so the
// buffer is taken without a peek.
func (o *opener) rawRead(fd uintptr) bool {
	for o.buf == nil && !o.waited {
		m, _, err := syscall.Recvfrom(int(fd), o.peek[:], syscall.MSG_PEEK)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			o.waited = true
			return false
		case err != nil:
			// A socket error is reported to one call only
			// (sock_error): this one. Passed on as the read's,
			// so that conn sees ECONNRESET.
			o.rerr = o.readErr(err)
			return true
		}
		// Bytes, or EOF: the read below says which. A whole header
		// whose record fits takes a tiny buffer (tinyReadBuf).
		o.tiny = !o.big && m == len(o.peek) && record.HeaderLen+(int(o.peek[3])<<8|int(o.peek[4])) <= tinyReadBuf
		break
	}
	if o.buf == nil {
		o.getBufLocked()
	}
	for {
		n, err := syscall.Read(int(fd), o.buf[o.w:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if o.r == o.w {
				o.putBufLocked()
			}
			o.waited = true
			return false
		case err != nil:
			o.rerr = o.readErr(err)
		case n == 0:
			o.rerr = io.EOF
		default:
			o.rn = n
		}
		return true
	}
}

// readErr is err as the socket's Read reports it (package net's fd.Read).
func (o *opener) readErr(err error) error {
	return &net.OpError{Op: "read", Net: o.conn.LocalAddr().Network(), Source: o.conn.LocalAddr(), Addr: o.conn.RemoteAddr(), Err: os.NewSyscallError("read", err)}
}
