package conn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/selector"
)

// Conns that arrive wrapped (docs/ARCHITECTURE.md, "Conns that arrive
// wrapped"). A server often gets its conn from a PROXY-protocol reader or a
// multiplexer that wraps the accepted *net.TCPConn. The engines that read
// and write the socket themselves (kernel, nic) may take such a conn only
// when ktls proves that nothing of the stream is held above the socket:
// what they read would otherwise skip bytes the wrapper holds, and what
// they write would overtake bytes the wrapper has not sent yet. Every
// other engine reads and writes through the wrapper, so nothing is lost
// there; a direction that cannot be proven stays with them, and the
// reason names the wrapper.

// maxUnwrap bounds the chain of NetConn and Raw methods followed down to the
// socket: a chain longer than that is more likely a cycle than a design.
const maxUnwrap = 16

// maxHeld bounds what the probe reads from a wrapper that keeps returning
// bytes without touching the socket. Every byte read is kept (it goes to the
// user-space engine first); past this the wrapper is beyond proof.
const maxHeld = 4 << 20

// socketEngine reports whether engine reads and writes the socket itself
// rather than through the conn (docs/ARCHITECTURE.md, Engines).
func socketEngine(engine string) bool {
	return engine == backend.Kernel || engine == backend.NIC
}

// wrapState is what the handoff learns about a conn that is not itself a
// *net.TCPConn, kept in recordConn for the TLS 1.3 client's RX, which is
// installed after the ticket drain.
type wrapState struct {
	raw  net.Conn // the conn the connection was made over
	sock net.Conn // the TCP socket under it, found by socketUnder
	rc   syscall.RawConn
	// txSame says that the socket's count of bytes written equals what
	// crypto/tls wrote through the wrapper: the wrapper neither holds nor
	// adds nor transforms writes, as far as lengths tell. txWhy is why
	// not, when it is false.
	txChecked bool
	txSame    bool
	txWhy     string
	// late says that RX is decided after the handshake, at the end of the
	// TLS 1.3 client's ticket drain, in a Read: the program's read
	// deadline is in force then and must not be touched, so the read
	// deadline was checked at the handoff (rdWhy) and the wrapper is not
	// probed.
	late  bool
	rdWhy string
}

// decideRXLater runs, at the handoff, what RX's decision after the ticket
// drain needs and may not do then. wn is what crypto/tls wrote through the
// wrapper.
func (w *wrapState) decideRXLater(wn uint64) {
	w.checkWrites(wn)
	w.rdWhy = w.deadlineReaches(true)
	w.late = true
}

// readDeadlineReaches is deadlineReaches(true), or what the handoff found
// for a late RX.
func (w *wrapState) readDeadlineReaches() string {
	if w.late {
		return w.rdWhy
	}
	return w.deadlineReaches(true)
}

// socketUnder returns the TCP socket under c, following NetConn() net.Conn
// (as crypto/tls.Conn has) and Raw() net.Conn (as the PROXY-protocol
// library github.com/pires/go-proxyproto's Conn has): a *net.TCPConn, or a
// syscall.Conn whose descriptor is a TCP socket. It returns nil when there
// is none. It never looks under a TLS conn: its NetConn carries records,
// not the bytes read from it.
func socketUnder(c net.Conn) net.Conn {
	for range maxUnwrap {
		switch c.(type) {
		case nil:
			return nil
		case *net.TCPConn:
			return c
		case *tls.Conn, *Conn:
			return nil
		}
		if isTCPSocket(c) {
			return c
		}
		switch u := c.(type) {
		case interface{ NetConn() net.Conn }:
			c = u.NetConn()
		case interface{ Raw() net.Conn }:
			c = u.Raw()
		default:
			return nil
		}
	}
	return nil
}

