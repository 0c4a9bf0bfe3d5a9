package conn

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/ktls-go/ktls/backend"
)

var _ io.WriterTo = (*Conn)(nil)

// WriteTo copies application data to w until the peer closes the
// connection, as io.WriterTo; io.Copy(w, conn) uses it. When the RX engine
// can splice (kTLS) and w is a *net.TCPConn, a *net.UnixConn, or an *os.File
// that is a regular file or a pipe, the data moves with splice(2) and never
// enters the process; control records in between (session tickets,
// KeyUpdate, alerts) are read and handled as Read handles them. A blocking
// destination that Go does not poll (an inherited stdout that is a pipe,
// os.NewFile on a descriptor without O_NONBLOCK) is spliced into too, the
// thread waiting in splice(2) while it is full as it would in w.Write's
// write(2); the connection is still waited for on the netpoller (the kernel
// engine's spliceTarget says why). Anything else is copied through Read. As
// io.Copy, it returns nil at the end of the stream.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if dst, ok := spliceDestination(w); ok && c.moved {
		n, handled, err := c.splice(dst, w)
		if handled {
			return n, err
		}
	}
	// readerOnly hides WriteTo from io.Copy, which would call it again;
	// w's own ReadFrom, if any, is used as before WriteTo existed.
	return io.Copy(w, readerOnly{c})
}

// readerOnly hides WriteTo so that io.Copy does not call it again.
type readerOnly struct{ io.Reader }

// spliceDestination returns the raw fd of w when w is one of the types the
// standard library itself splices into. Other types, even those embedding
// one of these, are written through w.Write: an embedding type may mean its
// own Write.
func spliceDestination(w io.Writer) (syscall.RawConn, bool) {
	var sc syscall.Conn
	switch w := w.(type) {
	case *net.TCPConn:
		sc = w
	case *net.UnixConn:
		sc = w
	case *os.File:
		sc = w
	default:
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return rc, true
}

// splice runs WriteTo's loop: plaintext already read goes out through
// w.Write, then the engine splices until a record that is not application
// data, which readRecordLocked handles. handled is false when the engine
// cannot splice into dst and nothing was read.
func (c *Conn) splice(dst syscall.RawConn, w io.Writer) (n int64, handled bool, err error) {
	c.in.mu.Lock()
	defer c.unlockIn()
	canSplice := true
	for {
		if len(c.in.input) > 0 {
			m, err := w.Write(c.in.input)
			c.in.input = c.in.input[m:]
			n += int64(m)
			c.ctr.Received[c.in.eng].Add(uint64(m))
			if err != nil {
				return n, true, err
			}
			continue
		}
		if c.in.err != nil {
			return n, true, eofIsNil(c.in.err)
		}
		if c.in.draining {
			// A TLS 1.3 client's RX engine is installed after crypto/tls
			// has read the session tickets (finishDrainLocked).
			if err := c.finishDrainLocked(); err != nil {
				return n, true, eofIsNil(err)
			}
		}
		sp, ok := c.in.opener.(backend.Splicer)
		if ok && canSplice {
			m, readErr, writeErr := sp.SpliceTo(dst)
			n += m
			c.ctr.Received[c.in.eng].Add(uint64(m))
			c.ctr.SpliceTo.Add(uint64(m))
			if m > 0 {
				c.in.useless, c.in.keyUpdates = 0, 0
			}
			if readErr != nil {
				err := c.rxFailLocked(readErr)
				if writeErr != nil {
					return n, true, writeErr
				}
				return n, true, eofIsNil(err)
			}
			if writeErr != nil {
				if m != 0 || !errors.Is(writeErr, backend.ErrNotSupported) {
					return n, true, writeErr
				}
				canSplice = false // dst cannot take splice; nothing was read
			}
		}
		if (!ok || !canSplice) && n == 0 {
			return 0, false, nil
		}
		// The next record is not application data (or the engine cannot
		// splice at all, after data was written): read it as Read does.
		if err := c.readRecordLocked(); err != nil {
			return n, true, eofIsNil(err)
		}
	}
}

// eofIsNil turns the end of the stream into io.Copy's nil.
func eofIsNil(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}
