//go:build !linux

package conn

import (
	"net"
	"runtime"
	"syscall"
)

// isTCPSocket reports false: only Linux has the socket engines that need
// one, so only *net.TCPConn is looked for under a wrapper here.
func isTCPSocket(net.Conn) bool { return false }

// socketRead reports that the count needs Linux's TCP_INFO.
func socketRead(syscall.RawConn) (uint64, string) {
	return 0, "counting the bytes read from the socket needs Linux's TCP_INFO; this is " + runtime.GOOS
}

// socketWritten reports that the count needs Linux's TCP_INFO.
func socketWritten(syscall.RawConn) (uint64, string) {
	return 0, "counting the bytes written to the socket needs Linux's TCP_INFO; this is " + runtime.GOOS
}
