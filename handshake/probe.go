package handshake

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// ErrNoFamily says that the kernel has no handshake generic netlink family.
var ErrNoFamily = errors.New(`handshake: the kernel has no "handshake" generic netlink family (Linux 6.4 or later with CONFIG_NET_HANDSHAKE)`)

// Info is what the host says about the kernel's handshake upcall.
type Info struct {
	// Family is whether the kernel has the handshake family; Version its
	// version and Group the id of its "tlshd" multicast group.
	Family  bool
	Version uint32
	Group   uint32
	// ListenersKnown is whether Listeners could be read: the netlink
	// port ids of the sockets in this network namespace that joined the
	// group, that is agents waiting for READY (any program's, tlshd's or
	// ours). /proc/net/netlink shows only a socket's first 32 groups.
	ListenersKnown bool
	Listeners      []uint32
}

// groupMembers reads /proc/net/netlink (net/netlink/af_netlink.c,
// netlink_seq_show: sk, Eth, Pid, Groups as %08x of the first 32 groups,
// ...) and returns the port ids of NETLINK_GENERIC sockets in group, or
// false where the file cannot tell.
func groupMembers(procNetlink []byte, group uint32) ([]uint32, bool) {
	if group == 0 || group > 32 {
		return nil, false
	}
	var ports []uint32
	s := bufio.NewScanner(bytes.NewReader(procNetlink))
	header := true
	for s.Scan() {
		f := strings.Fields(s.Text())
		if header {
			header = false
			if len(f) < 4 || f[1] != "Eth" || f[2] != "Pid" || f[3] != "Groups" {
				return nil, false
			}
			continue
		}
		if len(f) < 4 || f[1] != "16" { // NETLINK_GENERIC
			continue
		}
		groups, err1 := strconv.ParseUint(f[3], 16, 32)
		port, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		if groups&(1<<(group-1)) != 0 {
			ports = append(ports, uint32(port))
		}
	}
	return ports, s.Err() == nil && !header
}

// keyringByName finds a keyring's serial in /proc/keys (security/keys/proc.c,
// proc_keys_show: the serial in hex, flags, usage, expiry, permissions,
// uid, gid, the type, then the description and a colon).
func keyringByName(procKeys []byte, name string) (uint32, bool) {
	s := bufio.NewScanner(bytes.NewReader(procKeys))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 9 || f[7] != "keyring" || strings.TrimSuffix(f[8], ":") != name {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 16, 32); err == nil {
			return uint32(v), true
		}
	}
	return 0, false
}
