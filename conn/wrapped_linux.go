//go:build linux

package conn

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpCloseWait is TCP_CLOSE_WAIT of include/net/tcp_states.h: the peer sent
// its FIN, this end has not closed.
const tcpCloseWait = 8

// isTCPSocket reports whether c is a syscall.Conn whose descriptor is a TCP
// socket: SO_DOMAIN AF_INET or AF_INET6, SO_TYPE SOCK_STREAM, SO_PROTOCOL
// IPPROTO_TCP (socket(7)).
func isTCPSocket(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	err = rc.Control(func(fd uintptr) {
		dom, err1 := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, err2 := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
		proto, err3 := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
		ok = err1 == nil && err2 == nil && err3 == nil &&
			(dom == unix.AF_INET || dom == unix.AF_INET6) && typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP
	})
	return err == nil && ok
}

// tcpInfo reads TCP_INFO and returns how many bytes of it the kernel filled:
// an older kernel fills a shorter struct tcp_info (include/uapi/linux/tcp.h,
// net/ipv4/tcp.c do_tcp_getsockopt copies min(len, sizeof(info))).
func tcpInfo(fd uintptr) (unix.TCPInfo, uintptr, error) {
	var info unix.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return info, 0, errno
	}
	return info, uintptr(n), nil
}

// stableQueue calls f between two reads of the queue ioctl req (SIOCINQ or
// SIOCOUTQ) until the queue did not change meanwhile, so that what f reads
// of TCP_INFO and the queue's length are one moment's. Nothing else reads
// or writes the socket during the handoff; only the peer's data and ACKs
// move the counters.
func stableQueue(fd uintptr, req uint, f func() error) (int, error) {
	for range 8 {
		q1, err := unix.IoctlGetInt(int(fd), req)
		if err != nil {
			return 0, err
		}
		if err := f(); err != nil {
			return 0, err
		}
		q2, err := unix.IoctlGetInt(int(fd), req)
		if err != nil {
			return 0, err
		}
		if q1 == q2 {
			return q1, nil
		}
	}
	return 0, fmt.Errorf("the queue kept changing")
}

// socketRead returns how many bytes the process has read from the socket:
// tcpi_bytes_received (Linux 4.1; the sum of rcv_nxt's advances, so the
// peer's SYN is not in it and its FIN is) minus SIOCINQ (rcv_nxt -
// copied_seq, less the FIN once it came: tcp_ioctl, tcp_inq). A FIN makes
// the count depend on whether the reader consumed it, so only an
// established socket is counted; otherwise why says so.
func socketRead(rc syscall.RawConn) (n uint64, why string) {
	var info unix.TCPInfo
	var filled uintptr
	var inq int
	err := rc.Control(func(fd uintptr) {
		var err error
		inq, err = stableQueue(fd, unix.SIOCINQ, func() (err error) {
			info, filled, err = tcpInfo(fd)
			return err
		})
		if err != nil {
			why = fmt.Sprintf("counting the bytes read from the socket: %v", err)
		}
	})
	switch {
	case err != nil:
		return 0, fmt.Sprintf("counting the bytes read from the socket: %v", err)
	case why != "":
		return 0, why
	case filled < unsafe.Offsetof(info.Bytes_received)+unsafe.Sizeof(info.Bytes_received):
		return 0, "TCP_INFO has no tcpi_bytes_received (Linux 4.1): the bytes read from the socket cannot be counted"
	case info.State != tcpEstablished:
		return 0, fmt.Sprintf("the socket is in TCP state %d, not established: the bytes read from it cannot be counted exactly", info.State)
	case uint64(inq) > info.Bytes_received:
		return 0, "the socket's counters disagree (SIOCINQ > tcpi_bytes_received)"
	}
	return info.Bytes_received - uint64(inq), ""
}

// socketWritten returns how many bytes the process has written to the
// socket. net/ipv4/tcp.c's tcp_get_info gives it twice, and both must
// agree:
//
//   - tcpi_bytes_sent - tcpi_bytes_retrans + tcpi_notsent_bytes (Linux
//     4.19): data bytes sent once, plus those not sent yet (write_seq -
//     snd_nxt); no SYN or FIN is in them.
//   - tcpi_bytes_acked + SIOCOUTQ (Linux 4.1; SIOCOUTQ is write_seq -
//     snd_una, tcp_ioctl): the sum of snd_una's advances plus what is not
//     acknowledged. On the end that sent the SYN (connect), the ACK of the
//     SYN advances snd_una over it, so this is one more there.
//
// A socket whose FIN is sent is not counted (ktls sends none before the
// handoff).
func socketWritten(rc syscall.RawConn) (n uint64, why string) {
	var info unix.TCPInfo
	var filled uintptr
	var outq int
	err := rc.Control(func(fd uintptr) {
		var err error
		outq, err = stableQueue(fd, unix.SIOCOUTQ, func() (err error) {
			info, filled, err = tcpInfo(fd)
			return err
		})
		if err != nil {
			why = fmt.Sprintf("counting the bytes written to the socket: %v", err)
		}
	})
	switch {
	case err != nil:
		return 0, fmt.Sprintf("counting the bytes written to the socket: %v", err)
	case why != "":
		return 0, why
	case filled < unsafe.Offsetof(info.Bytes_retrans)+unsafe.Sizeof(info.Bytes_retrans):
		return 0, "TCP_INFO has no tcpi_bytes_sent (Linux 4.19): the bytes written to the socket cannot be counted"
	case info.State != tcpEstablished && info.State != tcpCloseWait:
		return 0, fmt.Sprintf("the socket is in TCP state %d: the bytes written to it cannot be counted exactly", info.State)
	}
	sent := info.Bytes_sent - info.Bytes_retrans + uint64(info.Notsent_bytes)
	acked := info.Bytes_acked + uint64(outq)
	if acked != sent && acked != sent+1 {
		return 0, fmt.Sprintf("the socket's counters disagree (tcpi_bytes_sent - tcpi_bytes_retrans + tcpi_notsent_bytes = %d, tcpi_bytes_acked + SIOCOUTQ = %d)", sent, acked)
	}
	return sent, ""
}
