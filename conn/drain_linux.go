//go:build linux

package conn

import (
	"cmp"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/rawio"
	"github.com/ktls-go/ktls/internal/record"
)

// tcpEstablished is TCP_ESTABLISHED of include/net/tcp_states.h, as
// TCP_INFO's tcpi_state reports it.
const tcpEstablished = 1

// newPeeker returns a function that waits until the socket under c holds a
// whole TLS record and copies it into b without consuming it (recv with
// MSG_PEEK), or nil when c is not a socket. The TLS 1.3 client's ticket
// drain uses it to look at the first record after the handshake while
// leaving it in the socket, so that the kernel engine, which reads the
// socket itself, can still take RX at that record (backend.Link.Buffered
// must be empty for it).
//
// It returns the record's length; n > len(b) when the header announces a
// record longer than b, of which b holds the start; io.ErrUnexpectedEOF when
// the peer closed with part of a record sent; io.EOF when it closed at a
// record boundary.
func newPeeker(c net.Conn) func(b []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(b []byte) (int, error) {
		_, want, err := peekRecords(rc, b)
		return want, err
	}
}

// newHandshakePeeker returns peekRecords on the socket of c, for
// recordConn's reads during the handshake, or nil where c is not a TCP
// socket itself: a conn that wraps one may hold bytes the socket no longer
// has (wrapped.go), so only *net.TCPConn, whose reads are the socket's, is
// peeked.
func newHandshakePeeker(c net.Conn) func(b []byte) (n, first int, err error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(b []byte) (int, int, error) { return peekRecords(rc, b) }
}

// plausibleHeader reports whether b starts like a TLS record: a content type
// that TLS 1.2 or 1.3 sends (RFC 8446 §5.1: change_cipher_spec 20, alert 21,
// handshake 22, application_data 23) and a major version of 3.
func plausibleHeader(b []byte) bool {
	return b[0] >= 20 && b[0] <= 23 && b[1] == 3
}

// peekRecords waits until the socket holds a whole TLS record, or the start
// of one longer than b, or a header that is no TLS record's (plausibleHeader), and copies what the socket holds, up to len(b), into
// b without consuming it (recv with MSG_PEEK). It returns how many bytes it
// copied, n, and the first record's length, first (header included), which
// is more than n only when the record is longer than b. The error is
// io.ErrUnexpectedEOF when the peer closed with part of a record sent, and
// io.EOF when it closed at a record boundary.
func peekRecords(rc syscall.RawConn, b []byte) (n, first int, err error) {
	err = cmp.Or(rawio.Read(rc, func(fd int) error {
		var err error
		n, _, err = unix.Recvfrom(fd, b, unix.MSG_PEEK)
		if err != nil || n == 0 {
			return err
		}
		if n >= record.HeaderLen {
			first = record.HeaderLen + recordLen(b)
			if n >= first || first > len(b) || !plausibleHeader(b) {
				// A header that is no TLS record's (plain HTTP
				// to a TLS port, say) is crypto/tls's to refuse
				// at once, from the header alone, as it would
				// without a peek: waiting for the body its bytes
				// seem to announce would leave the peer waiting
				// for the refusal.
				return nil
			}
		}
		// Part of a record. The netpoller is edge-triggered, so more
		// data wakes this up again; a FIN that already came would
		// not, so ask TCP whether the peer is done sending.
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil && info.State != tcpEstablished {
			return io.ErrUnexpectedEOF
		}
		return syscall.EAGAIN // wait for the rest
	}))
	switch {
	case err != nil:
		return 0, 0, err
	case n == 0:
		return 0, 0, io.EOF
	}
	return n, first, nil
}
