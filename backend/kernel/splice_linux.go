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

var _ backend.Splicer = (*opener)(nil)

const (
	// spliceRound caps what one round moves from the socket into the pipe
	// before the pipe is emptied into the destination. Each splice(2) out
	// of a kTLS socket returns at most one record (tls_sw_splice_read), so
	// a round gathers many records and the destination gets them with one
	// call.
	spliceRound = 256 << 10
	// pipeSize is asked of the kernel for the pipe (F_SETPIPE_SZ): the
	// unprivileged maximum by default (/proc/sys/fs/pipe-max-size). A
	// smaller pipe only makes rounds shorter: a full pipe answers EAGAIN,
	// which ends the round as an empty socket does.
	pipeSize = 1 << 20
)

// errNotData ends a round when the next record is not application data.
var errNotData = errors.New("kernel: the next record is not application data")

// SpliceTo moves application data from the socket to dst through a pipe
// with splice(2): the kernel opens the records into the pipe and moves the
// pages on (tls.rst; selftests "splice_to_pipe"). It stops where splice
// answers EINVAL, which kTLS does when the next record is a control record
// and leaves that record for recvmsg (tls_sw_splice_read, "splice does not
// support reading control messages"). The pipe is the half's own, kept
// from one call to the next (pipeSlot): bytes dst did not take are read back
// into memory, leaving it empty, and ReadRecord returns them first.
// The socket is only ever waited for on the netpoller; dst too, unless it is
// a blocking descriptor (see spliceTarget), which drain waits for in the
// kernel.
func (o *opener) SpliceTo(dst syscall.RawConn) (n int64, readErr, writeErr error) {
	if len(o.pending) > 0 {
		return 0, nil, nil // ReadRecord returns them first, in order
	}
	blocking, err := spliceTarget(dst)
	if err != nil {
		return 0, nil, err
	}
	p, err := o.pipe.take()
	if err == errPipeClosed {
		return 0, o.closedError("read"), nil
	}
	if err != nil {
		return 0, nil, err
	}
	// inPipe is what the pipe holds by this call's count: the pipe goes
	// back for the next call only when that is 0 (pipeSlot). A readErr
	// other than a timeout ends the direction, and the pipe with it.
	inPipe := 0
	defer func() {
		var ne net.Error
		o.pipe.give(inPipe == 0, readErr == nil || errors.As(readErr, &ne) && ne.Timeout())
	}()
	// Between two pipes the kernel adds SPLICE_F_NONBLOCK when either
	// file is O_NONBLOCK (fs/splice.c, do_splice), so a splice from a
	// non-blocking read end into a full blocking pipe would answer EAGAIN
	// all the same. Only the read end changes: fill passes
	// SPLICE_F_NONBLOCK itself, and keep makes it non-blocking again. A
	// reused pipe keeps the mode of its last call, so it is set either
	// way (without a system call when it is already right).
	if err := p.setBlocking(blocking); err != nil {
		return 0, nil, backend.NotSupported(backend.Kernel, "splice pipe: %w", err)
	}

	for {
		filled, stop, err := o.fill(p.w)
		inPipe += filled
		if err != nil {
			// Waiting for the socket failed (a deadline, a close); the
			// pipe is empty, since a round only waits before it took
			// anything.
			return n, o.opError("read", "", err), nil
		}
		if filled > 0 {
			drained, err := drain(p.r, dst, filled, blocking)
			n += int64(drained)
			inPipe -= drained
			if err != nil {
				if kerr := o.keep(p, inPipe); kerr != nil {
					// The pipe would not give back what it holds: the
					// stream has a hole, so RX cannot go on.
					return n, kerr, err
				}
				inPipe = 0
				return n, nil, err
			}
		}
		if stop == errNotData {
			return n, nil, nil
		}
		if stop != nil {
			return n, stop, nil
		}
	}
}

// fill moves records from the socket into the pipe's write end w until a
// round is full, the socket is empty after something was moved, or
// something that is not application data comes. It waits on the netpoller
// only while nothing was moved. stop is errNotData, or the error ReadRecord
// would return (io.EOF at the end of the stream); err is the netpoller's.
func (o *opener) fill(w int) (filled int, stop, err error) {
	err = o.rc.Read(func(fd uintptr) bool {
		for filled < spliceRound {
			var m int // unix.Splice's count is int64 on some GOARCHes, int on others
			serr := rawio.Restart(func() error {
				k, err := unix.Splice(int(fd), nil, w, nil, spliceRound-filled, unix.SPLICE_F_NONBLOCK)
				m = int(k)
				return err
			})
			switch {
			case serr == unix.EAGAIN:
				// An empty socket or a full pipe; wait only if the
				// pipe is empty, or the bytes in it would wait too.
				return filled > 0
			case serr == unix.EINVAL:
				if o.controlNext(int(fd)) {
					stop = errNotData
				} else {
					stop = o.recvError(serr)
				}
				return true
			case serr != nil:
				stop = o.recvError(serr)
				return true
			case m == 0:
				// TCP FIN, as ReadRecord's read of 0 bytes.
				stop = io.EOF
				return true
			}
			filled += int(m)
		}
		return true
	})
	return filled, stop, err
}

