//go:build !linux

package conn

import "syscall"

// waitReadable returns at once: only the Linux kernel engine splices from a
// socket (backend.SocketSender), and its SpliceFrom waits itself.
func waitReadable(syscall.RawConn) error { return nil }
