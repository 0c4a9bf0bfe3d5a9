package conn

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"syscall"

	"github.com/ktls-go/ktls/backend"
)

// spliceFromChunk bounds one SpliceFrom call, so that a TLS 1.3 key that is
// about to wear out is updated between calls (RFC 8446 §5.5), as
// sendFileChunk does for sendfile. A socket, unlike a file, may deliver its
// bytes a few at a time, and kTLS then seals small records, down to one byte
// each; so the bound is in bytes of the worst case: 4 MiB is at most 2^22
// records (and one left open by an earlier call), inside the margin between
// defaultKeyUpdateAfter (2^24) and the limit (2^24.5). Each call is also cut
// to the full records the key has left, so that a stream of full records
// updates its key at the same count as Write.
const spliceFromChunk = 4 << 20

// spliceSrc is what ReadFrom can hand a SocketSender: the source socket,
// how much to move (-1: to the end of the stream), and the reader to tell
// what was consumed.
type spliceSrc struct {
	conn net.Conn // the *net.TCPConn or *net.UnixConn, for its errors' addresses
	rc   syscall.RawConn
	n    int64
	lr   *io.LimitedReader
}

// spliceSourceOf unwraps r into a socket the kernel can splice from: a
// *net.TCPConn or *net.UnixConn, an *io.LimitedReader of one, or a wrapper
// that holds nothing but one of them, as the standard library's own splice
// takes (net/splice_linux.go).
//
// A wrapper matters because io.Copy(conn, tcpConn) calls tcpConn.WriteTo
// first, which, where it cannot splice itself, hands conn.ReadFrom
// net's tcpConnWithoutWriteTo (net/net.go, genericWriteTo): a struct of an
// embedded *TCPConn and a zero-size noWriteTo. Without it no io.Copy from a
// socket would reach this path. The rule, in general: a struct whose only
// field of non-zero size is one embedded, non-nil *net.TCPConn or
// *net.UnixConn holds no state of its own, so no buffered bytes, and
// splicing from the socket reads exactly what its Read would. Its Read must
// also be the socket's own: an unnamed struct type cannot declare methods,
// and another Read promoted from a zero-size field at the same depth would
// leave the struct without one (ambiguous), so only named types may differ,
// and of those only package net's own are taken. A named type elsewhere may
// declare a Read that counts, logs or transforms, and is copied.
func spliceSourceOf(r io.Reader) (spliceSrc, bool) {
	src := spliceSrc{n: -1}
	if lr, ok := r.(*io.LimitedReader); ok {
		if lr.N <= 0 {
			return spliceSrc{}, false
		}
		src.lr, src.n, r = lr, lr.N, lr.R
	}
	var sc interface {
		net.Conn
		syscall.Conn
	}
	switch v := r.(type) {
	case *net.TCPConn:
		sc = v
	case *net.UnixConn:
		sc = v
	default:
		c, ok := embeddedSocket(r)
		if !ok {
			return spliceSrc{}, false
		}
		sc = c
	}
	if reflect.ValueOf(sc).IsNil() {
		return spliceSrc{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return spliceSrc{}, false
	}
	src.conn, src.rc = sc, rc
	return src, true
}

var (
	tcpConnType  = reflect.TypeFor[*net.TCPConn]()
	unixConnType = reflect.TypeFor[*net.UnixConn]()
)

// embeddedSocket returns the socket of a wrapper that holds nothing else
// (see spliceSourceOf for the rule and why).
func embeddedSocket(r io.Reader) (interface {
	net.Conn
	syscall.Conn
}, bool) {
	v := reflect.ValueOf(r)
	t := v.Type()
	if t.Kind() != reflect.Struct || (t.Name() != "" && t.PkgPath() != "net") {
		return nil, false
	}
	var found reflect.Value
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Size() == 0 {
			continue
		}
		if found.IsValid() || !f.Anonymous || (f.Type != tcpConnType && f.Type != unixConnType) {
			return nil, false
		}
		found = v.Field(i)
	}
	if !found.IsValid() || found.IsNil() || !found.CanInterface() {
		return nil, false
	}
	switch c := found.Interface().(type) {
	case *net.TCPConn:
		return c, true
	case *net.UnixConn:
		return c, true
	}
	return nil, false
}

