//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/rawio"
)

var _ backend.SocketSender = (*sealer)(nil)

// SpliceFrom moves bytes from the stream socket src into the kTLS socket
// through a pipe, with splice(2) both ways: the source's pages go into the
// pipe (tcp_splice_read, unix_stream_splice_read) and from the pipe into
// kTLS, which seals them into records (tls.rst; selftests
// "splice_from_pipe"; fs/splice.c, splice_to_socket). The bytes never enter
// the process.
//
// Each round fills the pipe from src, then empties the pipe into the
// socket, waiting on the socket's netpoller (and its write deadline). src
// is waited for on its netpoller (and its read deadline) only while the
// call has moved nothing: once it has, an empty src ends the call, so that
// the caller, which holds its TX lock through the call, waits for src
// without it. So a source that fails or times out never strands bytes in
// the pipe: what was read before it is sent first. A socket that fails
// does: those bytes are read back from the pipe into s.held, and the next
// WriteRecords or SpliceFrom sends them first (backend.SocketSender). The
// pipe is the half's own, kept from one call to the next while it is empty
// (pipeSlot).
//
// records is the kernel's own count: the TX record sequence number after the
// call less the one before (the same read as SendFile's), since how many
// records the kernel cuts from spliced pages depends on how they arrived
// (a record also ends when its scatterlist is full, tls_sw.c).
func (s *sealer) SpliceFrom(src syscall.RawConn, n int64) (sent int64, held int, records uint64, readErr, writeErr error) {
	if err := spliceSource(src); err != nil {
		return 0, 0, 0, nil, err
	}
	p, err := s.pipe.take()
	if err == errPipeClosed {
		return 0, 0, 0, nil, s.closedError("write")
	}
	if err != nil {
		return 0, 0, 0, nil, err
	}
	// inPipe is what the pipe holds by this call's count: it goes back
	// for the next call only when that is 0 (pipeSlot). A writeErr other
	// than a timeout ends the direction (package conn makes it sticky),
	// and the pipe with it.
	inPipe := 0
	defer func() {
		var ne net.Error
		s.pipe.give(inPipe == 0, writeErr == nil || errors.As(writeErr, &ne) && ne.Timeout())
	}()
	round := p.size
	// What an earlier call held goes first; it was counted as records
	// when it was held, so before it is read after it went.
	if err := s.sendHeld(); err != nil {
		return 0, 0, 0, nil, err
	}
	before, err := s.recSeq()
	if err != nil {
		return 0, 0, 0, nil, backend.NotSupported(backend.Kernel, "reading the record sequence before splice: %w", err)
	}
	for n < 0 || sent < n {
		want := round
		if n >= 0 {
			want = int(min(int64(want), n-sent))
		}
		filled, stop, perr := fillFrom(src, p.w, want, sent == 0)
		inPipe += filled
		if filled == 0 && stop == nil && perr == nil {
			break // src is empty, after the call moved something
		}
		if perr != nil {
			// src's deadline passed or it was closed, while the pipe
			// was empty.
			readErr = sourceError(perr)
			break
		}
		if filled > 0 {
			drained, werr := s.drainInto(p.r, filled)
			sent += int64(drained)
			inPipe -= drained
			if werr != nil {
				writeErr = werr
				if inPipe > 0 {
					if err := s.hold(p.r, inPipe); err != nil {
						writeErr = fmt.Errorf("%w; %w", werr, err)
					} else {
						held, inPipe = inPipe, 0
					}
				}
				break
			}
		}
		if stop != nil {
			readErr = stop
			break
		}
	}
	after, serr := s.recSeq()
	if serr != nil {
		if writeErr == nil {
			writeErr = fmt.Errorf("kernel: reading the record sequence after splice: %w", serr)
		}
		// The most records the bytes could have taken, as in SendFile:
		// an overestimate only updates the key sooner.
		return sent, held, uint64(sent) + 1, readErr, writeErr
	}
	return sent, held, after - before, readErr, writeErr
}

