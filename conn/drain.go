package conn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/record"
)

// The ticket drain (docs/ARCHITECTURE.md step 7). RFC 8446 §4.6.1: a TLS 1.3
// server's NewSessionTicket messages follow its Finished, under its
// application key. Only crypto/tls can turn them into sessions (it does not
// export the resumption secret), so a client that keeps tickets leaves RX in
// crypto/tls after the handshake: recordConn lets through only records that
// hold nothing but tickets, and the first other record ends the drain and
// becomes the RX engine's first, at the sequence number counted here. TX has
// moved already; a write crypto/tls attempts meanwhile is refused
// (recordConn.noteRefused).

// wantsTickets reports whether crypto/tls would keep a TLS 1.3 ticket.
func (c *Conn) wantsTickets() bool {
	return c.cfg != nil && c.cfg.ClientSessionCache != nil && !c.cfg.SessionTicketsDisabled
}

// drains reports whether this connection leaves RX in crypto/tls for the
// session tickets after a handshake of state st.
func (c *Conn) drains(st tls.ConnectionState) bool {
	return c.isClient && st.Version == tls.VersionTLS13 && c.wantsTickets()
}

// startDrain puts recordConn in drain mode, with rx's key to tell tickets
// from anything else; installRXLocked runs at the end of the drain
// (finishDrainLocked). Called by the handoff, before handshakeDone.
func (c *Conn) startDrain(rx *dirKeys) {
	c.rc.drain = &drainState{prot: rx.prot, seq: rx.params.Seq, peek: newPeeker(c.raw)}
	c.rc.mode = modeDrain
	c.in.draining = true
}

// finishDrainLocked lets crypto/tls read the TLS 1.3 session tickets that
// came right after the handshake, then installs RX from the first other
// record on (see drainState).
func (c *Conn) finishDrainLocked() error {
	var one [1]byte
	n, err := c.tls.Read(one[:])
	if n != 0 {
		// recordConn never gives crypto/tls application data here.
		return c.in.setErrorLocked(errors.New("ktls: internal error: crypto/tls returned data during the ticket drain"))
	}
	if !errors.Is(err, errHandoff) {
		if err == io.EOF && c.rc.cutShort() {
			// The stream ended inside a record, which crypto/tls never
			// saw (recordConn gives it nothing until the record is
			// whole), so it took the EOF for one at a record boundary.
			err = io.ErrUnexpectedEOF
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err
		}
		// crypto/tls rejected a ticket. It tried to send an alert, which
		// recordConn refused (its TX key is stale): send it for real.
		if a, ok := c.rc.refusedAlert(); ok {
			c.out.mu.Lock()
			if c.out.err == nil {
				c.sendAlertLocked(a)
			}
			c.unlockOut()
		}
		return c.in.setErrorLocked(err)
	}
	c.in.draining = false
	c.rc.moveTX(nil, 0)
	if err := c.installRXLocked(c.rc.drain.seq, c.rc.buffered()); err != nil {
		return c.in.setErrorLocked(err)
	}
	c.rc.drain = nil
	c.rc.release()
	c.dropTLSLocked(c.tls.ConnectionState())
	return nil
}

// endDrainLocked zeroes what the drain holds of RX's key once the
// connection is closed (Conn.endInLocked). Only crypto/tls's reads, under
// in.mu, use the drain.
func (c *Conn) endDrainLocked() {
	if c.rc == nil {
		// Dropped with crypto/tls's conn, after the drain (dropTLSLocked).
		return
	}
	if d := c.rc.drain; d != nil {
		d.prot = nil
		clear(d.scratch)
	}
}