// spliceFrom sends r through ss if r is a socket it can splice from;
// handled false means the engine cannot splice from r, and the caller
// copies the rest; n is what was sent before (none, but for a pipe(2) that
// failed after earlier calls succeeded).
//
// out.mu is held only while bytes move, never while the source is silent:
// the copy path holds it only inside Write, and a Read must be able to take
// it meanwhile, to answer a KeyUpdate with update_requested or send an
// alert (handshakeMessageLocked, rxFailLocked). A proxy copying each way in
// its own goroutine would otherwise deadlock. So the source is waited for
// first (waitReadable), and SpliceFrom returns once it is empty again.
//
// Nothing read from r is lost while the connection can still send: bytes
// the TLS socket did not take when its write deadline passed stay with the
// half (backend.SocketSender's held), which sends them first on the next
// Write, ReadFrom or close_notify. They count in n, as bytes a Write handed
// the kernel's socket buffer do, and as records under the current key now.
// Such a timeout does not break the direction, unlike Write's (crypto/tls's
// rule, TestWriteTimeoutParity): there a record may be half written, while
// here the kernel took whole bytes or none and holds any record it had not
// finished, and the pipe's rest is back in memory. Any other failure of the
// TLS socket (a reset, a close) ends the direction as on every path; then n
// counts only the bytes the socket took, and what was left in the pipe is
// gone with a connection that can send nothing more anyway.
//
// A timeout or error reading r ends the call with that error and leaves the
// direction as it was: every byte read before it was sent. The end of r is
// the end of the copy, n and nil, as io.Copy.
func (c *Conn) spliceFrom(ss backend.SocketSender, r io.Reader) (n int64, handled bool, err error) {
	src, ok := spliceSourceOf(r)
	if !ok {
		return 0, false, nil
	}
	for src.n != 0 {
		if err := c.txUsable(); err != nil {
			return n, true, err
		}
		if err := waitReadable(src.rc); err != nil {
			return n, true, sourceError(src.conn, err)
		}
		m, done, handled, err := c.spliceChunk(ss, &src)
		n += m
		if !handled {
			// The first call found src unfit, or a later one could not
			// make its pipe (EMFILE): the caller copies the rest.
			return n, false, nil
		}
		if err != nil || done {
			return n, true, err
		}
	}
	return n, true, nil
}

// txUsable says, under out.mu, whether TX can still send.
func (c *Conn) txUsable() error {
	c.out.mu.Lock()
	defer c.unlockOut()
	if c.out.err != nil {
		return c.out.err
	}
	if c.out.closeNotifySent {
		return errShutdown
	}
	return nil
}

// spliceChunk is one SpliceFrom call under out.mu, for what the source has
// now, within one chunk (spliceFromChunk). done is the source's end.
func (c *Conn) spliceChunk(ss backend.SocketSender, src *spliceSrc) (n int64, done, handled bool, err error) {
	c.out.mu.Lock()
	defer c.unlockOut()
	if c.out.err != nil {
		return 0, true, true, c.out.err
	}
	if c.out.closeNotifySent {
		return 0, true, true, errShutdown
	}
	left, err := c.beforeDataLocked()
	if err != nil {
		return 0, true, true, err
	}
	want := int64(spliceFromChunk)
	if left < uint64(want/backend.MaxPlaintext) {
		want = max(int64(left), 1) * backend.MaxPlaintext
	}
	if src.n > 0 {
		want = min(want, src.n)
	}
	sent, held, records, readErr, writeErr := ss.SpliceFrom(src.rc, want)
	if writeErr != nil && sent == 0 && held == 0 && errors.Is(writeErr, backend.ErrNotSupported) {
		// src cannot be spliced from (not a stream socket), or no pipe:
		// nothing was read in this call.
		return 0, true, false, nil
	}
	taken := sent + int64(held)
	if src.lr != nil {
		src.lr.N -= taken
	}
	if src.n > 0 {
		src.n -= taken
	}
	n = sent
	c.out.records += records
	if writeErr != nil {
		if errors.Is(writeErr, os.ErrDeadlineExceeded) && c.peerReset.Load() == nil {
			n += int64(held)
			c.out.records += uint64((held + backend.MaxPlaintext - 1) / backend.MaxPlaintext)
			return n, true, true, writeErr
		}
		return n, true, true, c.out.setErrorLocked(c.resetOr(writeErr))
	}
	if readErr == io.EOF {
		return n, true, true, nil
	}
	if readErr != nil {
		return n, true, true, sourceError(src.conn, readErr)
	}
	return n, src.n == 0, true, nil
}

// sourceError gives a failed splice from the source, or a failed wait for
// it, the shape of the source's own Read error: a *net.OpError with its
// addresses, whose Op is "read" (a RawConn's own says "raw-read").
func sourceError(src net.Conn, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		e := *oe
		e.Op = "read"
		return &e
	}
	var se *os.SyscallError
	if !errors.As(err, &se) {
		return err
	}
	network := "tcp"
	if _, ok := src.(*net.UnixConn); ok {
		network = "unix"
	}
	return &net.OpError{Op: "read", Net: network, Source: src.LocalAddr(), Addr: src.RemoteAddr(), Err: err}
}
