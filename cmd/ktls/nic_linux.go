package main

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/ktls-go/ktls/internal/netlink"
	"golang.org/x/sys/unix"
)

const nicSource = "ethtool netlink (ETHTOOL_MSG_FEATURES_GET), features by name"

// nicInterfaces lists the interfaces and reads each one's kTLS features over
// ethtool's generic netlink family (Documentation/networking/
// ethtool-netlink.rst, FEATURES_GET; a GET needs no privilege).
func nicInterfaces() ([]NICInterface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := make([]NICInterface, 0, len(ifs))
	for _, i := range ifs {
		ifc := NICInterface{Name: i.Name, Index: i.Index}
		ifc.Up, ifc.Loopback = interfaceFlags(i.Flags)
		out = append(out, ifc)
	}
	c, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		return out, err
	}
	defer c.Close()
	family, err := c.GenlFamily(unix.ETHTOOL_GENL_NAME)
	if err != nil {
		return out, fmt.Errorf("%v: the kernel has no ethtool netlink (CONFIG_ETHTOOL_NETLINK, Linux 5.6)", err)
	}
	for k := range out {
		ifc := &out[k]
		hw, active, err := ethtoolFeatures(c, family, ifc.Index)
		if err != nil {
			ifc.Error = err.Error()
			ifc.Summary = "not read"
			continue
		}
		nicOf(ifc, hw, active)
	}
	return out, nil
}

// ethtoolFeatures asks for one device's features, with verbose bitsets.
func ethtoolFeatures(c *netlink.Conn, family uint16, index int) (hw, active map[string]bool, err error) {
	header := netlink.AppendAttr(nil, ethtoolAHeaderDevIndex, binary.NativeEndian.AppendUint32(nil, uint32(index)))
	payload := []byte{ethtoolMsgFeaturesGet, unix.ETHTOOL_GENL_VERSION, 0, 0}
	payload = netlink.AppendAttr(payload, ethtoolAFeaturesHeader|netlink.FNested, header)
	msgs, err := c.Execute(family, 0, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("ETHTOOL_MSG_FEATURES_GET: %s", netlink.ErrnoText(err))
	}
	for _, m := range msgs {
		if m.Type == family && len(m.Data) >= netlink.GenlHdrLen {
			return parseFeatures(m.Data[netlink.GenlHdrLen:])
		}
	}
	return nil, nil, fmt.Errorf("ETHTOOL_MSG_FEATURES_GET: no reply")
}