// controlNext says whether a control record waits in the kernel. splice
// answers EINVAL for that, and also for a sticky error it has just taken from
// the socket (a record header with the wrong version, tls_rx_msg_size): only
// in the first case is something left to read, so a non-blocking peek tells
// them apart, and a later ReadRecord never waits for a record that is not
// coming.
func (o *opener) controlNext(fd int) bool {
	var b [1]byte
	var oobn int
	err := rawio.Restart(func() (err error) {
		_, oobn, _, _, err = unix.Recvmsg(fd, b[:], o.oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err
	})
	if err != nil {
		return false
	}
	typ, ok := recordType(o.oob[:oobn])
	return ok && typ != backend.TypeApplicationData
}

// drain moves n bytes from the pipe's read end r to dst. A non-blocking dst
// is waited for on the netpoller while it is full. A blocking one (see
// spliceTarget) is waited for in the kernel: splice without
// SPLICE_F_NONBLOCK, r made blocking by SpliceTo, so this goroutine's thread
// sleeps in splice(2) as it would in the write(2) of os.File.Write on that
// file. It never waits for input: r holds the n-drained bytes asked for, and
// splice waits on an empty pipe only while it has moved nothing (fs/splice.c,
// splice_from_pipe_next and splice_pipe_to_pipe). An EAGAIN there (dst made
// non-blocking since spliceTarget looked) goes to dst.Write's wait, as in
// the other case.
func drain(r int, dst syscall.RawConn, n int, blocking bool) (drained int, err error) {
	flags := unix.SPLICE_F_MOVE
	if !blocking {
		flags |= unix.SPLICE_F_NONBLOCK
	}
	var serr error
	werr := dst.Write(func(fd uintptr) bool {
		for drained < n {
			var m int
			e := rawio.Restart(func() error {
				k, err := unix.Splice(r, nil, int(fd), nil, n-drained, flags)
				m = int(k)
				return err
			})
			switch {
			case e == unix.EAGAIN:
				return false
			case e != nil:
				serr = os.NewSyscallError("splice", e)
				return true
			case m == 0:
				serr = io.ErrShortWrite
				return true
			}
			drained += int(m)
		}
		return true
	})
	if werr != nil {
		return drained, werr
	}
	return drained, serr
}

// keep reads back the n bytes the destination did not take, so that the next
// ReadRecord returns them: data the kernel opened is never dropped. It never
// waits: r is made non-blocking again (SpliceTo may have made it blocking),
// so a pipe holding less than n answers EAGAIN, an error, and not a hang.
func (o *opener) keep(p *splicePipe, n int) error {
	if err := p.setBlocking(false); err != nil {
		return backend.NotSupported(backend.Kernel, "reading back %d bytes from the splice pipe: %v", n, err)
	}
	buf, err := readPipe(p.r, n)
	if err != nil {
		return backend.NotSupported(backend.Kernel, "%v", err)
	}
	o.pending = buf
	return nil
}

// readPipe reads back the n bytes a splice pipe's read end r holds: the
// bytes a splice round moved and its destination did not take (keep,
// hold). r is non-blocking and holds them, so it never waits; a pipe
// holding less answers EAGAIN, an error.
func readPipe(r int, n int) ([]byte, error) {
	buf := make([]byte, n)
	for got := 0; got < n; {
		var m int
		err := rawio.Restart(func() (err error) {
			m, err = unix.Read(r, buf[got:])
			return err
		})
		if err != nil || m == 0 {
			return nil, fmt.Errorf("reading back %d bytes from the splice pipe: %v", n-got, err)
		}
		got += m
	}
	return buf, nil
}

// spliceTarget checks that splice(2) can write to dst as a stream: a stream
// socket, a regular file not opened with O_APPEND (splice refuses those with
// EINVAL), or a pipe. Anything else wraps backend.ErrNotSupported.
//
// blocking reports a descriptor without O_NONBLOCK: a file Go writes to by
// blocking a thread in write(2), which splice must wait for the same way.
// os.NewFile keeps a blocking descriptor (an inherited stdout that is a
// pipe) blocking and out of the netpoller, a regular file gets its blocking
// mode back when the netpoller refuses it (src/os/file_unix.go,
// newFileFromNewFile and newFile), and (*os.File).Fd makes a file blocking,
// after which "any blocking operation will tie up a thread" (file_unix.go,
// fd). (*poll.FD).Write waits on the netpoller only for a pollable file
// (src/internal/poll/fd_unix.go), so on these it is write(2) that waits.
// splice cannot wait for them on the netpoller: RawConn.Write's wait answers
// "waiting for unsupported file type" for a file outside it
// (src/internal/poll/fd_poll_runtime.go, pollDesc.wait), which is what
// WriteTo into a full blocking pipe used to return. The standard library's
// own splice into a file it does not poll retries at once instead, a busy
// loop while the file is full (src/internal/poll/splice_linux.go,
// splicePump); drain blocks in the kernel, as Go's write would. The flag is
// read because a RawConn does not show whether the netpoller has the file:
// a non-blocking file outside it stays on the non-blocking path and fails as
// its own Write does (EAGAIN, here that error), with nothing lost.
func spliceTarget(dst syscall.RawConn) (blocking bool, err error) {
	var ok bool
	var why string
	cerr := dst.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err != nil {
			why = err.Error()
			return
		}
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			why = err.Error()
			return
		}
		blocking = fl&unix.O_NONBLOCK == 0
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFSOCK:
			typ, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			ok = err == nil && typ == unix.SOCK_STREAM
			why = "not a stream socket"
		case unix.S_IFREG:
			ok = fl&unix.O_APPEND == 0
			why = "a file opened for appending"
		case unix.S_IFIFO:
			ok = true
		default:
			why = "neither a socket, a regular file nor a pipe"
		}
	})
	if cerr != nil {
		return false, backend.NotSupported(backend.Kernel, "splice destination: %w", cerr)
	}
	if !ok {
		return false, backend.NotSupported(backend.Kernel, "splice destination: %s", why)
	}
	return blocking, nil
}
