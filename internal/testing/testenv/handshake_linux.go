package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
)

// ProbeHandshake asks the generic netlink controller for the "handshake"
// family, through which the kernel's TLS consumers (the NFS client and
// server, NVMe-TCP) ask a user-space agent for their handshakes
// (Documentation/networking/tls-handshake.rst,
// Documentation/netlink/specs/handshake.yaml). A kernel without it
// (CONFIG_NET_HANDSHAKE, Linux 6.4) answers ENOENT, which wraps
// [backend.ErrNotSupported].
func ProbeHandshake() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return fmt.Errorf("testenv: generic netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("testenv: generic netlink bind: %w", err)
	}
	// One CTRL_CMD_GETFAMILY request with CTRL_ATTR_FAMILY_NAME
	// (include/uapi/linux/genetlink.h).
	name := append([]byte("handshake"), 0)
	attrLen := unix.SizeofRtAttr + len(name)
	msg := make([]byte, unix.NLMSG_HDRLEN+unix.GENL_HDRLEN+(attrLen+3)&^3)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.GENL_ID_CTRL)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg[unix.NLMSG_HDRLEN] = unix.CTRL_CMD_GETFAMILY
	msg[unix.NLMSG_HDRLEN+1] = 1
	attr := msg[unix.NLMSG_HDRLEN+unix.GENL_HDRLEN:]
	binary.NativeEndian.PutUint16(attr[0:], uint16(attrLen))
	binary.NativeEndian.PutUint16(attr[2:], unix.CTRL_ATTR_FAMILY_NAME)
	copy(attr[unix.SizeofRtAttr:], name)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("testenv: generic netlink send: %w", err)
	}
	buf := make([]byte, 16384)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("testenv: generic netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("testenv: generic netlink: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.GENL_ID_CTRL:
				return nil // the family's description
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return errors.New("testenv: generic netlink: short error message")
				}
				switch errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno {
				case 0:
					continue // the ack after the answer
				case int32(unix.ENOENT):
					return fmt.Errorf("testenv: no generic netlink family \"handshake\" (CONFIG_NET_HANDSHAKE, Linux 6.4): %w", backend.ErrNotSupported)
				default:
					return fmt.Errorf("testenv: generic netlink CTRL_CMD_GETFAMILY handshake: %w", unix.Errno(errno))
				}
			}
		}
	}
}
