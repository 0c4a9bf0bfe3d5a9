//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
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
// support reading control messages"). The pipe lives for one call: bytes dst
// did not take are read back into memory and ReadRecord returns them first.
func (o *opener) SpliceTo(dst syscall.RawConn) (n int64, readErr, writeErr error) {
	if len(o.pending) > 0 {
		return 0, nil, nil // ReadRecord returns them first, in order
	}
	if err := spliceTarget(dst); err != nil {
		return 0, nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return 0, nil, fmt.Errorf("kernel: pipe2: %w: %w", err, backend.ErrNotSupported)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize) // best effort, see pipeSize

	for {
		filled, stop, err := o.fill(p[1])
		if err != nil {
			// Waiting for the socket failed (a deadline, a close); the
			// pipe is empty, since a round only waits before it took
			// anything.
			return n, o.opError("read", "", err), nil
		}
		if filled > 0 {
			drained, err := drain(p[0], dst, filled)
			n += int64(drained)
			if err != nil {
				if kerr := o.keep(p[0], filled-drained); kerr != nil {
					// The pipe would not give back what it holds: the
					// stream has a hole, so RX cannot go on.
					return n, kerr, err
				}
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
			m, serr := unix.Splice(int(fd), nil, w, nil, spliceRound-filled, unix.SPLICE_F_NONBLOCK)
			switch {
			case serr == unix.EINTR:
				continue
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
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd, b[:], o.oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false
		}
		typ, ok := recordType(o.oob[:oobn])
		return ok && typ != backend.TypeApplicationData
	}
}

// drain moves n bytes from the pipe's read end r to dst, waiting on the
// netpoller while dst is full.
func drain(r int, dst syscall.RawConn, n int) (drained int, err error) {
	var serr error
	werr := dst.Write(func(fd uintptr) bool {
		for drained < n {
			m, e := unix.Splice(r, nil, int(fd), nil, n-drained, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			switch {
			case e == unix.EINTR:
				continue
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
// ReadRecord returns them: data the kernel opened is never dropped.
func (o *opener) keep(r int, n int) error {
	buf := make([]byte, n)
	for got := 0; got < n; {
		m, err := unix.Read(r, buf[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || m == 0 {
			return fmt.Errorf("kernel: reading back %d bytes from the splice pipe: %v: %w", n-got, err, backend.ErrNotSupported)
		}
		got += m
	}
	o.pending = buf
	return nil
}

// spliceTarget checks that splice(2) can write to dst as a stream: a stream
// socket, a regular file not opened with O_APPEND (splice refuses those with
// EINVAL), or a pipe. Anything else wraps backend.ErrNotSupported.
func spliceTarget(dst syscall.RawConn) error {
	var ok bool
	var why string
	cerr := dst.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err != nil {
			why = err.Error()
			return
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFSOCK:
			typ, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			ok = err == nil && typ == unix.SOCK_STREAM
			why = "not a stream socket"
		case unix.S_IFREG:
			fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
			ok = err == nil && fl&unix.O_APPEND == 0
			why = "a file opened for appending"
		case unix.S_IFIFO:
			ok = true
		default:
			why = "neither a socket, a regular file nor a pipe"
		}
	})
	if cerr != nil {
		return fmt.Errorf("kernel: splice destination: %w: %w", cerr, backend.ErrNotSupported)
	}
	if !ok {
		return fmt.Errorf("kernel: splice destination: %s: %w", why, backend.ErrNotSupported)
	}
	return nil
}