// fillFrom moves up to want bytes from src into the pipe's write end w. It
// waits on src's netpoller only when wait is set and nothing was moved:
// once the pipe holds bytes, an empty source (or a full pipe: splice
// answers EAGAIN for both) ends the round so that they are sent. stop is
// what ends the stream after the bytes moved: io.EOF at src's end, or its
// error; perr is the netpoller's (a deadline, a close).
func fillFrom(src syscall.RawConn, w int, want int, wait bool) (filled int, stop, perr error) {
	perr = src.Read(func(fd uintptr) bool {
		for filled < want {
			var m int // unix.Splice's count is int64 on some GOARCHes, int on others
			serr := rawio.Restart(func() error {
				k, err := unix.Splice(int(fd), nil, w, nil, want-filled, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				m = int(k)
				return err
			})
			switch {
			case serr == unix.EAGAIN:
				return filled > 0 || !wait
			case serr != nil:
				stop = os.NewSyscallError("splice", serr)
				return true
			case m == 0:
				stop = io.EOF
				return true
			}
			filled += m
		}
		return true
	})
	return filled, stop, perr
}

// drainInto moves n bytes from the pipe's read end r into the kTLS socket,
// waiting on the socket's netpoller while it is full (drain, as SpliceTo
// empties its pipe), with the socket's errors as the sealer names them. It
// never waits for the pipe, which holds the n bytes.
func (s *sealer) drainInto(r int, n int) (int, error) {
	drained, err := drain(r, s.rc, n, false)
	var se *os.SyscallError
	switch {
	case err == nil || err == io.ErrShortWrite:
		return drained, err
	case errors.As(err, &se):
		return drained, s.opError("write", "splice", se.Err)
	default: // the netpoller's: a deadline, a close
		return drained, s.opError("write", "", err)
	}
}

// hold reads back the n bytes the socket did not take into s.held: they
// were read from the source, and only the connection can still send them.
// The pipe is non-blocking and holds them, so this never waits.
func (s *sealer) hold(r int, n int) error {
	buf, err := readPipe(r, n)
	if err != nil {
		return fmt.Errorf("kernel: %w, lost", err)
	}
	s.held = append(s.held, buf...)
	return nil
}

// sendHeld writes what SpliceFrom held as application data, before anything
// else goes out. What the socket takes leaves s.held at once, so a timeout
// here keeps the rest, in order, for the next call.
func (s *sealer) sendHeld() error {
	for len(s.held) > 0 {
		var n int
		err, serr := rawio.Write(s.rc, func(fd int) (err error) {
			n, err = unix.Write(fd, s.held)
			return err
		})
		if n > 0 {
			s.held = s.held[n:]
		}
		if err != nil {
			return s.opError("write", "", err)
		}
		if serr != nil {
			return s.opError("write", "write", serr)
		}
	}
	s.held = nil
	return nil
}

// sourceError renames src's RawConn error ("raw-read": its read deadline
// passed, or it was closed) to the read it stands for, as sock.opError does
// for the TLS socket, so that it reads as src.Read's would.
func sourceError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		e := *oe
		e.Op = "read"
		return &e
	}
	return err
}

// spliceSource checks that splice(2) can read src as a stream: a stream
// socket. Anything else (a datagram or seqpacket socket, which splice would
// read message by message, or not a socket at all) wraps
// backend.ErrNotSupported, and nothing was done.
func spliceSource(src syscall.RawConn) error {
	var why string
	cerr := src.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err != nil {
			why = err.Error()
			return
		}
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			why = "not a socket"
			return
		}
		typ, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil {
			why = err.Error()
			return
		}
		if typ != unix.SOCK_STREAM {
			why = "not a stream socket"
		}
	})
	if cerr != nil {
		return backend.NotSupported(backend.Kernel, "splice source: %w", cerr)
	}
	if why != "" {
		return backend.NotSupported(backend.Kernel, "splice source: %s", why)
	}
	return nil
}
