// Package rawio runs system calls on the fd of a syscall.RawConn the way the
// Go netpoller expects (docs/ARCHITECTURE.md, house rule 7: never block an
// OS thread): the fd is non-blocking, the call is made in rc.Read's or
// rc.Write's callback, EAGAIN parks the goroutine until the netpoller says
// the fd is ready (or its deadline passes, or it is closed), and EINTR calls
// again at once (signal(7): a call interrupted by a handler without
// SA_RESTART fails with EINTR, having done nothing).
package rawio

import (
	"syscall"
)

// Read calls op with rc's fd until op returns anything but EINTR and EAGAIN,
// waiting for the fd to be readable after each EAGAIN. pollErr is rc.Read's
// own error: the fd was closed or its read deadline passed, and op's error
// is then its last or nil. opErr is op's last error otherwise. Callers that
// do not tell them apart take cmp.Or(Read(rc, op)).
func Read(rc syscall.RawConn, op func(fd int) error) (pollErr, opErr error) {
	pollErr = rc.Read(func(fd uintptr) bool {
		opErr = Restart(func() error { return op(int(fd)) })
		return opErr != syscall.EAGAIN
	})
	return pollErr, opErr
}

// Write is Read for an op that writes: it waits for the fd to be writable,
// under its write deadline.
func Write(rc syscall.RawConn, op func(fd int) error) (pollErr, opErr error) {
	pollErr = rc.Write(func(fd uintptr) bool {
		opErr = Restart(func() error { return op(int(fd)) })
		return opErr != syscall.EAGAIN
	})
	return pollErr, opErr
}

// Restart calls op until it returns anything but EINTR: for a call that
// never waits on the netpoller (MSG_DONTWAIT, a non-blocking pipe, a step
// inside a Read or Write callback that decides on EAGAIN itself).
func Restart(op func() error) error {
	for {
		if err := op(); err != syscall.EINTR {
			return err
		}
	}
}