// newWrapState returns the facts of raw, or nil when raw is a *net.TCPConn
// (nothing to prove) or has no TCP socket under it (the socket engines
// refuse it themselves, as they always did).
func newWrapState(raw net.Conn) *wrapState {
	if _, ok := raw.(*net.TCPConn); ok {
		return nil
	}
	s := socketUnder(raw)
	if s == nil {
		return nil
	}
	w := &wrapState{raw: raw, sock: s}
	sc, ok := s.(syscall.Conn)
	if !ok {
		// Not reached: socketUnder returns syscall.Conns only.
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w.rc = rc
	return w
}

// checkWrites compares the bytes the socket has taken from the process with
// n, those crypto/tls wrote through the wrapper, once, and remembers the
// answer in txSame and txWhy.
func (w *wrapState) checkWrites(n uint64) {
	if w.txChecked {
		return
	}
	w.txChecked = true
	written, why := socketWritten(w.rc)
	switch {
	case why != "":
		w.txWhy = why
	case written != n:
		w.txWhy = fmt.Sprintf("the socket under %T took %d bytes from the process, crypto/tls wrote %d through it: it holds or adds writes", w.raw, written, n)
	default:
		w.txSame = true
	}
}

// txSocket returns the conn a socket engine may take TX on, or "" and why
// not. n is what crypto/tls wrote through the wrapper.
func (w *wrapState) txSocket(n uint64) (net.Conn, string) {
	w.checkWrites(n)
	if !w.txSame {
		return nil, w.txWhy
	}
	if why := w.deadlineReaches(false); why != "" {
		return nil, why
	}
	return w.sock, ""
}

// rxSocket decides RX. n is what recordConn read through the wrapper, wn
// what crypto/tls wrote through it. It
// returns the conn a socket engine may take RX on (nil: none, with why),
// and the bytes the probe took from the wrapper, which come before anything
// still in the socket and must reach the RX engine first
// (backend.Link.Buffered), whatever the answer.
func (w *wrapState) rxSocket(n, wn uint64) (sock net.Conn, held []byte, why string) {
	// A wrapper that holds, adds or transforms writes is no pass-through:
	// reads do not bypass it either. Its reads may depend on its writes
	// (one that sends what it holds when it is read from), and one that
	// transforms the stream (a TLS conn) consumes bytes on reads too.
	w.checkWrites(wn)
	if !w.txSame {
		return nil, nil, w.txWhy + "; reads do not bypass it either"
	}
	read, why := socketRead(w.rc)
	switch {
	case why != "":
		return nil, nil, why
	case read == n:
		// Every byte read from the socket reached crypto/tls: the wrapper
		// holds none and consumed none.
		if why := w.readDeadlineReaches(); why != "" {
			return nil, nil, why
		}
		return w.sock, nil, ""
	case read < n:
		return nil, nil, fmt.Sprintf("%T gave crypto/tls %d bytes, more than the %d read from the socket under it: it transforms the stream", w.raw, n, read)
	}
	// The wrapper read read-n bytes that crypto/tls did not get: its own
	// (a PROXY header), or bytes it holds. The probe tells which.
	if w.late {
		return nil, nil, fmt.Sprintf("%T read %d bytes from the socket that crypto/tls did not get, and is not probed after the handshake (the program's read deadline is in force)", w.raw, read-n)
	}
	held, why = w.probe()
	switch {
	case why != "":
		return nil, held, why
	case len(held) > 0:
		return nil, held, fmt.Sprintf("%T held %d bytes read ahead of the socket; they go to the user-space engine first", w.raw, len(held))
	}
	return w.sock, nil, ""
}

// probe reads what the wrapper holds without touching the socket: with a
// read deadline already past, Go's poll.FD refuses a read before it makes
// the system call (internal/poll, prepareRead), and an io.Reader that holds
// bytes returns them rather than wait (io.Reader's contract). So a timeout
// with no bytes proves the wrapper holds nothing. What it returns is kept,
// whatever happens. The read deadline is cleared afterwards: ktls does not
// know the one the program set before the handshake, if any.
func (w *wrapState) probe() (held []byte, why string) {
	if err := w.raw.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return nil, fmt.Sprintf("setting a read deadline on %T: %v", w.raw, err)
	}
	defer w.raw.SetReadDeadline(time.Time{})
	if !deadlinePast(w.rc, true) {
		// Its Read would go to the socket and wait for the peer.
		return nil, fmt.Sprintf("a read deadline set on %T does not reach the socket under it", w.raw)
	}
	buf := make([]byte, 16<<10)
	empty := 0
	for len(held) <= maxHeld {
		n, err := w.raw.Read(buf)
		held = append(held, buf[:n]...)
		switch {
		case err == nil && n == 0:
			// io.Reader discourages (0, nil); a few in a row prove nothing.
			if empty++; empty > 3 {
				return held, fmt.Sprintf("%T returned neither bytes nor an error past its read deadline", w.raw)
			}
		case err == nil:
			empty = 0
		case timedOut(err) && n == 0:
			return held, ""
		case timedOut(err):
		default:
			return held, fmt.Sprintf("reading what %T holds: %v", w.raw, err)
		}
	}
	return held, fmt.Sprintf("%T returned more than %d bytes past its read deadline", w.raw, maxHeld)
}

