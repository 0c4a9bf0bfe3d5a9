package testenv

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/netlink"
)

// ProbeHandshake asks the generic netlink controller for the "handshake"
// family, through which the kernel's TLS consumers (the NFS client and
// server, NVMe-TCP) ask a user-space agent for their handshakes
// (Documentation/networking/tls-handshake.rst,
// Documentation/netlink/specs/handshake.yaml). A kernel without it
// (CONFIG_NET_HANDSHAKE, Linux 6.4) answers ENOENT, which wraps
// [backend.ErrNotSupported].
func ProbeHandshake() error {
	c, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	defer c.Close()
	// CTRL_CMD_GETFAMILY, version 1, with CTRL_ATTR_FAMILY_NAME
	// (include/uapi/linux/genetlink.h).
	req := netlink.AppendAttr([]byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}, unix.CTRL_ATTR_FAMILY_NAME, []byte("handshake\x00"))
	_, err = c.Execute(unix.GENL_ID_CTRL, 0, req)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("testenv: no generic netlink family \"handshake\" (CONFIG_NET_HANDSHAKE, Linux 6.4): %w", backend.ErrNotSupported)
	case err != nil:
		return fmt.Errorf("testenv: generic netlink family \"handshake\": %w", err)
	}
	return nil
}
