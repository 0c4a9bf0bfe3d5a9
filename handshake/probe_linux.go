package handshake

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/netlink"
)

// Probe asks the kernel whether it has the handshake family
// (CTRL_CMD_GETFAMILY), and /proc/net/netlink whether an agent listens. A
// kernel without the family is not an error: Info.Family says so.
func Probe() (Info, error) {
	c, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		return Info{}, fmt.Errorf("handshake: %w", err)
	}
	defer c.Close()
	fam, err := c.GenlFamilyInfo(FamilyName)
	if errors.Is(err, unix.ENOENT) {
		return Info{}, nil
	}
	if err != nil {
		return Info{}, fmt.Errorf("handshake: %w", err)
	}
	info := Info{Family: true, Version: fam.Version, Group: fam.Groups[GroupName]}
	if b, err := os.ReadFile("/proc/net/netlink"); err == nil {
		info.Listeners, info.ListenersKnown = groupMembers(b, info.Group)
	}
	return info, nil
}
