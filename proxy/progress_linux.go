package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// moved returns a count that grows whenever the TCP socket under c moves
// bytes either way: the bytes its peer acknowledged plus the bytes it
// received (TCP_INFO tcpi_bytes_acked and tcpi_bytes_received, Linux 4.1;
// net/ipv4/tcp.c, tcp_get_info). The kernel counts them while a splice
// moves the bytes, which no copy's return reports until the round ends.
// ok is false where c is no socket or TCP_INFO cannot be read; a kernel
// without the counters leaves them 0, which never grows.
func moved(c net.Conn) (n uint64, ok bool) {
	sc, isSock := c.(syscall.Conn)
	if !isSock {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return info.Bytes_acked + info.Bytes_received, true
}