// deadlineReaches sets an expired deadline on the wrapper and checks that
// the socket sees it, so that the deadlines the program sets on the
// connection (which set them on the wrapper) reach a socket engine's I/O
// (docs/ARCHITECTURE.md, invariants). The deadline is cleared afterwards.
func (w *wrapState) deadlineReaches(read bool) string {
	set, what := w.raw.SetWriteDeadline, "write"
	if read {
		set, what = w.raw.SetReadDeadline, "read"
	}
	if err := set(time.Unix(1, 0)); err != nil {
		return fmt.Sprintf("setting a %s deadline on %T: %v", what, w.raw, err)
	}
	defer set(time.Time{})
	if !deadlinePast(w.rc, read) {
		return fmt.Sprintf("a %s deadline set on %T does not reach the socket under it", what, w.raw)
	}
	return ""
}

// deadlinePast reports whether the socket's read (or write) deadline has
// passed: a RawConn's Read and Write check it before they call f
// (internal/poll, prepareRead and prepareWrite), and f here does nothing.
func deadlinePast(rc syscall.RawConn, read bool) bool {
	f := func(uintptr) bool { return true }
	var err error
	if read {
		err = rc.Read(f)
	} else {
		err = rc.Write(f)
	}
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// path is how one direction's engines reach the peer: the socket engines
// get sock, the others the conn the connection was made over. A nil sock
// with why set refuses the socket engines with why, without asking them.
type path struct {
	conn     net.Conn
	sock     net.Conn
	why      string
	buffered []byte
}

// link is the backend.Link that engine gets, or its refusal.
func (p path) link(engine string) (backend.Link, error) {
	if !socketEngine(engine) {
		return backend.Link{Conn: p.conn, Buffered: p.buffered}, nil
	}
	if p.sock == nil {
		return backend.Link{}, backend.NotSupported(engine, "%s", p.why)
	}
	return backend.Link{Conn: p.sock, Buffered: p.buffered}, nil
}

// txPath is TX's path. The proof runs only when a socket engine is a
// candidate: it sets and clears the write deadline.
func (c *Conn) txPath(cands []selector.Candidate) path {
	w := c.rc.wrap
	if w == nil || !anySocketEngine(cands) {
		return path{conn: c.raw, sock: c.raw}
	}
	sock, why := w.txSocket(c.rc.writtenBytes())
	return path{conn: c.raw, sock: sock, why: why}
}

// rxPath is RX's path, after buffered, the bytes recordConn read from the
// wrapper that crypto/tls did not consume.
func (c *Conn) rxPath(cands []selector.Candidate, buffered []byte) path {
	w := c.rc.wrap
	if w == nil || !anySocketEngine(cands) {
		return path{conn: c.raw, sock: c.raw, buffered: buffered}
	}
	if len(buffered) != 0 {
		// The socket engines refuse it anyway (backend.Link.Buffered);
		// no need to disturb the wrapper.
		return path{conn: c.raw, sock: w.sock, buffered: buffered}
	}
	sock, held, why := w.rxSocket(c.rc.readBytes(), c.rc.writtenBytes())
	return path{conn: c.raw, sock: sock, why: why, buffered: held}
}

func anySocketEngine(cands []selector.Candidate) bool {
	for _, c := range cands {
		if socketEngine(c.Name) {
			return true
		}
	}
	return false
}