// drainState lets crypto/tls consume the NewSessionTicket records that a TLS
// 1.3 server sends right after the handshake, so that tickets reach the
// ClientSessionCache (crypto/tls does not export the resumption secret, so
// only crypto/tls can turn them into sessions). The first record that is
// anything else stops the drain; it stays in rbuf and becomes the engine's
// Link.Buffered.
type drainState struct {
	prot    *record.Protector // the server's application traffic key
	seq     uint64            // next RX sequence number
	passed  bool              // the record in rbuf may go to crypto/tls
	stopped bool
	scratch []byte
	// peek, where the socket allows it, shows the next record without
	// taking it (see newPeeker); peekBuf holds what it shows.
	peek      func([]byte) (int, error)
	peekBuf   []byte
	truncated bool // the peer closed with part of a record in the socket
}

// errHandoff stops crypto/tls's Read at the end of the drain. It is a
// temporary net.Error so crypto/tls does not make it sticky (readRecordOrCCS
// only records non-temporary errors).
var errHandoff net.Error = handoffError{}

type handoffError struct{}

func (handoffError) Error() string   { return "ktls: record layer handed off" }
func (handoffError) Timeout() bool   { return true }
func (handoffError) Temporary() bool { return true }

// fillDrain reads one whole record and decides whether crypto/tls may have it.
// Where the socket can be peeked, a record that does not pass is left in the
// socket, not in rbuf.
func (r *recordConn) fillDrain() error {
	if r.drain.peek != nil && len(r.rbuf) == 0 {
		return r.peekDrain()
	}
	for !r.recordComplete() {
		if len(r.rbuf) >= record.HeaderLen && recordLen(r.rbuf) > record.MaxCiphertext(tls.VersionTLS13) {
			// Not for crypto/tls: the engine rejects it with record_overflow.
			r.drain.stopped = true
			return errHandoff
		}
		if err := r.fillSome(); err != nil {
			return err
		}
	}
	if !r.drainPasses(r.rbuf) {
		r.drain.stopped = true
		return errHandoff
	}
	r.drain.seq++
	r.drain.passed = true
	return nil
}

// peekDrain looks at the next record without taking it from the socket, and
// takes it only if crypto/tls may have it.
func (r *recordConn) peekDrain() error {
	d := r.drain
	if cap(d.peekBuf) == 0 {
		d.peekBuf = make([]byte, record.HeaderLen+record.MaxCiphertext(tls.VersionTLS13))
	}
	n, err := d.peek(d.peekBuf)
	if err != nil {
		// crypto/tls reads an io.ErrUnexpectedEOF before any byte of a
		// record as a clean EOF; the connection must know better.
		d.truncated = err == io.ErrUnexpectedEOF
		return err
	}
	if n > len(d.peekBuf) || !r.drainPasses(d.peekBuf[:n]) {
		// Too long for any record (the engine answers record_overflow),
		// or not a ticket: it stays in the socket for the engine.
		d.stopped = true
		return errHandoff
	}
	if cap(r.rbuf) < n {
		r.rbuf = make([]byte, 0, n)
	}
	// The record is queued whole, so this returns at once.
	if _, err := io.ReadFull(r.Conn, r.rbuf[:n]); err != nil {
		return err
	}
	r.rbuf = r.rbuf[:n]
	d.seq++
	d.passed = true
	return nil
}

// drainPasses decides whether a complete record may go to crypto/tls during
// the drain: only if it opens under the server's application key at the
// expected sequence number and holds nothing but whole NewSessionTicket
// messages (RFC 8446 §4.6.1).
func (r *recordConn) drainPasses(rec []byte) bool {
	d := r.drain
	d.scratch = append(d.scratch[:0], rec...)
	typ, msg, err := d.prot.Open(d.seq, d.scratch)
	if err != nil || typ != backend.TypeHandshake || len(msg) == 0 {
		return false
	}
	for len(msg) > 0 {
		if len(msg) < 4 || msg[0] != typeNewSessionTicket {
			return false
		}
		n := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if n > len(msg) {
			return false
		}
		msg = msg[n:]
	}
	return true
}

// cutShort reports whether the incoming stream ended inside a record that
// crypto/tls never saw a byte of.
func (r *recordConn) cutShort() bool {
	return len(r.buffered()) > 0 || (r.drain != nil && r.drain.truncated)
}
